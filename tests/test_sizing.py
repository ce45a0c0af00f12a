"""Sizing against the guide: its formulas as written, its example tables, and where Synapse overrules it."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from synapse_workers.model.errors import ConfigError
from synapse_workers.model.sizing import ClassSize, estimate_messages_per_second, phase_of, size_all
from synapse_workers.model.worker_classes import CLASS_NAMES, GUIDE_CLASSES
from tests.conftest import DUTIES_FROM_PHASE_3, settings_for

# The guide's formulas, written out again here from the guide's text (not imported from the code).
GUIDE_FORMULAS = {
    "synchrotron": lambda ccu, msg, fed: math.ceil(ccu / 250),
    "generic-worker": lambda ccu, msg, fed: math.ceil(ccu / 300),
    "event-persister": lambda ccu, msg, fed: max(2, math.ceil(msg / 50)),
    "federation-sender": lambda ccu, msg, fed: max(2, math.ceil(fed / 50)),
    "media-repository": lambda ccu, msg, fed: max(2, math.ceil(ccu / 1000)),
    "typing-writer": lambda ccu, msg, fed: max(2, math.ceil(ccu / 5000)),
    "todevice-writer": lambda ccu, msg, fed: max(2, math.ceil(ccu / 1000)),
    "receipts-writer": lambda ccu, msg, fed: max(2, math.ceil(ccu / 2000)),
    "presence-writer": lambda ccu, msg, fed: max(2, math.ceil(ccu / 3000)),
}
SINGLE_WRITERS = {"typing-writer", "todevice-writer", "presence-writer"}


def sizes(**overrides: object) -> dict[str, ClassSize]:
    _, all_sizes = size_all(settings_for(**overrides))
    return {s.spec.name: s for s in all_sizes}


@pytest.mark.parametrize("ccu", [1, 99, 100, 250, 251, 999, 1000, 1001, 5000, 7777, 10000, 20000, 45000, 200000])
def test_formulas_as_the_guide_writes_them_with_ha_floor_and_one_writer_rule(ccu: int) -> None:
    msg = 37
    servers = 180
    result = sizes(ccu=ccu, messagesPerSecond=msg, federation={"enabled": True, "servers": servers})
    for name in GUIDE_CLASSES:
        size = result[name]
        guide = GUIDE_FORMULAS[name](ccu, msg, servers)
        expected = 1 if name in SINGLE_WRITERS else max(2, guide)
        assert size.replicas == expected, name


def test_every_class_is_sized() -> None:
    assert set(GUIDE_CLASSES) == set(GUIDE_FORMULAS)
    assert set(sizes()) == set(GUIDE_FORMULAS) | set(DUTIES_FROM_PHASE_3) | {"thread-subscriptions-writer"}
    assert set(CLASS_NAMES) == set(sizes())


@pytest.mark.parametrize("ccu", [100, 1000, 5000, 5001, 10000, 20000, 20001, 45000])
def test_duties_beyond_the_guide_are_on_from_phase_3(ccu: int) -> None:
    result = sizes(ccu=ccu)
    on = ccu > 5000  # the guide's phase 3 starts above 5,000 CCU
    for name, (one, per) in DUTIES_FROM_PHASE_3.items():
        size = result[name]
        assert size.deployed is on, name
        if not on:
            assert size.replicas == 0 and "phase 3" in size.notes[0], name
        elif one:
            assert size.replicas == 1, name
        else:
            assert per is not None
            assert size.replicas == max(2, math.ceil(ccu / per)), name
    assert result["thread-subscriptions-writer"].deployed is False


def test_a_duty_pinned_to_0_goes_back_to_main_and_pinned_on_below_phase_3() -> None:
    result = sizes(ccu=20000, workers={"pusher": {"replicas": 0}, "user-directory": {"replicas": 0}})
    assert not result["pusher"].deployed and not result["user-directory"].deployed
    assert "stays on main" in result["pusher"].notes[0]
    assert result["background-worker"].deployed
    small = sizes(ccu=100, workers={"pusher": {"replicas": 1}, "account-data-writer": {"replicas": 1}})
    assert (small["pusher"].deployed, small["pusher"].replicas) == (True, 1)
    assert (small["account-data-writer"].deployed, small["account-data-writer"].replicas) == (True, 1)
    assert not small["push-rules-writer"].deployed


def test_thread_subscriptions_writer_is_off_unless_pinned() -> None:
    assert not sizes(ccu=200000)["thread-subscriptions-writer"].deployed
    assert "MSC4306" in sizes(ccu=200000)["thread-subscriptions-writer"].notes[0]
    pinned = sizes(ccu=100, workers={"thread-subscriptions-writer": {"replicas": 2}})["thread-subscriptions-writer"]
    assert (pinned.deployed, pinned.replicas) == (True, 2)


@pytest.mark.parametrize(
    ("workers", "key", "allowed"),
    [
        ({"background-worker": {"replicas": 2}}, "synapse:workers.background-worker.replicas", "0 (off) or 1"),
        ({"push-rules-writer": {"replicas": 3}}, "synapse:workers.push-rules-writer.replicas", "0 (off) or 1"),
        ({"synchrotron": {"replicas": 0}}, "synapse:workers.synchrotron.replicas", "only the classes beyond"),
        ({"typing-writer": {"replicas": 0}}, "synapse:workers.typing-writer.replicas", "only the classes beyond"),
    ],
)
def test_impossible_duty_pins_are_refused(workers: dict[str, object], key: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sizes(ccu=20000, workers=workers)
    assert caught.value.key == key
    assert allowed in str(caught.value) and "stack " in str(caught.value)


@pytest.mark.parametrize(
    ("ccu", "expected"),
    [(100, 10), (1000, 50), (5000, 200), (10000, 400), (20000, 800), (30000, 1200), (550, 30), (7500, 300)],
)
def test_message_rate_estimate_follows_the_guides_pairs(ccu: int, expected: int) -> None:
    assert estimate_messages_per_second(ccu) == expected


def test_message_rate_below_the_first_pair_extends_the_first_line() -> None:
    # 10 msg/s at 100 CCU, slope 40/900 per user: 50 CCU → 10 - 50·40/900.
    assert estimate_messages_per_second(50) == Fraction(10) - Fraction(50 * 40, 900)


def test_event_persisters_sized_from_estimated_rate_when_not_given() -> None:
    result = sizes(ccu=10000)
    # 10,000 CCU → ~400 msg/s (the guide's pair) → ceil(400/50) = 8.
    assert result["event-persister"].replicas == 8


def test_given_message_rate_wins_over_estimate() -> None:
    result = sizes(ccu=10000, messagesPerSecond=51)
    assert result["event-persister"].replicas == 2


def test_federation_disabled_means_no_federation_sender() -> None:
    size = sizes()["federation-sender"]
    assert size.deployed is False
    assert size.replicas == 0


# The guide's example tables, copied from the guide's text.
GUIDE_TABLE = {
    "synchrotron": {100: 2, 1000: 4, 5000: 8, 10000: 12, 20000: 16},
    "generic-worker": {100: 2, 1000: 4, 5000: 6, 10000: 8, 20000: 10},
    "event-persister": {100: 2, 1000: 2, 5000: 3, 10000: 4, 20000: 4},
    "media-repository": {100: 2, 1000: 2, 5000: 3, 10000: 3, 20000: 4},
    "receipts-writer": {20000: 3},
}


@pytest.mark.parametrize("ccu", [100, 1000, 5000, 10000, 20000])
def test_guide_table_model_reproduces_the_guides_examples(ccu: int) -> None:
    result = sizes(ccu=ccu, sizing="guide-table")
    for name, table in GUIDE_TABLE.items():
        if ccu in table:
            assert result[name].replicas == table[ccu], name
            assert result[name].table_value == table[ccu], name


@pytest.mark.parametrize(("servers", "expected"), [(1, 2), (50, 2), (100, 2), (200, 4), (500, 6)])
def test_guide_table_for_federation_senders(servers: int, expected: int) -> None:
    result = sizes(sizing="guide-table", federation={"enabled": True, "servers": servers})
    assert result["federation-sender"].replicas == expected


def test_guide_table_between_and_beyond_listed_rows() -> None:
    # Halfway between 10,000 → 12 and 20,000 → 16 is 14; past 20,000 the last line goes on (+4 per 10,000).
    assert sizes(ccu=15000, sizing="guide-table")["synchrotron"].replicas == 14
    assert sizes(ccu=40000, sizing="guide-table")["synchrotron"].replicas == 24
    # Between rows the value is rounded up: 1,000 → 4 and 5,000 → 8, so 1,001 needs ceil(4.001) = 5.
    assert sizes(ccu=1001, sizing="guide-table")["synchrotron"].replicas == 5


def test_the_two_models_disagree_above_1000_ccu() -> None:
    formula = sizes(ccu=20000)["synchrotron"]
    table = sizes(ccu=20000, sizing="guide-table")["synchrotron"]
    assert (formula.replicas, table.replicas) == (80, 16)


def test_exactly_one_classes_note_the_departure() -> None:
    result = sizes(ccu=20000)
    for name in SINGLE_WRITERS:
        size = result[name]
        assert size.replicas == 1
        assert any("departs from the guide" in n and "exactly one writer" in n for n in size.notes)
    assert not any("departs" in n for n in result["receipts-writer"].notes)


def test_ha_floor_note_when_formula_is_below_two() -> None:
    size = sizes(ccu=100)["synchrotron"]
    assert size.replicas == 2
    assert size.formula_value == 1
    assert any("HA floor" in n for n in size.notes)


def test_hpa_bounds_from_headroom() -> None:
    size = sizes(ccu=5000, hpa={"headroom": 1.5})["synchrotron"]
    assert size.min_replicas == math.ceil(5000 / 250)
    assert size.max_replicas == math.ceil(5000 * 1.5 / 250)


def test_hpa_max_never_below_min() -> None:
    size = sizes(ccu=100, hpa={"headroom": 1})["generic-worker"]
    assert size.min_replicas == 2
    assert size.max_replicas == 2


def test_pins_win_over_the_formula_and_the_plan_shows_both() -> None:
    result = sizes(
        ccu=20000,
        workers={
            "event-persister": {"replicas": 5},
            "synchrotron": {"minReplicas": 10, "maxReplicas": 30},
            "generic-worker": {"replicas": 3},
        },
    )
    persister = result["event-persister"]
    assert persister.replicas == 5
    assert persister.formula_value == 16
    assert any("pinned to 5" in n and "16" in n for n in persister.notes)
    sync = result["synchrotron"]
    assert (sync.replicas, sync.min_replicas, sync.max_replicas) == (10, 10, 30)
    generic = result["generic-worker"]
    assert (generic.min_replicas, generic.max_replicas) == (3, math.ceil(40000 / 300))


@pytest.mark.parametrize(
    ("ccu", "phase"),
    [
        (1, "Small"),
        (100, "Small"),
        (1000, "Small"),
        (1001, "Medium"),
        (5000, "Medium"),
        (5001, "Large"),
        (10000, "Large"),
        (10001, "Very Large"),
        (20000, "Very Large"),
        (20001, "beyond the guide"),
    ],
)
def test_phases(ccu: int, phase: str) -> None:
    assert phase_of(ccu).name == phase


def test_phase_monitoring_focus_is_the_guides() -> None:
    assert phase_of(3000).monitoring_focus == "Database write latency, replication lag"
    assert phase_of(8000).monitoring_focus == "PostgreSQL connection pool, Redis memory"
