"""The scaling guide's targets as Prometheus alerts, and what `plan` tells an operator to watch per class.

Pure data over the plan, like manifests.py, so the same rules reach Pulumi, `render` and the tests (which
run them through promtool). Which alert a class gets follows its row's `signal` and `metrics_stream`
(worker_classes.py); the PromQL comes from `queries.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from synapse_workers.kube.queries import (
    CLIENT_LATENCY_MATCHERS,
    CONTAINER,
    SYNC_LATENCY_MATCHERS,
    jobs,
    latency_p95,
    matchers,
    name_of,
    of_kind,
    persisted_events_rate,
    scrape_job,
)
from synapse_workers.kube.workload import Deployed, Workload
from synapse_workers.model.worker_classes import MainProcess, Process, Signal

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


def _procedure(process: Process) -> str:
    """The guide's scale-up step for a class, in the form this program accepts.

    A single-writer class cannot take more replicas (the settings refuse it, as Synapse would), so the
    only lever there is CPU; main is not a worker class and has its own resources key.
    """
    if isinstance(process, MainProcess):
        return (
            "main runs exactly one replica: give it more CPU with "
            "`pulumi config set --path synapse:main.resources.requests.cpu <cpu>` (and `limits.cpu`) "
            "then `pulumi up`"
        )
    spec, class_name = process, process.name
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


SIGNAL_METRICS: dict[Signal, str] = {
    "sync-latency": 'synapse_http_server_response_time_seconds_bucket{servlet="SyncRestServlet"}',
    "client-latency": "synapse_http_server_response_time_seconds_bucket",
    "persister-rate": "synapse_storage_events_persisted_events_total",
    "federation-queue": "synapse_federation_transaction_queue_pending_pdus",
    "cpu": "container_cpu_usage_seconds_total",
}
SIGNAL_ALERTS: dict[Signal, str] = {
    "sync-latency": SYNC_LATENCY,
    "client-latency": CLIENT_LATENCY,
    "persister-rate": PERSISTER_RATE,
    "federation-queue": FEDERATION_QUEUE,
    "stream-lag": REPLICATION_LAG,
    "cpu": CPU_HIGH,
}


def watch_for(process: Process) -> Watch:
    """The metric and alert that show a class (or main) needs scaling, from its row's signal."""
    signal = process.watch
    if signal == "stream-lag":
        assert not isinstance(process, MainProcess) and process.metrics_stream is not None
        metric = f'synapse_storage_stream_current_position{{stream_name="{process.metrics_stream}"}}'
    else:
        metric = SIGNAL_METRICS[signal]
    return Watch(metric, SIGNAL_ALERTS[signal])


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
        + _procedure(workload.spec)
        + ".",
    )


def _federation_queue(workload: Workload, namespace: str) -> Alert:
    # Both gauges are registered by the same FederationSender, so one exists exactly when the other does.
    sel = matchers(namespace=namespace, job=scrape_job(workload))
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
        + _procedure(workload.spec)
        + ".",
    )


def _federation_failures(workload: Workload, namespace: str) -> Alert:
    # Synapse's federation client counts every attempt (`..._requests_total`) before sending and every
    # response (`..._responses_total{code}`) on receipt; connection errors and timeouts never reach the
    # second counter. So failures = attempts - 2xx responses. Transactions are PUTs (/send/{txnId}).
    # The `or` keeps the alert alive when *nothing* succeeds, where the 2xx series has no samples.
    sel = matchers(namespace=namespace, job=scrape_job(workload), method="PUT")
    attempts = f"sum by (namespace, pod) (rate(synapse_http_matrixfederationclient_requests_total{{{sel}}}[10m]))"
    ok_sel = matchers(namespace=namespace, job=scrape_job(workload), method="PUT", code="~2..")
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
        "and the pods are CPU-bound, " + _procedure(workload.spec) + ".",
    )


REPLICATION_LAG_RECORD = "synapse_stream:replication_lag:seconds"
"""How far each Synapse process trails each writer class's stream, in seconds; recorded once so the
alerts stay readable and operators can graph it."""


def replication_lag_record(plan: Deployed) -> dict[str, Any]:
    # Synapse exports no lag in seconds. Every process exports
    # `synapse_storage_stream_current_position{stream_name}`: the stream position it has caught up to
    # (synapse/storage/util/id_generators.py), the writers' own and, on every other process, what
    # replication has delivered. The stream's head is the most advanced process; a process `gap` positions
    # behind it, with the stream advancing at `speed` positions/s, is `gap / speed` seconds behind.
    # Processes are scraped at different instants, up to one scrape interval apart, which alone would
    # look like lag far above 1 s; so each sample becomes a clock reading, position / speed - sample
    # timestamp, equal for two processes in step however far apart they were scraped. Lag is the head's
    # clock minus the process's. An idle stream (speed 0) has no lag to measure and yields no series.
    every_job = jobs(plan.workloads)
    streams = "~" + "|".join(sorted(_streams(plan)))
    position = (
        "synapse_storage_stream_current_position"
        f"{{{matchers(namespace=plan.settings.namespace, job=every_job, stream_name=streams)}}}"
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
        expr=f"{REPLICATION_LAG_RECORD}{{{matchers(namespace=namespace, stream_name=stream)}}} "
        f"> {REPLICATION_LAG_SECONDS}",
        duration="5m",
        severity="warning",
        summary="{{ $labels.pod }} is {{ $value | humanizeDuration }} behind on the {{ $labels.stream_name }} "
        f"stream (target < {REPLICATION_LAG_SECONDS} s)",
        description="Pod {{ $labels.pod }} in namespace {{ $labels.namespace }} has trailed the "
        f"{{{{ $labels.stream_name }}}} stream written by {workload.part} by more than the guide's "
        f"{REPLICATION_LAG_SECONDS} s for 5 minutes. If only that pod lags, its own class is overloaded (see its "
        f"CPU); if every reader lags, check Redis and the writer: when {workload.part} is CPU-bound, "
        + _procedure(workload.spec)
        + ".",
    )


def _cpu_high(workload: Workload, namespace: str) -> Alert:
    # Usage over requests, summed over the class like the HPA's utilisation; max by pod drops the
    # duplicates a highly available kube-state-metrics (or a double-scraped kubelet) produces.
    pods = f"~{name_of(workload, 'StatefulSet')}-[0-9]+"
    usage_sel = matchers(namespace=namespace, container=CONTAINER, pod=pods)
    request_sel = matchers(namespace=namespace, container=CONTAINER, pod=pods, resource="cpu")
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
        + _procedure(workload.spec)
        + ".",
    )


def _hpa_at_max(workload: Workload, namespace: str) -> Alert:
    sel = matchers(namespace=namespace, horizontalpodautoscaler=name_of(workload, "HorizontalPodAutoscaler"))
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
    sel = matchers(namespace=namespace, statefulset=name_of(workload, "StatefulSet"))
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


def _federation(workload: Workload, namespace: str) -> tuple[Alert, ...]:
    return (_federation_queue(workload, namespace), _federation_failures(workload, namespace))


_SIGNAL_ALERTS: dict[Signal, Callable[[Workload, str], tuple[Alert, ...]]] = {
    "sync-latency": lambda workload, namespace: (_sync_latency(workload, namespace),),
    "client-latency": lambda workload, namespace: (_client_latency(workload, namespace),),
    "persister-rate": lambda workload, namespace: (_persister_rate(workload, namespace),),
    "federation-queue": _federation,
}
"""The alerts of a class's own signal; stream lag and CPU come from its stream and its kind, below."""


def alerts(plan: Deployed) -> tuple[Alert, ...]:
    """Every alert the deployed workloads call for, in plan order, so the rule file reads like the plan."""
    namespace = plan.settings.namespace
    out: list[Alert] = []
    for workload in plan.workloads:
        spec = workload.spec
        signal_alerts = _SIGNAL_ALERTS.get(spec.watch)
        if signal_alerts is not None:
            out.extend(signal_alerts(workload, namespace))
        if spec.metrics_stream is not None:
            out.append(_replication_lag(workload, namespace, spec.metrics_stream))
        if of_kind(workload, "HorizontalPodAutoscaler") is not None:
            out.append(_hpa_at_max(workload, namespace))
        if of_kind(workload, "StatefulSet") is not None:
            out.append(_cpu_high(workload, namespace))
            out.append(_statefulset_not_ready(workload, namespace))
    return tuple(out)


def _streams(plan: Deployed) -> set[str]:
    """The `stream_name`s of the deployed writer classes, for the replication-lag record."""
    return {w.spec.metrics_stream for w in plan.workloads if w.spec.metrics_stream is not None}
