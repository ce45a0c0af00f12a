"""The PromQL the alerts, the dashboard and `recommend` share, so a figure `recommend` reads is the one an
alert would have fired on.

Every expression is scoped to the stack's namespace and to the `job` labels the ServiceMonitors
produce, so two stacks scraped by one Prometheus never mix. The metric names are the ones Synapse
1.163.2 exports (the Python metric name, plus the `_total`, `_bucket`, `_sum` and `_count` suffixes
Prometheus' client adds), cAdvisor's, and kube-state-metrics'.
"""

from __future__ import annotations

from collections.abc import Sequence

from synapse_workers.kube.manifests import Manifest
from synapse_workers.kube.workload import Workload
from synapse_workers.model.config_types import quantity

METRICS_PATH = "/_synapse/metrics"
"""Where Synapse documents its metrics listener; the listener answers on any path, this keeps to the docs."""
CONTAINER = "synapse"
"""The container name in every Synapse pod template, as cAdvisor and kube-state-metrics label it."""

LONG_POLL_SERVLETS = ("SyncRestServlet", "SlidingSyncRestServlet", "EventStreamRestServlet")
"""Servlets that hold a request open until events arrive or the client's timeout (often 30 s) runs out:
their response time measures how quiet the rooms are, not how loaded the worker is."""

SYNC_LATENCY_MATCHERS: dict[str, str] = {"servlet": "SyncRestServlet", "tag": "~sync_v2:(initial_sync|full_state_sync)"}
"""Only the syncs Synapse answers without long-polling (see `_sync_latency`)."""
CLIENT_LATENCY_MATCHERS: dict[str, str] = {"servlet": "!~" + "|".join(LONG_POLL_SERVLETS)}


def matchers(**pairs: str) -> str:
    """A label-matcher list; a value starting with `~` or `!~` becomes a regex matcher."""
    out = []
    for key, value in pairs.items():
        if value.startswith("!~"):
            out.append(f'{key}!~"{value[2:]}"')
        elif value.startswith("~"):
            out.append(f'{key}=~"{value[1:]}"')
        else:
            out.append(f'{key}="{value}"')
    return ", ".join(out)


def of_kind(workload: Workload, kind: str) -> Manifest | None:
    return next((m for m in workload.manifests if m["kind"] == kind), None)


def name_of(workload: Workload, kind: str) -> str:
    manifest = of_kind(workload, kind)
    assert manifest is not None, (workload.part, kind)
    return manifest["metadata"]["name"]  # type: ignore[no-any-return]


def scrape_job(workload: Workload) -> str:
    """The Service name: with no `jobLabel`, the Prometheus Operator sets `job` to it. Every query of
    this module selects on it, so a Prometheus configured without the Operator must use it too
    (`static_scrape_configs`)."""
    return name_of(workload, "Service")


def jobs(workloads: Sequence[Workload]) -> str:
    """A `job` matcher for several workloads at once."""
    return "~" + "|".join(sorted(scrape_job(w) for w in workloads))


def latency_p95(workload: Workload, namespace: str, extra: dict[str, str], rate_range: str = "5m") -> str:
    """Class-wide p95 of the requests `extra` selects, in seconds: the alerts' and `recommend`'s."""
    selector_text = matchers(namespace=namespace, job=scrape_job(workload), **extra)
    return (
        "histogram_quantile(0.95, sum by (namespace, le) "
        f"(rate(synapse_http_server_response_time_seconds_bucket{{{selector_text}}}[{rate_range}])))"
    )


def persisted_events_rate(workload: Workload, namespace: str, rate_range: str = "5m") -> str:
    """Events persisted per second by each pod of `workload` (counted in PersistEventsStore, which only
    runs on the `events` stream writers)."""
    return (
        "sum by (namespace, pod) (rate(synapse_storage_events_persisted_events_total"
        f"{{{matchers(namespace=namespace, job=scrape_job(workload))}}}[{rate_range}]))"
    )


MESSAGE_TYPES = ("m.room.message", "m.room.encrypted")
"""Event types that are messages. Synapse counts every persisted event by type in
`synapse_storage_events_persisted_events_sep` (TRACKED_EVENT_TYPES in storage/databases/main/events.py);
the unlabelled total also counts joins, room creations and other state, which the guide's "messages per
second" does not mean."""


def sync_users(workloads: Sequence[Workload], namespace: str) -> str:
    """Users with a live notifier stream on the processes serving `/sync` (see README, `recommend`)."""
    return f"sum(synapse_notifier_users{{{matchers(namespace=namespace, job=jobs(workloads))}}})"


def messages_rate(workloads: Sequence[Workload], namespace: str, rate_range: str) -> str:
    """Messages persisted per second over the whole stack (local and remote senders alike)."""
    sel = matchers(namespace=namespace, job=jobs(workloads), type="~" + "|".join(MESSAGE_TYPES))
    return f"sum(rate(synapse_storage_events_persisted_events_sep_total{{{sel}}}[{rate_range}]))"


def known_servers(workloads: Sequence[Workload], namespace: str) -> str:
    """Remote servers sharing a room with us, plus ourselves. Only the process that runs background tasks
    registers the gauge, and only with `metrics_flags.known_servers`; every job is asked, so the answer
    does not depend on which process that is."""
    return f"max(synapse_federation_known_servers{{{matchers(namespace=namespace, job=jobs(workloads))}}})"


def processes_up(workload: Workload, namespace: str) -> str:
    """How many of the workload's processes Prometheus scraped successfully."""
    return f"sum(up{{{matchers(namespace=namespace, job=scrape_job(workload))}}})"


def cpu_request_cores(workload: Workload) -> float:
    """The CPU request of one process of the workload, as its pod template asks for it."""
    containers = workload.manifests[0]["spec"]["template"]["spec"]["containers"]
    (container,) = (c for c in containers if c["name"] == CONTAINER)
    return float(quantity(container["resources"]["requests"]["cpu"]))


def cpu_of_requests(workload: Workload, namespace: str, rate_range: str) -> str:
    """CPU used per process over its request (0.7 = the guide's 70 %), from Synapse's own CPU counters,
    which every process exports under the same `job` as its other metrics: this needs neither cAdvisor
    nor kube-state-metrics (the alert's source) and reads the same on a plain host."""
    sel = matchers(namespace=namespace, job=scrape_job(workload))
    used = (
        f"rate(process_cpu_user_seconds_total{{{sel}}}[{rate_range}]) "
        f"+ rate(process_cpu_system_seconds_total{{{sel}}}[{rate_range}])"
    )
    return f"avg({used}) / {cpu_request_cores(workload):g}"


def peak(expr: str, window: str, step: str) -> str:
    """The highest value `expr` took over the last `window`, evaluated every `step` (a subquery)."""
    return f"max_over_time(({expr})[{window}:{step}])"
