"""What a plan costs: PostgreSQL connections, CPU, memory and nodes, at the HPA minimums and maximums.

Read off the plan's own Kubernetes objects (pod templates, replica counts, HPA bounds, rollout
strategies) rather than recomputed from the sizing, so the budget cannot drift from what is deployed.
`atMaximum` is the worst moment: every HPA at its maximum while a rollout adds its surge pods
(Deployments surge by their `maxSurge`, rounded up as Kubernetes rounds it; StatefulSets replace one
pod at a time and never surge).

Connections are counted where PostgreSQL feels them. Each Synapse process opens at most its class's
`cp_max` (Twisted's adbapi keeps one connection per pool thread). Without a pooler those reach the
server directly; with PgBouncer the server sees each PgBouncer pod's pool, Synapse's pooled
connections end at PgBouncer, and the processes that need session state (main, the background worker:
`session_database` in the class table) still reach the server directly, beside the pools. The schema
Job (kube/schema.py) holds one direct connection at the start of an update, while the previous
revision still runs; it is counted at the maximum.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from synapse_workers.kube.manifests import Manifest
from synapse_workers.kube.schema import SCHEMA_COMPONENT, SCHEMA_CONNECTIONS
from synapse_workers.kube.workload import Workload
from synapse_workers.model.config_types import quantity
from synapse_workers.model.errors import ConfigError
from synapse_workers.model.settings import NAMESPACE, Settings


@dataclass(frozen=True)
class Span:
    """One figure at the HPA minimums and at the HPA maximums plus rollout surge."""

    at_minimum: Decimal
    at_maximum: Decimal

    def __add__(self, other: Span) -> Span:
        return Span(self.at_minimum + other.at_minimum, self.at_maximum + other.at_maximum)

    def times(self, factor: Decimal | int) -> Span:
        return Span(self.at_minimum * factor, self.at_maximum * factor)


ZERO = Span(Decimal(0), Decimal(0))


@dataclass(frozen=True)
class ClassConnections:
    part: str
    cp_max: int
    processes: Span
    direct: bool
    """Connects to PostgreSQL itself even when PgBouncer runs (it needs session state)."""

    @property
    def connections(self) -> Span:
        return self.processes.times(self.cp_max)


@dataclass(frozen=True)
class Budget:
    synapse_connections: tuple[ClassConnections, ...]
    """Per workload (main first, the schema Job last): processes and the connections their pools may open."""
    pooler_pods: Span | None
    """PgBouncer pods, when the stack runs PgBouncer."""
    pool_size: int
    postgres_limit: int
    """max_connections less the reserve: what this deployment may use."""
    cpu_requests: Span
    cpu_limits: Span
    memory_requests: Span
    memory_limits: Span
    node_cpu: Decimal
    node_memory: Decimal

    @property
    def client_connections(self) -> Span:
        """Connections Synapse's processes open, to PostgreSQL and to PgBouncer together."""
        return sum((c.connections for c in self.synapse_connections), ZERO)

    @property
    def pooled_connections(self) -> Span:
        """Connections Synapse's processes open to PgBouncer (none without it)."""
        if self.pooler_pods is None:
            return ZERO
        return sum((c.connections for c in self.synapse_connections if not c.direct), ZERO)

    @property
    def direct_connections(self) -> Span:
        """Connections Synapse's processes open to PostgreSQL itself: all of them without PgBouncer."""
        if self.pooler_pods is None:
            return self.client_connections
        return sum((c.connections for c in self.synapse_connections if c.direct), ZERO)

    @property
    def direct_parts(self) -> tuple[str, ...]:
        return tuple(c.part for c in self.synapse_connections if c.direct)

    @property
    def postgres_connections(self) -> Span:
        """Connections PostgreSQL itself serves for this deployment."""
        if self.pooler_pods is None:
            return self.client_connections
        return self.pooler_pods.times(self.pool_size) + self.direct_connections

    @property
    def nodes(self) -> Span:
        """Nodes of the configured size that the requests need: a lower bound, as no bin packs perfectly."""

        def count(cpu: Decimal, memory: Decimal) -> Decimal:
            return Decimal(max(math.ceil(cpu / self.node_cpu), math.ceil(memory / self.node_memory)))

        return Span(
            count(self.cpu_requests.at_minimum, self.memory_requests.at_minimum),
            count(self.cpu_requests.at_maximum, self.memory_requests.at_maximum),
        )

    def heaviest(self, count: int = 3) -> tuple[ClassConnections, ...]:
        """The workloads whose pools add up to most at the maximums (ties in table order)."""
        ranked = sorted(self.synapse_connections, key=lambda c: -c.connections.at_maximum)
        return tuple(ranked[:count])


def _surge(spec: dict[str, Any], replicas: int) -> int:
    """Extra pods a rolling update may add, rounded up as Kubernetes rounds maxSurge."""
    surge = spec.get("strategy", {}).get("rollingUpdate", {}).get("maxSurge", "25%")
    if isinstance(surge, str) and surge.endswith("%"):
        return math.ceil(replicas * int(surge[:-1]) / 100)
    return int(surge)


def _workload(objects: Sequence[Manifest]) -> Manifest:
    return next(o for o in objects if o["kind"] in ("Deployment", "StatefulSet"))


def pods(objects: Sequence[Manifest]) -> Span:
    """Pods of the one Deployment or StatefulSet among `objects`, bounded by the HPA among them if any."""
    workload = _workload(objects)
    spec = workload["spec"]
    hpa = next((o for o in objects if o["kind"] == "HorizontalPodAutoscaler"), None)
    low = hpa["spec"]["minReplicas"] if hpa is not None else spec["replicas"]
    high = hpa["spec"]["maxReplicas"] if hpa is not None else spec["replicas"]
    if workload["kind"] == "Deployment":
        high += _surge(spec, high)
    return Span(Decimal(low), Decimal(high))


def _per_pod(workload: Manifest, field: str, resource: str) -> Decimal:
    containers = workload["spec"]["template"]["spec"]["containers"]
    return sum((quantity(c["resources"][field][resource]) for c in containers), Decimal(0))


def compute_budget(
    settings: Settings, workloads: Sequence[Workload], router: Sequence[Manifest], pooler: Sequence[Manifest]
) -> Budget:
    """`router` and `pooler`: those objects of the plan (`pooler` empty without PgBouncer)."""
    spans: dict[tuple[str, str], Span] = {}
    for objects in [*(w.manifests for w in workloads), router, *([pooler] if pooler else [])]:
        count = pods(objects)
        for field in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                key = (field, resource)
                spans[key] = spans.get(key, ZERO) + count.times(_per_pod(_workload(objects), field, resource))
    schema = ClassConnections(SCHEMA_COMPONENT, SCHEMA_CONNECTIONS, Span(Decimal(0), Decimal(1)), direct=True)
    return Budget(
        synapse_connections=(
            *(
                ClassConnections(w.part, settings.db_pool(w.spec).cp_max, pods(w.manifests), w.spec.session_database)
                for w in workloads
            ),
            schema,
        ),
        pooler_pods=pods(pooler) if pooler else None,
        pool_size=settings.postgres.pooler.pool_size,
        postgres_limit=settings.postgres.max_connections - settings.postgres.reserved_connections,
        cpu_requests=spans[("requests", "cpu")],
        cpu_limits=spans[("limits", "cpu")],
        memory_requests=spans[("requests", "memory")],
        memory_limits=spans[("limits", "memory")],
        node_cpu=quantity(settings.capacity.node.cpu),
        node_memory=quantity(settings.capacity.node.memory),
    )


def check_budget(settings: Settings, budget: Budget) -> None:
    """Refuse a plan whose worst case needs more PostgreSQL connections than the server allows: a check of
    the settings that needs the whole plan (every pool times every pod), so it runs here, not in settings."""
    needed = int(budget.postgres_connections.at_maximum)
    postgres = settings.postgres
    clients = int(budget.pooled_connections.at_maximum)
    if budget.pooler_pods is not None and clients > postgres.pooler.max_client_connections:
        raise ConfigError(
            settings.stack,
            f"{NAMESPACE}:postgres.pooler.maxClientConnections",
            postgres.pooler.max_client_connections,
            f"at least {clients}: Kubernetes does not balance connections evenly, so one PgBouncer pod may get all",
            f"at the HPA maximums during a rollout Synapse may open {clients} connections to PgBouncer",
        )
    if needed <= budget.postgres_limit:
        return
    reserve = f"{postgres.reserved_connections} reserved"
    if budget.pooler_pods is not None:
        pods_at_max = int(budget.pooler_pods.at_maximum)
        direct = int(budget.direct_connections.at_maximum)
        room = max(budget.postgres_limit - direct, 0)
        raise ConfigError(
            settings.stack,
            f"{NAMESPACE}:postgres.pooler.poolSize",
            postgres.pooler.pool_size,
            f"at most {room // pods_at_max} (PgBouncer pods x poolSize, plus the {direct} direct connections of "
            f"{', '.join(budget.direct_parts)}, must stay within maxConnections {postgres.max_connections} less "
            f"{reserve}), or a larger synapse:postgres.maxConnections",
            f"{pods_at_max} PgBouncer pods during a rollout x {postgres.pooler.pool_size} + {direct} direct = "
            f"{needed} connections, over the limit of {budget.postgres_limit}",
        )
    heaviest = ", ".join(
        f"{c.part} {int(c.connections.at_maximum)} ({int(c.processes.at_maximum)} x {c.cp_max})"
        for c in budget.heaviest()
    )
    raise ConfigError(
        settings.stack,
        f"{NAMESPACE}:postgres.maxConnections",
        postgres.max_connections,
        f"at least {needed + postgres.reserved_connections} ({needed} + {reserve}); or enable "
        f"synapse:postgres.pooler.enabled, or lower synapse:workers.<class>.database.cpMax",
        f"at the HPA maximums during a rollout Synapse may open {needed} connections, over the limit of "
        f"{budget.postgres_limit}; most: {heaviest}",
    )


def _cores(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _span_json(span: Span, unit: str = "") -> dict[str, Any]:
    convert = _cores if unit == "cores" else int
    return {"atMinimum": convert(span.at_minimum), "atMaximum": convert(span.at_maximum)}


def budget_json(settings: Settings, budget: Budget) -> dict[str, Any]:
    """Cores as numbers, memory in bytes, connections as counts."""
    postgres = settings.postgres
    return {
        "postgresConnections": {
            **_span_json(budget.postgres_connections),
            "limit": budget.postgres_limit,
            "maxConnections": postgres.max_connections,
            "reserved": postgres.reserved_connections,
            "pooled": budget.pooler_pods is not None,
            "direct": _span_json(budget.direct_connections),
        },
        "synapseConnections": _span_json(budget.client_connections),
        "byWorkload": {
            c.part: {"perProcess": c.cp_max, **_span_json(c.connections)} for c in budget.synapse_connections
        },
        "cpuRequests": _span_json(budget.cpu_requests, "cores"),
        "cpuLimits": _span_json(budget.cpu_limits, "cores"),
        "memoryRequests": _span_json(budget.memory_requests),
        "memoryLimits": _span_json(budget.memory_limits),
        "nodes": {
            **_span_json(budget.nodes),
            "node": {"cpu": settings.capacity.node.cpu, "memory": settings.capacity.node.memory},
        },
    }


def _count(value: Decimal) -> str:
    return f"{int(value):,}"


def _core_text(value: Decimal) -> str:
    return f"{_cores(value):,}"


def _gib(value: Decimal) -> str:
    return f"{value / 2**30:,.1f} GiB"


def budget_lines(settings: Settings, budget: Budget) -> list[str]:
    """The budget for people: minimum → maximum, each with what it is measured against."""
    postgres = settings.postgres

    def arrow(span: Span, show: Callable[[Decimal], str] = _count) -> str:
        return f"{show(span.at_minimum)} -> {show(span.at_maximum)}"

    lines = ["Budget (at the HPA minimums -> at the HPA maximums during a rollout):"]
    limit = (
        f"of {budget.postgres_limit:,} allowed (max_connections {postgres.max_connections:,}, "
        f"{postgres.reserved_connections} reserved)"
    )
    if budget.pooler_pods is None:
        lines.append(f"  PostgreSQL connections: {arrow(budget.postgres_connections)} {limit}")
    else:
        lines.append(
            f"  PostgreSQL connections: {arrow(budget.postgres_connections)} {limit}: PgBouncer pods "
            f"{arrow(budget.pooler_pods)} x poolSize {postgres.pooler.pool_size}, plus "
            f"{arrow(budget.direct_connections)} direct from {', '.join(budget.direct_parts)} (session state)"
        )
        lines.append(f"  Synapse -> PgBouncer connections: {arrow(budget.pooled_connections)}")
    cpu = f"{arrow(budget.cpu_requests, _core_text)} cores (limits {arrow(budget.cpu_limits, _core_text)})"
    lines.append(f"  CPU requests: {cpu}")
    lines.append(
        f"  memory requests: {arrow(budget.memory_requests, _gib)} (limits {arrow(budget.memory_limits, _gib)})"
    )
    node = settings.capacity.node
    lines.append(
        f"  nodes of {node.cpu} CPU / {node.memory}: {arrow(budget.nodes)} "
        "(requests only: a lower bound, before spreading and daemons)"
    )
    return lines
