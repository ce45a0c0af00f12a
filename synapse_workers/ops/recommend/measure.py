"""`recommend`, the measuring half: the stack's load and the guide's targets, as peaks over a window.

Act on consistent load, not an instant (the guide's best practice 2): every figure is the peak of
averages over the window. Also what the history keeps of a measurement, and the before/after of the
targets since the last recorded change (best practice 5). Pure logic over a `Prometheus`-like object, so
the tests can answer with recorded responses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from synapse_workers.kube import queries as promql
from synapse_workers.kube.targets import Target, targets
from synapse_workers.kube.workload import Workload
from synapse_workers.model.errors import ConfigError
from synapse_workers.model.worker_classes import MAIN, WORKER_CLASSES
from synapse_workers.ops.prometheus import Sample, ShapeError, parse_duration
from synapse_workers.plan import Plan
from synapse_workers.synapse.routing import route_request

SAMPLES_PER_RATE = 4
"""A rate is averaged over at least four scrape intervals, Prometheus' own advice for `rate()`."""
LONGEST_RATE_SECONDS = 300
"""The guide's best practice 2: act on load sustained for five minutes; no average runs longer."""
SYNC_PATH = "/_matrix/client/v3/sync"


class PrometheusLike(Protocol):
    url: str

    def query(self, expr: str) -> list[Sample]: ...

    def targets(self) -> list[dict[str, Any]]: ...


def _seconds(value: float) -> str:
    return f"{math.ceil(value)}s"


@dataclass(frozen=True)
class Window:
    """How the window is read: peak of `rate_range` averages, evaluated every scrape interval."""

    text: str
    seconds: float
    scrape_seconds: float
    rate_seconds: float

    @property
    def rate_range(self) -> str:
        return _seconds(self.rate_seconds)

    @property
    def step(self) -> str:
        return _seconds(self.scrape_seconds)

    @property
    def range(self) -> str:
        return _seconds(self.seconds)


def read_window(stack: str, text: str, scrape_seconds: float) -> Window:
    """Refuse a window too short to hold a rate; each rate averages a third of the window, at least four
    scrape intervals and at most the guide's five minutes."""
    seconds = parse_duration(text)
    if seconds is None or seconds <= 0:
        raise ConfigError(stack, "--window", text, "a Prometheus duration such as 15m, 1h or 90s", "not a duration")
    shortest = SAMPLES_PER_RATE * scrape_seconds
    if seconds < shortest:
        raise ConfigError(
            stack,
            "--window",
            text,
            f"at least {SAMPLES_PER_RATE} scrape intervals ({_seconds(shortest)} at this Prometheus' "
            f"{_seconds(scrape_seconds)}): a rate needs several samples",
            "shorter than the scrape interval allows",
        )
    rate = min(max(seconds / 3, shortest), LONGEST_RATE_SECONDS, seconds)
    return Window(text, seconds, scrape_seconds, rate)


@dataclass(frozen=True)
class Reading:
    """One target's peak over the window; None when the window held no request of that kind."""

    target: Target
    peak: float | None

    @property
    def broken(self) -> bool:
        return self.peak is not None and self.peak > self.target.limit


@dataclass(frozen=True)
class ClassReading:
    part: str
    processes: int
    """The most processes of the class Prometheus scraped at one moment of the window."""
    readings: tuple[Reading, ...]


@dataclass(frozen=True)
class Measured:
    window: Window
    at: float
    """The evaluation time Prometheus reported (Unix seconds)."""
    ccu: float
    messages_per_second: float
    federated_servers: float | None
    """Remote servers (the gauge counts ourselves too); None with federation off."""
    classes: tuple[ClassReading, ...]
    queries: dict[str, str]


def _no_data(
    stack: str, url: str, metric: str, jobs: Sequence[str], namespace: str, window: str, hint: str
) -> ConfigError:
    which = ", ".join(sorted(jobs))
    return ConfigError(
        stack,
        "--prometheus",
        url,
        f"a Prometheus that scrapes this stack's Synapse processes ({hint})",
        f"no data for metric {metric} from scrape job {which} in namespace {namespace} over the last {window}",
    )


def scrape_interval(stack: str, plan: Plan, prometheus: PrometheusLike) -> float:
    """The longest scrape interval among this stack's Synapse targets; every workload must be scraped."""
    namespace = plan.settings.namespace
    jobs = {promql.scrape_job(w): w for w in plan.workloads}
    intervals: dict[str, list[float]] = {job: [] for job in jobs}
    for target in prometheus.targets():
        labels = target.get("labels") or {}
        if labels.get("namespace") == namespace and labels.get("job") in intervals:
            seconds = parse_duration(str(target.get("scrapeInterval", "")))
            intervals[labels["job"]].append(seconds if seconds is not None else 60.0)
    if not any(intervals.values()):
        raise ConfigError(
            stack,
            "--prometheus",
            prometheus.url,
            "a deployed stack whose Synapse processes this Prometheus scrapes (synapse:monitoring.enabled "
            "with the Prometheus Operator, or scrape jobs named after the Services)",
            f"no scrape target of this stack in namespace {namespace} (jobs {', '.join(sorted(jobs))}): "
            "nothing is deployed, or nothing scrapes it",
        )
    missing = sorted(job for job, found in intervals.items() if not found)
    if missing:
        raise _no_data(stack, prometheus.url, "up", missing, namespace, "scrape", "every deployed workload's Service")
    return max(s for found in intervals.values() for s in found)


def _samples(
    stack: str, prometheus: PrometheusLike, expr: str, metric: str, jobs: Sequence[str], no_requests_is_nan: bool
) -> list[Sample]:
    """A query's samples, each a figure the metric can have: never negative or infinite, and NaN only
    where it means "no requests in the window" (a latency quantile); anything else is refused, naming
    the metric and the scrape job, rather than becoming a proposal."""

    def refuse(problem: str) -> ConfigError:
        return ConfigError(
            stack,
            "--prometheus",
            prometheus.url,
            "a Prometheus answering the API's documented shape with possible figures",
            f"{problem} for metric {metric} from scrape job {', '.join(sorted(jobs))}",
        )

    try:
        found = prometheus.query(expr)
    except ShapeError as error:
        raise refuse(error.problem) from None
    values = []
    for sample in found:
        if math.isnan(sample.value):
            if no_requests_is_nan:
                continue
            raise refuse("an impossible figure NaN")
        if math.isinf(sample.value) or sample.value < 0:
            raise refuse(f"an impossible figure {sample.value:g}")
        values.append(sample)
    return values


def _value(
    stack: str,
    prometheus: PrometheusLike,
    expr: str,
    metric: str,
    jobs: Sequence[str],
    plan: Plan,
    w: Window,
    hint: str,
) -> tuple[float, float]:
    """The single value of a load query and its timestamp; refused when Prometheus has nothing."""
    found = _samples(stack, prometheus, expr, metric, jobs, no_requests_is_nan=False)
    if not found:
        raise _no_data(stack, prometheus.url, metric, jobs, plan.settings.namespace, w.text, hint)
    return found[0].value, found[0].timestamp


def _peak_or_none(
    stack: str, prometheus: PrometheusLike, expr: str, metric: str, job: str, no_requests_is_nan: bool
) -> float | None:
    found = [s.value for s in _samples(stack, prometheus, expr, metric, [job], no_requests_is_nan)]
    return max(found) if found else None


def sync_workloads(plan: Plan) -> tuple[Workload, ...]:
    """The workloads serving `/sync`, by the routing table (main when no class takes it)."""
    target = route_request(plan, "GET", SYNC_PATH)
    return tuple(w for w in plan.workloads if w.part == target)


def event_writers(plan: Plan) -> tuple[Workload, ...]:
    """The workloads writing the `events` stream (main when no class does)."""
    writers = {c.name for c in WORKER_CLASSES if c.stream == "events"}
    found = tuple(w for w in plan.workloads if w.part in writers)
    return found or tuple(w for w in plan.workloads if w.part == MAIN.name)


def measure(stack: str, plan: Plan, prometheus: PrometheusLike, window_text: str) -> Measured:
    """Every figure and target over the window, each as its peak."""
    read_window(stack, window_text, 0)  # a malformed window is refused before any request
    window = read_window(stack, window_text, scrape_interval(stack, plan, prometheus))
    namespace = plan.settings.namespace
    queries: dict[str, str] = {}

    def peak(expr: str) -> str:
        return promql.peak(expr, window.range, window.step)

    syncers = sync_workloads(plan)
    queries["ccu"] = peak(promql.sync_users(syncers, namespace))
    ccu, at = _value(
        stack, prometheus, queries["ccu"], "synapse_notifier_users",
        [promql.scrape_job(w) for w in syncers], plan, window, "the processes serving /sync",
    )  # fmt: skip
    writers = event_writers(plan)
    queries["messagesPerSecond"] = peak(promql.messages_rate(writers, namespace, window.rate_range))
    messages, _ = _value(
        stack, prometheus, queries["messagesPerSecond"], "synapse_storage_events_persisted_events_sep_total",
        [promql.scrape_job(w) for w in writers], plan, window,
        "the `events` stream writers; the counter appears with the first message a process persists",
    )  # fmt: skip
    servers: float | None = None
    if plan.settings.federation.enabled:
        queries["federatedServers"] = peak(promql.known_servers(plan.workloads, namespace))
        known, _ = _value(
            stack, prometheus, queries["federatedServers"], "synapse_federation_known_servers",
            [promql.scrape_job(w) for w in plan.workloads], plan, window,
            "metrics_flags.known_servers, which this program turns on with federation: run `pulumi up` once",
        )  # fmt: skip
        servers = max(known - 1, 0)
    classes = []
    for workload in plan.workloads:
        job = promql.scrape_job(workload)
        # The most processes scraped at once over the window, not at its end: a process too busy to answer
        # one scrape in time (a synchrotron under the very load being measured) still served the window.
        up = _peak_or_none(stack, prometheus, peak(promql.processes_up(workload, namespace)), "up", job, False)
        readings = tuple(
            # A latency quantile over a window with no requests is NaN: shown as "no requests", not refused.
            Reading(t, _peak_or_none(stack, prometheus, peak(t.expr), t.metric, job, t.unit == "seconds"))
            for t in targets(workload, namespace, window.rate_range)
        )
        classes.append(ClassReading(workload.part, int(up or 0), readings))
    return Measured(window, at, ccu, messages, servers, tuple(classes), queries)


def rounded(value: float | Fraction | None, digits: int = 3) -> float | int | None:
    """A figure as JSON and the history show it: whole numbers without a trailing `.0`."""
    if value is None:
        return None
    short = round(float(value), digits)
    return int(short) if short == int(short) else short


def targets_record(measured: Measured) -> dict[str, dict[str, float | int | None]]:
    """Per workload, each target's peak by its alert name: what the history keeps for the before/after."""
    return {
        c.part: {r.target.alert: rounded(r.peak) for r in c.readings}
        for c in sorted(measured.classes, key=lambda c: c.part)
    }


def measured_record(measured: Measured) -> dict[str, Any]:
    """What `scale --from-recommendation` writes into the history beside the replicas."""
    record: dict[str, Any] = {
        "window": measured.window.text,
        "ccu": rounded(measured.ccu, 0),
        "messagesPerSecond": rounded(measured.messages_per_second, 2),
        "targets": targets_record(measured),
    }
    if measured.federated_servers is not None:
        record["federatedServers"] = rounded(measured.federated_servers, 0)
    return record


def last_change(stack: str, history: Sequence[Mapping[str, Any]], measured: Measured) -> dict[str, Any] | None:
    """The targets recorded with the stack's last measured change beside today's (best practice 5)."""
    entry = next(
        (e for e in reversed(history) if e.get("stack") == stack and isinstance(e.get("measured"), dict)), None
    )
    if entry is None:
        return None
    before = entry["measured"].get("targets") or {}
    now = targets_record(measured)
    limits = {c.part: {r.target.alert: r.target.limit for r in c.readings} for c in measured.classes}
    targets = {
        part: {
            alert: {"before": before.get(part, {}).get(alert), "after": value, "limit": limits[part][alert]}
            for alert, value in sorted(values.items())
        }
        for part, values in sorted(now.items())
    }
    return {
        "date": entry.get("date"),
        "reason": entry.get("reason"),
        "replicas": entry.get("replicas", {}),
        "targets": targets,
    }
