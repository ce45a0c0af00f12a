"""Restart exactly what must restart, in order: the what-if comparison, on plan data and under mocks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from synapse_workers.ops.whatif import compare
from synapse_workers.plan import build_plan
from tests.conftest import base_values, settings_for
from tests.mocks import run

EVERYTHING_IN_ORDER = [
    "event-persister",
    "federation-sender",
    "typing-writer",
    "todevice-writer",
    "receipts-writer",
    "presence-writer",
    "main",
    "synchrotron",
    "generic-worker",
    "media-repository",
]
BASE: dict[str, Any] = {"ccu": "3700", "federation": {"enabled": True, "servers": 100}}

# (scenario, change to BASE, restarts in order, StatefulSets replaced delete-first)
SCENARIOS: list[tuple[str, dict[str, Any], list[str], list[str]]] = [
    ("more synchrotrons only (ccu 3700 → 3800)", {"ccu": "3800"}, [], []),
    ("HPA headroom", {"hpa": {"headroom": 3}}, [], []),
    ("HPA CPU target", {"hpa": {"targetCpuUtilization": 70}}, [], []),
    ("generic-worker pin", {"workers": {"generic-worker": {"replicas": 9}}}, [], []),
    ("media workers scaled", {"workers": {"media-repository": {"replicas": 7}}}, [], []),
    (
        "a class's own setting",
        {"workers": {"media-repository": {"resources": {"requests": {"cpu": "1"}}}}},
        ["media-repository"],
        [],
    ),
    ("main's own setting", {"main": {"resources": {"requests": {"cpu": "2"}}}}, ["main"], []),
    ("one more receipts writer", {"workers": {"receipts-writer": {"replicas": 3}}}, EVERYTHING_IN_ORDER, []),
    ("one more event persister", {"messagesPerSecond": "210"}, EVERYTHING_IN_ORDER, ["event-persister"]),
    (
        "more federation senders",
        {"federation": {"enabled": True, "servers": 200}},
        EVERYTHING_IN_ORDER,
        ["federation-sender"],
    ),
]


def _values(change: dict[str, Any]) -> dict[str, str]:
    return base_values(**{**BASE, **change})


@pytest.mark.parametrize(("scenario", "change", "restarts", "replaced"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_restarts_on_plan_data(scenario: str, change: dict[str, Any], restarts: list[str], replaced: list[str]) -> None:
    check_restarts(BASE, change, restarts, replaced)


def check_restarts(base: dict[str, Any], change: dict[str, Any], restarts: list[str], replaced: list[str]) -> None:
    old = build_plan(settings_for(**base))
    new = build_plan(settings_for(**{**base, **change}))
    result = compare(old, new)
    assert list(result.restarts) == restarts
    assert list(result.replaced) == replaced
    assert result.maintenance_window is ("main" in restarts)


def _templates(values: dict[str, str]) -> dict[str, str]:
    registered = run("prod", values).objects()
    return {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: json.dumps(o["spec"]["template"], sort_keys=True)
        for o in registered
        if o["kind"] in ("StatefulSet", "Deployment")
    }


@pytest.mark.parametrize(
    ("scenario", "change", "restarts", "replaced"),
    [
        s
        for s in SCENARIOS
        if s[0] in ("more synchrotrons only (ccu 3700 → 3800)", "a class's own setting", "one more event persister")
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_restarts_match_what_the_program_registers(
    scenario: str, change: dict[str, Any], restarts: list[str], replaced: list[str]
) -> None:
    before, after = _templates(_values({})), _templates(_values(change))
    changed = {part for part in after if before.get(part) != after[part]}
    assert changed == set(restarts)


def test_scale_down_of_persisters_is_a_replacement_too() -> None:
    old = build_plan(settings_for(**{**BASE, "messagesPerSecond": "300"}))
    new = build_plan(settings_for(**BASE))
    assert compare(old, new).replaced == ("event-persister",)


def test_the_synchrotron_scenario_really_changes_replicas() -> None:
    old = build_plan(settings_for(**BASE))
    new = build_plan(settings_for(**{**BASE, "ccu": "3800"}))
    changes = {c.name: c for c in compare(old, new).changes}
    # Synchrotrons 15 → 16; generic workers keep 13 but their HPA maximum (at 2 × ccu) grows 25 → 26.
    assert set(changes) == {"synchrotron", "generic-worker"}
    assert (changes["synchrotron"].old["replicas"], changes["synchrotron"].new["replicas"]) == (15, 16)
    assert changes["generic-worker"].old["replicas"] == changes["generic-worker"].new["replicas"] == 13


# Phase 4 (11,500 CCU): every duty beyond the guide runs on its own workers (thread subscriptions off).
LARGE: dict[str, Any] = {"ccu": "11500"}
LARGE_IN_ORDER = [
    # writers: streams and hash-sharded sets, table order
    "event-persister",
    "typing-writer",
    "todevice-writer",
    "receipts-writer",
    "presence-writer",
    "pusher",
    "account-data-writer",
    "push-rules-writer",
    "device-lists-writer",
    "main",
    # readers
    "synchrotron",
    "generic-worker",
    "media-repository",
    "background-worker",
    "user-directory",
    "appservice-sender",
]
# Which duties are hash-sharded membership lists (Synapse hashes over them: old and new members must
# never run side by side) and which only need their pods rolled, from synapse/config/workers.py and
# synapse/handlers/device.py: pusher_instances is a ShardedWorkerHandlingConfig; device_lists writers
# are picked at random per request; the single-instance duties have no list to shard.
DUTY_SCENARIOS: list[tuple[str, dict[str, Any], list[str], list[str]]] = [
    ("one more pusher", {"workers": {"pusher": {"replicas": 3}}}, LARGE_IN_ORDER, ["pusher"]),
    ("one more device-lists writer", {"workers": {"device-lists-writer": {"replicas": 3}}}, LARGE_IN_ORDER, []),
    (
        "a pusher's own setting",
        {"workers": {"pusher": {"resources": {"requests": {"cpu": "200m"}}}}},
        ["pusher"],
        [],
    ),
    (
        "the user directory back on main",
        {"workers": {"user-directory": {"replicas": 0}}},
        [c for c in LARGE_IN_ORDER if c != "user-directory"],
        [],
    ),
    # 11,600 CCU: more synchrotrons, the same stream writers (receipts stay ceil(11600 / 2000) = 6).
    ("more load, same duty sizes (ccu 11500 → 11600)", {"ccu": "11600"}, [], []),
]


@pytest.mark.parametrize(
    ("scenario", "change", "restarts", "replaced"), DUTY_SCENARIOS, ids=[s[0] for s in DUTY_SCENARIOS]
)
def test_duty_restarts_on_plan_data(
    scenario: str, change: dict[str, Any], restarts: list[str], replaced: list[str]
) -> None:
    check_restarts(LARGE, change, restarts, replaced)


def test_crossing_into_phase_3_hands_the_duties_to_workers_and_restarts_everything() -> None:
    old = build_plan(settings_for(ccu=5000))
    new = build_plan(settings_for(ccu=5001))
    result = compare(old, new)
    assert "main" in result.restarts and result.maintenance_window
    assert not {s.spec.name for s in old.sizes if s.deployed and s.spec.beyond_guide}
    added = {s.spec.name for s in new.sizes if s.deployed and s.spec.beyond_guide}
    assert added == {
        "pusher",
        "background-worker",
        "user-directory",
        "appservice-sender",
        "account-data-writer",
        "push-rules-writer",
        "device-lists-writer",
    }


@pytest.mark.parametrize(
    ("scenario", "change", "restarts", "replaced"),
    [s for s in DUTY_SCENARIOS if s[0] in ("one more device-lists writer", "a pusher's own setting")],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_duty_restarts_match_what_the_program_registers(
    scenario: str, change: dict[str, Any], restarts: list[str], replaced: list[str]
) -> None:
    before = _templates(base_values(**LARGE))
    after = _templates(base_values(**{**LARGE, **change}))
    changed = {part for part in after if before.get(part) != after[part]}
    # The router names each pod of a routed StatefulSet class: a new device-lists writer is a new server.
    router = {"router"} if "device-lists-writer" in change.get("workers", {}) and restarts else set()
    assert changed == set(restarts) | router


REROUTES = {
    "more synchrotrons only (ccu 3700 → 3800)": [],
    "media workers scaled": [],  # only the first media pod is named anywhere
    "main's own setting": [],
    "one more receipts writer": ["instance_map", "stream_writers.receipts"],
    "one more event persister": ["instance_map", "stream_writers.events"],
    "more federation senders": ["federation_sender_instances"],
}
"""What each scenario re-routes, worked out from Synapse's shared config: writers are reached through
instance_map, federation senders are named only in their list."""


@pytest.mark.parametrize(("scenario", "expected"), REROUTES.items(), ids=list(REROUTES))
def test_what_a_change_reroutes(scenario: str, expected: list[str]) -> None:
    (change,) = (s[1] for s in SCENARIOS if s[0] == scenario)
    result = compare(build_plan(settings_for(**BASE)), build_plan(settings_for(**{**BASE, **change})))
    assert list(result.reroutes) == expected


def test_crossing_into_phase_3_reroutes_every_duty() -> None:
    result = compare(build_plan(settings_for(ccu="5000")), build_plan(settings_for(ccu="5001")))
    assert {
        "pusher_instances",
        "run_background_tasks_on",
        "update_user_directory_from_worker",
        "notify_appservices_from_worker",
        "stream_writers.account_data",
        "stream_writers.push_rules",
        "stream_writers.device_lists",
    } <= set(result.reroutes)


@pytest.mark.parametrize(("scenario", "expected"), REROUTES.items(), ids=list(REROUTES))
def test_the_routing_marker_changes_exactly_when_a_change_reroutes(scenario: str, expected: list[str]) -> None:
    """The quiesce runs when the marker's name changes: that must be when, and only when, routing does."""
    (change,) = (s[1] for s in SCENARIOS if s[0] == scenario)
    old, new = build_plan(settings_for(**BASE)), build_plan(settings_for(**{**BASE, **change}))
    renamed = old.routing_marker["metadata"]["name"] != new.routing_marker["metadata"]["name"]
    assert renamed is bool(expected)
    assert compare(old, new).quiesce is bool(expected)
