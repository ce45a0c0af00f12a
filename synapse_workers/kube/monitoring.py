"""Prometheus Operator objects for one stack: what to scrape, and the scaling guide's targets as alerts.

Pure data over the plan, like manifests.py, so the same objects reach Pulumi, `render` and the tests
(which run them through promtool). Every expression is scoped to the stack's namespace and to the
`job` labels the ServiceMonitors below produce, so two stacks scraped by one Prometheus never mix.

The metric names are the ones Synapse 1.163.2 exports (the Python metric name, plus the `_total`,
`_bucket`, `_sum` and `_count` suffixes Prometheus' client adds), cAdvisor's, and kube-state-metrics'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from synapse_workers.kube.manifests import Manifest, labels, selector
from synapse_workers.kube.rollout import MAIN
from synapse_workers.kube.workload import Deployed, Workload
from synapse_workers.model.config_types import quantity
from synapse_workers.model.settings import Settings
from synapse_workers.model.worker_classes import BY_NAME, CLASS_NAMES, WORKER_CLASSES

API_VERSION = "monitoring.coreos.com/v1"
METRICS_PORT_NAME = "metrics"
"""The Service port every Synapse workload exposes (components/manifests.py `service()`)."""
METRICS_PATH = "/_synapse/metrics"
"""Where Synapse documents its metrics listener; the listener answers on any path, this keeps to the docs."""
RULE_NAME = "synapse-scaling"
CONTAINER = "synapse"
"""The container name in every Synapse pod template, as cAdvisor and kube-state-metrics label it."""

SYNC_LATENCY = "SynapseSyncLatencyHigh"
CLIENT_LATENCY = "SynapseClientApiLatencyHigh"
PERSISTER_RATE = "SynapseEventPersisterRateHigh"
FEDERATION_QUEUE = "SynapseFederationSendQueueHigh"
FEDERATION_FAILURES = "SynapseFederationSendFailuresHigh"
REPLICATION_LAG = "SynapseStreamReplicationLagHigh"
CPU_HIGH = "SynapseManualClassCpuHigh"
HPA_AT_MAX = "SynapseHpaAtMaximum"
STATEFULSET_NOT_READY = "SynapseStatefulSetNotReady"

# The guide's targets (worker_classes.py `monitoring`), as numbers.
SYNC_P95_SECONDS = 0.5
CLIENT_P95_SECONDS = 1.0
EVENTS_PER_SECOND_PER_PERSISTER = 100
FEDERATION_QUEUE_LIMIT = 1000
FEDERATION_FAILURE_RATIO = 0.01
REPLICATION_LAG_SECONDS = 1
CPU_OF_REQUESTS = 0.70
"""The guide's best practice 2: scale on more than 70 % CPU sustained for five minutes."""

LONG_POLL_SERVLETS = ("SyncRestServlet", "SlidingSyncRestServlet", "EventStreamRestServlet")
"""Servlets that hold a request open until events arrive or the client's timeout (often 30 s) runs out:
their response time measures how quiet the rooms are, not how loaded the worker is."""

SYNC_LATENCY_MATCHERS: dict[str, str] = {"servlet": "SyncRestServlet", "tag": "~sync_v2:(initial_sync|full_state_sync)"}
"""Only the syncs Synapse answers without long-polling (see `_sync_latency`)."""
CLIENT_LATENCY_MATCHERS: dict[str, str] = {"servlet": "!~" + "|".join(LONG_POLL_SERVLETS)}

STREAM_OF_CLASS: dict[str, str] = {
    "event-persister": "events",
    "todevice-writer": "to_device",
    "receipts-writer": "receipts",
    "presence-writer": "presence_stream",
    "account-data-writer": "account_data",
    "push-rules-writer": "push_rules_stream",
    "device-lists-writer": "device_lists_stream",
    "thread-subscriptions-writer": "thread_subscriptions",
}
"""The `stream_name` under which Synapse reports each writer class's stream position.

These are the names the stream ID generators register (synapse/storage/databases/main/*.py,
`MultiWriterIdGenerator(stream_name=...)`); presence's is `presence_stream`, not `presence`. The
typing stream lives in memory on its writer, with no ID generator, so Synapse exports no position for
it and typing-writer gets no lag alert.
"""


def _procedure(class_name: str) -> str:
    """The guide's scale-up step for a class, in the form this program accepts.

    A single-writer class cannot take more replicas (the settings refuse it, as Synapse would), so the
    only lever there is CPU; main is not a worker class and has its own resources key.
    """
    if class_name == MAIN:
        return (
            "main runs exactly one replica: give it more CPU with "
            "`pulumi config set --path synapse:main.resources.requests.cpu <cpu>` (and `limits.cpu`) "
            "then `pulumi up`"
        )
    spec = BY_NAME[class_name]
    if spec.exactly_one:
        return (
            f"{spec.why_one}, so more replicas are refused: "
            f"give it more CPU with `pulumi config set --path synapse:workers.{class_name}.resources.requests.cpu "
            "<cpu>` (and `limits.cpu`) then `pulumi up`"
        )
    text = (
        f"update the stack's replicas with `pulumi config set --path synapse:workers.{class_name}.replicas N` "
        "then `pulumi up`"
    )
    if spec.hash_sharded:
        text += (
            f" (a new {class_name} member list restarts every Synapse process and replaces the StatefulSet, "
            "deleting it first: do it in a quiet period)"
        )
    elif spec.stream is not None:
        text += f" (a new {class_name} member list restarts every Synapse process: do it in a quiet period)"
    return text


@dataclass(frozen=True)
class Alert:
    """One alerting rule: which class it is about, what fires it, and what the operator does next."""

    name: str
    worker_class: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str

    def rule(self) -> dict[str, Any]:
        return {
            "alert": self.name,
            "expr": self.expr,
            "for": self.duration,
            "labels": {"severity": self.severity, "worker_class": self.worker_class},
            "annotations": {"summary": self.summary, "description": self.description},
        }


class Watch(NamedTuple):
    """What the `plan` command tells an operator to watch for a class."""

    metric: str
    alert: str


_WATCH: dict[str, Watch] = {
    MAIN: Watch("container_cpu_usage_seconds_total", CPU_HIGH),
    "synchrotron": Watch('synapse_http_server_response_time_seconds_bucket{servlet="SyncRestServlet"}', SYNC_LATENCY),
    "generic-worker": Watch("synapse_http_server_response_time_seconds_bucket", CLIENT_LATENCY),
    "event-persister": Watch("synapse_storage_events_persisted_events_total", PERSISTER_RATE),
    "federation-sender": Watch("synapse_federation_transaction_queue_pending_pdus", FEDERATION_QUEUE),
    "media-repository": Watch("container_cpu_usage_seconds_total", CPU_HIGH),
    "typing-writer": Watch("container_cpu_usage_seconds_total", CPU_HIGH),
    "todevice-writer": Watch('synapse_storage_stream_current_position{stream_name="to_device"}', REPLICATION_LAG),
    "receipts-writer": Watch('synapse_storage_stream_current_position{stream_name="receipts"}', REPLICATION_LAG),
    "presence-writer": Watch('synapse_storage_stream_current_position{stream_name="presence_stream"}', REPLICATION_LAG),
    **{
        spec.name: (
            Watch(
                f'synapse_storage_stream_current_position{{stream_name="{STREAM_OF_CLASS[spec.name]}"}}',
                REPLICATION_LAG,
            )
            if spec.name in STREAM_OF_CLASS
            else Watch("container_cpu_usage_seconds_total", CPU_HIGH)
        )
        for spec in WORKER_CLASSES
        if spec.beyond_guide
    },
}
assert set(_WATCH) == {MAIN, *CLASS_NAMES}


def watch_for_class(class_name: str) -> Watch:
    """The metric and alert that show a class needs scaling; `main` is accepted too.

    Raises KeyError for a name that is neither main nor a worker class, so a typo in a caller fails
    loudly instead of printing nothing.
    """
    return _WATCH[class_name]


def _matchers(**pairs: str) -> str:
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


def _of_kind(workload: Workload, kind: str) -> Manifest | None:
    return next((m for m in workload.manifests if m["kind"] == kind), None)


def _name_of(workload: Workload, kind: str) -> str:
    manifest = _of_kind(workload, kind)
    assert manifest is not None, (workload.part, kind)
    return manifest["metadata"]["name"]  # type: ignore[no-any-return]


def scrape_job(workload: Workload) -> str:
    """The Service name: with no `jobLabel`, the Prometheus Operator sets `job` to it. Every query of
    this module selects on it, so a Prometheus configured without the Operator must use it too
    (`static_scrape_configs`)."""
    return _name_of(workload, "Service")


def _jobs(workloads: Sequence[Workload]) -> str:
    """A `job` matcher for several workloads at once."""
    return "~" + "|".join(sorted(scrape_job(w) for w in workloads))


def latency_p95(workload: Workload, namespace: str, extra: dict[str, str], rate_range: str = "5m") -> str:
    """Class-wide p95 of the requests `extra` selects, in seconds: the alerts' and `recommend`'s."""
    selector_text = _matchers(namespace=namespace, job=scrape_job(workload), **extra)
    return (
        "histogram_quantile(0.95, sum by (namespace, le) "
        f"(rate(synapse_http_server_response_time_seconds_bucket{{{selector_text}}}[{rate_range}])))"
    )


def persisted_events_rate(workload: Workload, namespace: str, rate_range: str = "5m") -> str:
    """Events persisted per second by each pod of `workload` (counted in PersistEventsStore, which only
    runs on the `events` stream writers)."""
    return (
        "sum by (namespace, pod) (rate(synapse_storage_events_persisted_events_total"
        f"{{{_matchers(namespace=namespace, job=scrape_job(workload))}}}[{rate_range}]))"
    )


def _latency_alert(
    name: str, workload: Workload, namespace: str, extra: dict[str, str], threshold: float, what: str, advice: str
) -> Alert:
    # Class-wide p95, as a user of the class sees it; per-pod p95 at low traffic is mostly noise.
    expr = f"{latency_p95(workload, namespace, extra)} > {threshold:g}"
    return Alert(
        name=name,
        worker_class=workload.part,
        expr=expr,
        duration="10m",
        severity="warning",
        summary=f"{what} p95 on {workload.part} is {{{{ $value | humanizeDuration }}}} "
        f"(target < {threshold * 1000:g} ms)",
        description=f"{what} p95 in namespace {{{{ $labels.namespace }}}} has been above the guide's "
        f"{threshold * 1000:g} ms for 10 minutes. {advice}",
    )


def _sync_latency(workload: Workload, namespace: str) -> Alert:
    # Only the syncs Synapse answers without long-polling: handlers/sync.py tags each request
    # `sync_v2:initial_sync`, `sync_v2:full_state_sync` or `sync_v2:incremental_sync`, and only the
    # incremental ones wait for events (up to the client's timeout, usually 30 s). Their response time
    # is the room's quietness; counting them would keep p95 near 30 s on a perfectly healthy server.
    return _latency_alert(
        SYNC_LATENCY,
        workload,
        namespace,
        SYNC_LATENCY_MATCHERS,
        SYNC_P95_SECONDS,
        "/sync (initial and full-state)",
        "If SynapseHpaAtMaximum fires for synchrotron, the HPA cannot add pods: raise its ceiling "
        "(`pulumi config set --path synapse:workers.synchrotron.maxReplicas N`, or `synapse:ccu` if the load "
        "grew) then `pulumi up`. If synchrotron CPU is low, the time goes to the database: check the event "
        "persisters and PostgreSQL.",
    )


def _client_latency(workload: Workload, namespace: str) -> Alert:
    return _latency_alert(
        CLIENT_LATENCY,
        workload,
        namespace,
        CLIENT_LATENCY_MATCHERS,
        CLIENT_P95_SECONDS,
        "Client API",
        "If SynapseHpaAtMaximum fires for generic-worker, raise its ceiling "
        "(`pulumi config set --path synapse:workers.generic-worker.maxReplicas N`, or `synapse:ccu` if the "
        "load grew) then `pulumi up`. If CPU is low, look at the database and the servlet label of the slow "
        "requests.",
    )


def _persister_rate(workload: Workload, namespace: str) -> Alert:
    expr = f"{persisted_events_rate(workload, namespace)} > {EVENTS_PER_SECOND_PER_PERSISTER}"
    return Alert(
        name=PERSISTER_RATE,
        worker_class=workload.part,
        expr=expr,
        duration="10m",
        severity="warning",
        summary="{{ $labels.pod }} persists {{ $value | humanize }} events/s "
        f"(target < {EVENTS_PER_SECOND_PER_PERSISTER} per persister)",
        description="Event persister {{ $labels.pod }} in namespace {{ $labels.namespace }} has persisted more "
        f"than the guide's {EVENTS_PER_SECOND_PER_PERSISTER} events/s for 10 minutes. If the message rate grew, "
        "set it (`pulumi config set synapse:messagesPerSecond N`) so the plan resizes, or "
        + _procedure(workload.part)
        + ".",
    )


def _federation_queue(workload: Workload, namespace: str) -> Alert:
    # Both gauges are registered by the same FederationSender, so one exists exactly when the other does.
    sel = _matchers(namespace=namespace, job=scrape_job(workload))
    expr = (
        f"sum by (namespace, pod) (synapse_federation_transaction_queue_pending_pdus{{{sel}}}) "
        f"+ sum by (namespace, pod) (synapse_federation_transaction_queue_pending_edus{{{sel}}}) "
        f"> {FEDERATION_QUEUE_LIMIT}"
    )
    return Alert(
        name=FEDERATION_QUEUE,
        worker_class=workload.part,
        expr=expr,
        duration="10m",
        severity="warning",
        summary="{{ $labels.pod }} has {{ $value | humanize }} PDUs and EDUs queued "
        f"(target < {FEDERATION_QUEUE_LIMIT:,})",
        description="Federation sender {{ $labels.pod }} in namespace {{ $labels.namespace }} has held more than "
        f"the guide's {FEDERATION_QUEUE_LIMIT:,} pending PDUs and EDUs for 10 minutes. If failed sends are also "
        "high, remote servers are unreachable and more senders will not help; otherwise the senders are "
        "saturated: set `synapse:federation.servers` to the real count so the plan resizes, or "
        + _procedure(workload.part)
        + ".",
    )


def _federation_failures(workload: Workload, namespace: str) -> Alert:
    # Synapse's federation client counts every attempt (`..._requests_total`) before sending and every
    # response (`..._responses_total{code}`) on receipt; connection errors and timeouts never reach the
    # second counter. So failures = attempts - 2xx responses. Transactions are PUTs (/send/{txnId}).
    # The `or` keeps the alert alive when *nothing* succeeds, where the 2xx series has no samples.
    sel = _matchers(namespace=namespace, job=scrape_job(workload), method="PUT")
    attempts = f"sum by (namespace, pod) (rate(synapse_http_matrixfederationclient_requests_total{{{sel}}}[10m]))"
    ok_sel = _matchers(namespace=namespace, job=scrape_job(workload), method="PUT", code="~2..")
    successes = f"sum by (namespace, pod) (rate(synapse_http_matrixfederationclient_responses_total{{{ok_sel}}}[10m]))"
    expr = f"({attempts} - ({successes} or 0 * {attempts})) / {attempts} > {FEDERATION_FAILURE_RATIO:g}"
    return Alert(
        name=FEDERATION_FAILURES,
        worker_class=workload.part,
        expr=expr,
        duration="15m",
        severity="warning",
        summary="{{ $labels.pod }} fails {{ $value | humanizePercentage }} of federation sends (target < 1 %)",
        description="Federation sender {{ $labels.pod }} in namespace {{ $labels.namespace }} has failed more than "
        "the guide's 1 % of outbound transactions for 15 minutes. This is rarely capacity: check egress, DNS "
        "and TLS from the pod, and which destinations fail in its log. Only if the send queue is also high "
        "and the pods are CPU-bound, " + _procedure(workload.part) + ".",
    )


REPLICATION_LAG_RECORD = "synapse_stream:replication_lag:seconds"
"""How far each Synapse process trails each writer class's stream, in seconds; recorded once so the
alerts stay readable and operators can graph it."""


def _replication_lag_record(plan: Deployed) -> dict[str, Any]:
    # Synapse exports no lag in seconds. Every process exports
    # `synapse_storage_stream_current_position{stream_name}`: the stream position it has caught up to
    # (synapse/storage/util/id_generators.py), the writers' own and, on every other process, what
    # replication has delivered. The stream's head is the most advanced process; a process `gap` positions
    # behind it, with the stream advancing at `speed` positions/s, is `gap / speed` seconds behind.
    # Processes are scraped at different instants, up to one scrape interval apart, which alone would
    # look like lag far above 1 s; so each sample becomes a clock reading, position / speed - sample
    # timestamp, equal for two processes in step however far apart they were scraped. Lag is the head's
    # clock minus the process's. An idle stream (speed 0) has no lag to measure and yields no series.
    jobs = _jobs(plan.workloads)
    streams = "~" + "|".join(sorted(STREAM_OF_CLASS[w.part] for w in plan.workloads if w.part in STREAM_OF_CLASS))
    position = (
        "synapse_storage_stream_current_position"
        f"{{{_matchers(namespace=plan.settings.namespace, job=jobs, stream_name=streams)}}}"
    )
    speed = f"(max by (namespace, stream_name) (deriv({position}[5m])) > 0)"
    clock = f"({position} / on (namespace, stream_name) group_left () {speed} - timestamp({position}))"
    return {
        "record": REPLICATION_LAG_RECORD,
        "expr": (
            f"max by (namespace, pod, stream_name) (max by (namespace, stream_name) ({clock}) "
            f"- on (namespace, stream_name) group_right () {clock})"
        ),
    }


def _replication_lag(workload: Workload, namespace: str, stream: str) -> Alert:
    return Alert(
        name=REPLICATION_LAG,
        worker_class=workload.part,
        expr=f"{REPLICATION_LAG_RECORD}{{{_matchers(namespace=namespace, stream_name=stream)}}} "
        f"> {REPLICATION_LAG_SECONDS}",
        duration="5m",
        severity="warning",
        summary="{{ $labels.pod }} is {{ $value | humanizeDuration }} behind on the {{ $labels.stream_name }} "
        f"stream (target < {REPLICATION_LAG_SECONDS} s)",
        description="Pod {{ $labels.pod }} in namespace {{ $labels.namespace }} has trailed the "
        f"{{{{ $labels.stream_name }}}} stream written by {workload.part} by more than the guide's "
        f"{REPLICATION_LAG_SECONDS} s for 5 minutes. If only that pod lags, its own class is overloaded (see its "
        f"CPU); if every reader lags, check Redis and the writer: when {workload.part} is CPU-bound, "
        + _procedure(workload.part)
        + ".",
    )


def _cpu_high(workload: Workload, namespace: str) -> Alert:
    # Usage over requests, summed over the class like the HPA's utilisation; max by pod drops the
    # duplicates a highly available kube-state-metrics (or a double-scraped kubelet) produces.
    pods = f"~{_name_of(workload, 'StatefulSet')}-[0-9]+"
    usage_sel = _matchers(namespace=namespace, container=CONTAINER, pod=pods)
    request_sel = _matchers(namespace=namespace, container=CONTAINER, pod=pods, resource="cpu")
    expr = (
        "sum by (namespace) (max by (namespace, pod) "
        f"(rate(container_cpu_usage_seconds_total{{{usage_sel}}}[5m]))) "
        "/ sum by (namespace) (max by (namespace, pod) "
        f"(kube_pod_container_resource_requests{{{request_sel}}})) > {CPU_OF_REQUESTS:g}"
    )
    return Alert(
        name=CPU_HIGH,
        worker_class=workload.part,
        expr=expr,
        duration="5m",
        severity="warning",
        summary=f"{workload.part} uses {{{{ $value | humanizePercentage }}}} of its CPU requests "
        f"(scale above {CPU_OF_REQUESTS:.0%})",
        description=f"{workload.part} in namespace {{{{ $labels.namespace }}}} is scaled by hand and has used more "
        f"than {CPU_OF_REQUESTS:.0%} of its CPU requests for 5 minutes (the guide's trigger to scale up): "
        + _procedure(workload.part)
        + ".",
    )


def _hpa_at_max(workload: Workload, namespace: str) -> Alert:
    sel = _matchers(namespace=namespace, horizontalpodautoscaler=_name_of(workload, "HorizontalPodAutoscaler"))
    by = "max by (namespace, horizontalpodautoscaler)"
    expr = (
        f"{by} (kube_horizontalpodautoscaler_status_current_replicas{{{sel}}}) "
        f">= on (namespace, horizontalpodautoscaler) {by} (kube_horizontalpodautoscaler_spec_max_replicas{{{sel}}})"
    )
    return Alert(
        name=HPA_AT_MAX,
        worker_class=workload.part,
        expr=expr,
        duration="15m",
        severity="warning",
        summary=f"The {workload.part} HPA has run at its maximum ({{{{ $value }}}} pods) for 15 minutes",
        description=f"HPA {{{{ $labels.horizontalpodautoscaler }}}} in namespace {{{{ $labels.namespace }}}} cannot "
        "add pods any more. If the load grew, set it (`pulumi config set synapse:ccu N`) so every class is "
        f"resized; otherwise raise the ceiling with `pulumi config set --path synapse:workers.{workload.part}"
        ".maxReplicas N` (or `synapse:hpa.headroom`); then `pulumi up`. Check the nodes can hold the pods.",
    )


def _statefulset_not_ready(workload: Workload, namespace: str) -> Alert:
    sel = _matchers(namespace=namespace, statefulset=_name_of(workload, "StatefulSet"))
    by = "max by (namespace, statefulset)"
    expr = (
        f"{by} (kube_statefulset_status_replicas_ready{{{sel}}}) "
        f"< on (namespace, statefulset) {by} (kube_statefulset_replicas{{{sel}}})"
    )
    return Alert(
        name=STATEFULSET_NOT_READY,
        worker_class=workload.part,
        expr=expr,
        duration="15m",
        # A missing stream writer or event persister stalls every process that writes through it.
        severity="critical",
        summary=f"{workload.part} has {{{{ $value }}}} ready pods, fewer than desired, for 15 minutes",
        description="StatefulSet {{ $labels.statefulset }} in namespace {{ $labels.namespace }} has had "
        "fewer ready pods than replicas for 15 minutes; Synapse routes writes to every listed member, so "
        "work for the missing pod waits. `kubectl describe` the pods (scheduling, probes, config), fix the "
        "cause, and do not change its replicas until every pod is ready.",
    )


def alerts(plan: Deployed) -> tuple[Alert, ...]:
    """Every alert the deployed workloads call for, in plan order, so the rule file reads like the plan."""
    namespace = plan.settings.namespace
    out: list[Alert] = []
    for workload in plan.workloads:
        part = workload.part
        if part == "synchrotron":
            out.append(_sync_latency(workload, namespace))
        if part == "generic-worker":
            out.append(_client_latency(workload, namespace))
        if part == "event-persister":
            out.append(_persister_rate(workload, namespace))
        if part == "federation-sender" and plan.settings.federation.enabled:
            out.extend((_federation_queue(workload, namespace), _federation_failures(workload, namespace)))
        if part in STREAM_OF_CLASS:
            out.append(_replication_lag(workload, namespace, STREAM_OF_CLASS[part]))
        if _of_kind(workload, "HorizontalPodAutoscaler") is not None:
            out.append(_hpa_at_max(workload, namespace))
        if _of_kind(workload, "StatefulSet") is not None:
            out.append(_cpu_high(workload, namespace))
            out.append(_statefulset_not_ready(workload, namespace))
    return tuple(out)


def _metadata(settings: Settings, name: str, component: str) -> dict[str, Any]:
    """The stack's usual labels plus the operator's, which win: they are what Prometheus selects on."""
    merged = {**labels(settings, component), **settings.monitoring.labels}
    return {"name": name, "namespace": settings.namespace, "labels": dict(sorted(merged.items()))}


def service_monitor(settings: Settings, workload: Workload) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": _metadata(settings, scrape_job(workload), workload.part),
        "spec": {
            "selector": {"matchLabels": selector(settings, workload.part)},
            "namespaceSelector": {"matchNames": [settings.namespace]},
            "endpoints": [{"port": METRICS_PORT_NAME, "path": METRICS_PATH}],
        },
    }


def prometheus_rule(plan: Deployed) -> Manifest:
    settings = plan.settings
    return {
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": _metadata(settings, RULE_NAME, "monitoring"),
        "spec": {
            "groups": [
                {
                    "name": f"synapse-{settings.stack}.scaling",
                    # Recording rules first: a group evaluates in order, so the alerts read this cycle's values.
                    "rules": [_replication_lag_record(plan), *(a.rule() for a in alerts(plan))],
                }
            ]
        },
    }


def monitoring_manifests(plan: Deployed) -> tuple[Manifest, ...]:
    """ServiceMonitors for every deployed workload and one PrometheusRule; nothing when monitoring is off,
    since without the Prometheus Operator's CRDs the cluster would refuse these kinds."""
    if not plan.settings.monitoring.enabled:
        return ()
    return (*(service_monitor(plan.settings, w) for w in plan.workloads), prometheus_rule(plan))


# --- what `recommend` measures --------------------------------------------------------------------------
# The same selectors as the alerts (namespace and the ServiceMonitors' `job`), so a figure `recommend`
# reads is the one an alert would have fired on.

MESSAGE_TYPES = ("m.room.message", "m.room.encrypted")
"""Event types that are messages. Synapse counts every persisted event by type in
`synapse_storage_events_persisted_events_sep` (TRACKED_EVENT_TYPES in storage/databases/main/events.py);
the unlabelled total also counts joins, room creations and other state, which the guide's "messages per
second" does not mean."""


def sync_users(workloads: Sequence[Workload], namespace: str) -> str:
    """Users with a live notifier stream on the processes serving `/sync` (see README, `recommend`)."""
    return f"sum(synapse_notifier_users{{{_matchers(namespace=namespace, job=_jobs(workloads))}}})"


def messages_rate(workloads: Sequence[Workload], namespace: str, rate_range: str) -> str:
    """Messages persisted per second over the whole stack (local and remote senders alike)."""
    sel = _matchers(namespace=namespace, job=_jobs(workloads), type="~" + "|".join(MESSAGE_TYPES))
    return f"sum(rate(synapse_storage_events_persisted_events_sep_total{{{sel}}}[{rate_range}]))"


def known_servers(workloads: Sequence[Workload], namespace: str) -> str:
    """Remote servers sharing a room with us, plus ourselves. Only the process that runs background tasks
    registers the gauge, and only with `metrics_flags.known_servers`; every job is asked, so the answer
    does not depend on which process that is."""
    return f"max(synapse_federation_known_servers{{{_matchers(namespace=namespace, job=_jobs(workloads))}}})"


def processes_up(workload: Workload, namespace: str) -> str:
    """How many of the workload's processes Prometheus scraped successfully."""
    return f"sum(up{{{_matchers(namespace=namespace, job=scrape_job(workload))}}})"


def cpu_request_cores(workload: Workload) -> float:
    """The CPU request of one process of the workload, as its pod template asks for it."""
    containers = workload.manifests[0]["spec"]["template"]["spec"]["containers"]
    (container,) = (c for c in containers if c["name"] == CONTAINER)
    return float(quantity(container["resources"]["requests"]["cpu"]))


def cpu_of_requests(workload: Workload, namespace: str, rate_range: str) -> str:
    """CPU used per process over its request (0.7 = the guide's 70 %), from Synapse's own CPU counters,
    which every process exports under the same `job` as its other metrics: this needs neither cAdvisor
    nor kube-state-metrics (the alert's source) and reads the same on a plain host."""
    sel = _matchers(namespace=namespace, job=scrape_job(workload))
    used = (
        f"rate(process_cpu_user_seconds_total{{{sel}}}[{rate_range}]) "
        f"+ rate(process_cpu_system_seconds_total{{{sel}}}[{rate_range}])"
    )
    return f"avg({used}) / {cpu_request_cores(workload):g}"


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


_LATENCY_OF_CLASS: dict[str, tuple[str, dict[str, str], float, str]] = {
    "synchrotron": (SYNC_LATENCY, SYNC_LATENCY_MATCHERS, SYNC_P95_SECONDS, "/sync p95 (initial and full-state)"),
    "generic-worker": (CLIENT_LATENCY, CLIENT_LATENCY_MATCHERS, CLIENT_P95_SECONDS, "client API p95"),
}


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
    latency = _LATENCY_OF_CLASS.get(workload.part)
    if latency is not None:
        alert, extra, limit, what = latency
        expr = latency_p95(workload, namespace, extra, rate_range)
        out.append(Target(alert, what, "synapse_http_server_response_time_seconds_bucket", expr, limit, "seconds"))
    if workload.part == "event-persister":
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


def peak(expr: str, window: str, step: str) -> str:
    """The highest value `expr` took over the last `window`, evaluated every `step` (a subquery)."""
    return f"max_over_time(({expr})[{window}:{step}])"


def static_scrape_configs(
    plan: Deployed, addresses: Mapping[str, Sequence[tuple[str, str]]], interval: str
) -> list[dict[str, Any]]:
    """Prometheus `scrape_configs` for a Prometheus without the Operator: one job per workload, named
    and labelled as the ServiceMonitors' targets are (`job`, `namespace`, `pod`), so every query here
    reads the same. `addresses` maps a workload's part to its (pod, host:port) pairs."""
    return [
        {
            "job_name": scrape_job(workload),
            "metrics_path": METRICS_PATH,
            "scrape_interval": interval,
            "static_configs": [
                {"targets": [address], "labels": {"namespace": plan.settings.namespace, "pod": pod}}
                for pod, address in addresses[workload.part]
            ],
        }
        for workload in plan.workloads
        if workload.part in addresses
    ]
