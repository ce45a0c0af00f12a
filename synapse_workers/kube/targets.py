"""What `recommend` checks per workload: the guide's targets as queries with a limit each, read from the
same series and selectors as the alerts (`alerts.py`), chosen by the class's signal.
"""

from __future__ import annotations

from dataclasses import dataclass

from synapse_workers.kube.alerts import (
    CLIENT_LATENCY,
    CLIENT_P95_SECONDS,
    CPU_HIGH,
    CPU_OF_REQUESTS,
    EVENTS_PER_SECOND_PER_PERSISTER,
    PERSISTER_RATE,
    SYNC_LATENCY,
    SYNC_P95_SECONDS,
)
from synapse_workers.kube.queries import (
    CLIENT_LATENCY_MATCHERS,
    SYNC_LATENCY_MATCHERS,
    cpu_of_requests,
    latency_p95,
    persisted_events_rate,
)
from synapse_workers.kube.workload import Workload
from synapse_workers.model.worker_classes import Signal


@dataclass(frozen=True)
class Target:
    """One of the guide's targets for a workload, as a query whose value must stay at or below `limit`."""

    alert: str
    """The alert that watches the same thing (in Kubernetes, through its own sources for CPU)."""
    what: str
    metric: str
    expr: str
    limit: float
    unit: str


_LATENCY: dict[Signal, tuple[str, dict[str, str], float, str]] = {
    "sync-latency": (SYNC_LATENCY, SYNC_LATENCY_MATCHERS, SYNC_P95_SECONDS, "/sync p95 (initial and full-state)"),
    "client-latency": (CLIENT_LATENCY, CLIENT_LATENCY_MATCHERS, CLIENT_P95_SECONDS, "client API p95"),
}
"""The latency signals, as the alerts read them: alert, request matchers, p95 target, what."""


def targets(workload: Workload, namespace: str, rate_range: str) -> tuple[Target, ...]:
    """The guide's targets `recommend` checks for a workload: CPU for every one, latency and the
    persister rate where the alerts watch them."""
    out = [
        Target(
            CPU_HIGH,
            "CPU of requests",
            "process_cpu_user_seconds_total",
            cpu_of_requests(workload, namespace, rate_range),
            CPU_OF_REQUESTS,
            "ratio",
        )
    ]
    latency = _LATENCY.get(workload.spec.watch)
    if latency is not None:
        alert, extra, limit, what = latency
        expr = latency_p95(workload, namespace, extra, rate_range)
        out.append(Target(alert, what, "synapse_http_server_response_time_seconds_bucket", expr, limit, "seconds"))
    if workload.spec.watch == "persister-rate":
        out.append(
            Target(
                PERSISTER_RATE,
                "events persisted per pod",
                "synapse_storage_events_persisted_events_total",
                f"max({persisted_events_rate(workload, namespace, rate_range)})",
                EVENTS_PER_SECOND_PER_PERSISTER,
                "events/s",
            )
        )
    return tuple(out)
