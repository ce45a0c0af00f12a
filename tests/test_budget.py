"""The capacity budget: connections, CPU, memory and nodes, worked out by hand from the class table.

At 500 CCU (no federation, the guide's formulas, HPA headroom 2) the plan runs: main 1; synchrotron
HPA 2-4 (ceil(500/250) = 2, ceil(1000/250) = 4); generic-worker HPA 2-4 (ceil(1000/300) = 4); two
event persisters (27.8 msg/s needs 1, the HA floor makes 2); two media workers; one typing, one
to-device and one presence writer; two receipts writers; and the router's two pods. A rolling update
of a Synapse Deployment surges 25 % (4 → +1), the router's and PgBouncer's by one pod.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import yaml

from synapse_workers.kube.budget import Span, budget_lines
from synapse_workers.kube.pooler import SYNAPSE_SESSION_SETTINGS
from synapse_workers.model.errors import ConfigError
from synapse_workers.model.settings import load_settings
from synapse_workers.model.stack_config import PROJECT_DIR, read_stack_file
from synapse_workers.plan import Plan, build_plan
from tests.conftest import settings_for


def plan_500(postgres: dict[str, Any] | None = None, **overrides: Any) -> Plan:
    pg = {"host": "pg.example.org", "maxConnections": 200, **(postgres or {})}
    return build_plan(settings_for(ccu=500, postgres=pg, **overrides))


def span(low: float, high: float) -> Span:
    return Span(Decimal(str(low)), Decimal(str(high)))


# Per process cp_max: main 10, synchrotron 5, generic-worker 5, event-persister 10, media 3, typing 2,
# to-device 3, receipts 3, presence 3. The schema Job's one connection counts at the maximum only.
SCHEMA = 1
AT_MINIMUM = 10 + 2 * 5 + 2 * 5 + 2 * 10 + 2 * 3 + 2 + 3 + 2 * 3 + 3
AT_MAXIMUM = 10 + 5 * 5 + 5 * 5 + 2 * 10 + 2 * 3 + 2 + 3 + 2 * 3 + 3 + SCHEMA


def test_connections_cpu_and_memory_by_hand() -> None:
    budget = plan_500().budget
    assert (AT_MINIMUM, AT_MAXIMUM) == (70, 101)
    assert budget.postgres_connections == span(AT_MINIMUM, AT_MAXIMUM)
    assert budget.client_connections == budget.postgres_connections  # no pooler: Synapse talks to PostgreSQL
    assert budget.postgres_limit == 200 - 10
    # Requests: main 1 core / 1Gi; busy classes 500m / 512Mi; stream writers 100m / 256Mi; router 100m / 128Mi.
    cpu_min = 1 + (2 + 2 + 2 + 2) * 0.5 + (1 + 1 + 2 + 1) * 0.1 + 2 * 0.1
    cpu_max = 1 + (5 + 5 + 2 + 2) * 0.5 + (1 + 1 + 2 + 1) * 0.1 + 3 * 0.1
    assert budget.cpu_requests == span(round(cpu_min, 3), round(cpu_max, 3))
    mib = 2**20
    assert budget.memory_requests == span(
        (1024 + 8 * 512 + 5 * 256 + 2 * 128) * mib, (1024 + 14 * 512 + 5 * 256 + 3 * 128) * mib
    )
    # Limits: main 4 / 4Gi; busy 2 / 2Gi; writers 1 / 1Gi; router 2 / 512Mi.
    assert budget.cpu_limits == span(4 + 8 * 2 + 5 * 1 + 2 * 2, 4 + 14 * 2 + 5 * 1 + 3 * 2)


def test_nodes_follow_the_larger_of_cpu_and_memory() -> None:
    assert plan_500(capacity={"node": {"cpu": "2", "memory": "64Gi"}}).budget.nodes == span(3, 5)  # 5.7, 8.8 cores
    assert plan_500(capacity={"node": {"cpu": "64", "memory": "4Gi"}}).budget.nodes == span(2, 3)  # 6.5, 9.6 GiB


def test_a_stack_over_the_limit_is_refused_with_the_three_heaviest_classes() -> None:
    with pytest.raises(ConfigError) as caught:
        plan_500({"maxConnections": 100})
    message = str(caught.value)
    assert caught.value.key == "synapse:postgres.maxConnections"
    assert message.startswith("stack 'test': synapse:postgres.maxConnections = 100 is not allowed")
    assert "may open 101 connections, over the limit of 90" in message
    assert "most: synchrotron 25 (5 x 5), generic-worker 25 (5 x 5), event-persister 20 (2 x 10)" in message
    assert "at least 111" in message and "pooler.enabled" in message and "cpMax" in message
    assert "\n" not in message


def test_exactly_at_the_limit_passes() -> None:
    assert plan_500({"maxConnections": 111}).budget.postgres_connections.at_maximum == 101


def test_per_class_pools_reach_the_config_and_the_budget() -> None:
    plan = plan_500(workers={"synchrotron": {"database": {"cpMin": 1, "cpMax": 2}}}, main={"database": {"cpMax": 20}})
    assert plan.budget.postgres_connections.at_maximum == AT_MAXIMUM - 5 * 5 + 5 * 2 - 10 + 20
    args = {w.part: yaml.safe_load(w.config.text)["database"]["args"] for w in plan.workloads}
    assert (args["synchrotron"]["cp_min"], args["synchrotron"]["cp_max"]) == (1, 2)
    assert (args["main"]["cp_min"], args["main"]["cp_max"]) == (5, 20)
    assert (args["event-persister"]["cp_min"], args["event-persister"]["cp_max"]) == (2, 10)
    assert "database" not in yaml.safe_load(plan.shared.text)  # a class file's section would replace it whole
    merged = dict(plan.workload("synchrotron").process_configs())
    assert yaml.safe_load(next(iter(merged.values())))["database"]["args"]["cp_max"] == 2


POOLED = {"maxConnections": 100, "pooler": {"enabled": True, "replicas": 2, "poolSize": 20}}


MAIN_DIRECT = 10
"""Main's pool, which reaches PostgreSQL itself even with PgBouncer: it runs the background updates,
which need session state (no background worker at 500 CCU)."""


def test_pooled_budget_counts_pgbouncer_pools_not_synapse_pools() -> None:
    budget = plan_500(POOLED).budget
    assert budget.client_connections == span(AT_MINIMUM, AT_MAXIMUM)  # over the limit of 90, but to PgBouncer
    assert budget.pooled_connections == span(AT_MINIMUM - MAIN_DIRECT, AT_MAXIMUM - MAIN_DIRECT - SCHEMA)
    assert budget.direct_connections == span(MAIN_DIRECT, MAIN_DIRECT + SCHEMA)
    assert budget.postgres_connections == span(2 * 20 + MAIN_DIRECT, 3 * 20 + MAIN_DIRECT + SCHEMA)
    assert budget.cpu_requests.at_minimum == Decimal("5.7") + 2 * Decimal("0.25")


def test_pooled_over_the_limit_names_pool_size() -> None:
    with pytest.raises(ConfigError) as caught:
        plan_500({**POOLED, "pooler": {"enabled": True, "replicas": 2, "poolSize": 40}})
    assert caught.value.key == "synapse:postgres.pooler.poolSize"
    text = str(caught.value)
    assert "3 PgBouncer pods during a rollout x 40 + 11 direct = 131 connections, over the limit of 90" in text
    assert "at most 26 (PgBouncer pods x poolSize, plus the 11 direct connections of main, schema," in text


def test_pgbouncer_client_limit_is_checked() -> None:
    with pytest.raises(ConfigError) as caught:
        plan_500({**POOLED, "pooler": {**POOLED["pooler"], "maxClientConnections": 89}})  # type: ignore[dict-item]
    assert caught.value.key == "synapse:postgres.pooler.maxClientConnections"
    assert f"at least {AT_MAXIMUM - MAIN_DIRECT - SCHEMA}" in str(caught.value)  # main's own reach PostgreSQL
    plan_500({**POOLED, "pooler": {**POOLED["pooler"], "maxClientConnections": 90}})  # type: ignore[dict-item]


def test_pooled_processes_connect_to_pgbouncer_and_it_to_postgres() -> None:
    plan = plan_500({**POOLED, "port": 5433})
    for workload in plan.workloads:
        args = yaml.safe_load(workload.config.text)["database"]["args"]
        if workload.part == "main":  # background updates keep session state: PostgreSQL itself
            assert (args["host"], args["port"]) == ("pg.example.org", 5433)
        else:
            assert (args["host"], args["port"]) == ("synapse-pgbouncer.matrix.svc.cluster.local", 6432)
    kinds = sorted(m["kind"] for m in plan.pooler_manifests)
    assert kinds == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    ini = next(m for m in plan.pooler_manifests if m["kind"] == "ConfigMap")["data"]["pgbouncer.ini"]
    assert "synapse = host=pg.example.org port=5433 dbname=synapse user=synapse" in ini
    for line in (
        "pool_mode = transaction",
        "default_pool_size = 20",
        "max_db_connections = 20",
        "server_reset_query =",
    ):
        assert f"\n{line}\n" in ini
    policies = {m["metadata"]["name"] for m in plan.base_manifests if m["kind"] == "NetworkPolicy"}
    assert "synapse-allow-pgbouncer-from-synapse" in policies
    assert plan_500().pooler_manifests == ()


def test_scaling_synapse_never_changes_pgbouncer() -> None:
    small = plan_500(POOLED)
    big = build_plan(settings_for(ccu=900, postgres={"host": "pg.example.org", **POOLED}))
    assert small.pooler_manifests == big.pooler_manifests
    assert small.budget.client_connections != big.budget.client_connections


def test_synapse_sets_exactly_what_pgbouncer_repeats_on_every_server_connection() -> None:
    """Run the installed Synapse's own per-connection setup against a recorder: what it SETs for a session
    must be what PgBouncer's connect_query sets, value for value."""
    from synapse.storage.engines.postgres import PostgresEngine  # noqa: PLC0415

    executed: list[tuple[str, tuple[Any, ...]]] = []

    class Cursor:
        def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
            executed.append((sql, args))

        def close(self) -> None:
            pass

    class Connection:
        def set_isolation_level(self, level: int) -> None:
            pass

        def cursor(self) -> Cursor:
            return Cursor()

        def commit(self) -> None:
            pass

    PostgresEngine({"name": "psycopg2", "args": {}}).on_new_connection(Connection())  # type: ignore[arg-type]
    session = []
    for sql, args in executed:
        name, _, value = sql.removeprefix("SET ").partition(" TO ")
        session.append((name, str(args[0]) if value == "?" else value))
    assert session == list(SYNAPSE_SESSION_SETTINGS)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_shipped_stacks_fit_their_servers(stack: str) -> None:
    values, secret_keys = read_stack_file(stack, PROJECT_DIR / f"Pulumi.{stack}.yaml")
    plan = build_plan(load_settings(stack, values, secret_keys))
    assert plan.budget.postgres_connections.at_maximum <= plan.budget.postgres_limit
    if stack == "prod":
        assert plan.budget.pooler_pods is not None
        assert plan.budget.client_connections.at_maximum > plan.settings.postgres.max_connections


def test_the_background_worker_connects_to_postgres_itself_beside_pgbouncer() -> None:
    """Whoever runs Synapse's background tasks and updates sets session state on its connection; in
    transaction mode PgBouncer would hand its next statement another server connection."""
    plan = build_plan(
        settings_for(
            ccu=7000,
            postgres={"host": "pg.example.org", "maxConnections": 1000, "pooler": {"enabled": True, "poolSize": 100}},
        )
    )
    direct = {
        w.part for w in plan.workloads if yaml.safe_load(w.config.text)["database"]["args"]["host"] == "pg.example.org"
    }
    assert direct == {"main", "background-worker"}
    assert plan.budget.direct_connections == span(10 + 5, 10 + 5 + SCHEMA)
    assert "plus 15 -> 16 direct from main, background-worker, schema (session state)" in "\n".join(
        budget_lines(plan.settings, plan.budget)
    )


def test_the_session_state_synapse_sets_is_what_the_direct_path_is_for() -> None:
    """The statements that need one server connection for the whole update, in the installed Synapse."""
    from importlib.util import find_spec  # noqa: PLC0415
    from pathlib import Path  # noqa: PLC0415

    spec = find_spec("synapse")
    assert spec is not None and spec.origin is not None
    source = (Path(spec.origin).parent / "storage" / "background_updates.py").read_text()
    assert "SET SESSION statement_timeout = 0" in source
    assert "attempt_to_set_autocommit(conn.conn, True)" in source
    assert "CREATE %(unique)s INDEX CONCURRENTLY" in source
    homeserver = (Path(spec.origin).parent / "app" / "homeserver.py").read_text()
    assert "db.updates.start_doing_background_updates()" in homeserver  # main runs them, always
