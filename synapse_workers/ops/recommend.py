"""`recommend`: the stack's load figures measured from Prometheus, and the `scale` that would follow.

The guide's best practices in order: monitor before scaling (the figures come from Synapse's own
metrics, not from a typed-in guess), act on consistent load (the peak of averages over a window, not an
instant value), record why (the proposed `scale` carries a reason quoting the measurements, and
`scale --from-recommendation` writes them into the history), and track the impact (the targets recorded
with the last such change, beside today's). Pure logic over a `Prometheus`-like object, so the tests can
answer with recorded responses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal, Protocol

from synapse_workers.kube import monitoring
from synapse_workers.kube.rollout import MAIN
from synapse_workers.kube.workload import Workload
from synapse_workers.model.errors import ConfigError
from synapse_workers.model.worker_classes import WORKER_CLASSES
from synapse_workers.ops.overrides import LoadChange, apply, plan_with_flags
from synapse_workers.ops.prometheus import Sample, parse_duration
from synapse_workers.ops.whatif import WhatIf, compare, whatif_json
from synapse_workers.plan import Plan
from synapse_workers.synapse.routing import route_request

Figure = Literal["ccu", "messagesPerSecond", "federatedServers"]
FIGURES: tuple[Figure, ...] = ("ccu", "messagesPerSecond", "federatedServers")
FLAG_OF: dict[Figure, str] = {
    "ccu": "--ccu",
    "messagesPerSecond": "--messages-per-second",
    "federatedServers": "--federated-servers",
}
MIN_STEP: dict[Figure, int] = {"ccu": 10, "messagesPerSecond": 1, "federatedServers": 1}
"""The smallest step per figure: below these, a change moves no replica count of any class."""
STEP_RULE = (
    "step = the largest of 1, 2 or 5 x a power of ten that is at most a tenth of the stack's figure "
    "(at least 10 CCU, 1 msg/s, 1 server); recommended = the window's peak rounded up to a step; "
    "up when that is at least one step above the stack's figure, down when at least two steps below, "
    "otherwise no change (a load hovering at a boundary never flips the stack back and forth)"
)
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

    target: monitoring.Target
    peak: float | None

    @property
    def broken(self) -> bool:
        return self.peak is not None and self.peak > self.target.limit


@dataclass(frozen=True)
class ClassReading:
    part: str
    processes: int
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
    jobs = {monitoring.scrape_job(w): w for w in plan.workloads}
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
    found = [s for s in prometheus.query(expr) if not math.isnan(s.value)]
    if not found:
        raise _no_data(stack, prometheus.url, metric, jobs, plan.settings.namespace, w.text, hint)
    return found[0].value, found[0].timestamp


def _peak_or_none(prometheus: PrometheusLike, expr: str) -> float | None:
    found = [s.value for s in prometheus.query(expr) if not math.isnan(s.value)]
    return max(found) if found else None


def sync_workloads(plan: Plan) -> tuple[Workload, ...]:
    """The workloads serving `/sync`, by the routing table (main when no class takes it)."""
    target = route_request(plan, "GET", SYNC_PATH)
    return tuple(w for w in plan.workloads if w.part == target)


def event_writers(plan: Plan) -> tuple[Workload, ...]:
    """The workloads writing the `events` stream (main when no class does)."""
    writers = {c.name for c in WORKER_CLASSES if c.stream == "events"}
    found = tuple(w for w in plan.workloads if w.part in writers)
    return found or tuple(w for w in plan.workloads if w.part == MAIN)


def measure(stack: str, plan: Plan, prometheus: PrometheusLike, window_text: str) -> Measured:
    """Every figure and target over the window, each as its peak."""
    window = read_window(stack, window_text, scrape_interval(stack, plan, prometheus))
    namespace = plan.settings.namespace
    queries: dict[str, str] = {}

    def peak(expr: str) -> str:
        return monitoring.peak(expr, window.range, window.step)

    syncers = sync_workloads(plan)
    queries["ccu"] = peak(monitoring.sync_users(syncers, namespace))
    ccu, at = _value(
        stack, prometheus, queries["ccu"], "synapse_notifier_users",
        [monitoring.scrape_job(w) for w in syncers], plan, window, "the processes serving /sync",
    )  # fmt: skip
    writers = event_writers(plan)
    queries["messagesPerSecond"] = peak(monitoring.messages_rate(writers, namespace, window.rate_range))
    messages, _ = _value(
        stack, prometheus, queries["messagesPerSecond"], "synapse_storage_events_persisted_events_sep_total",
        [monitoring.scrape_job(w) for w in writers], plan, window,
        "the `events` stream writers; the counter appears with the first message a process persists",
    )  # fmt: skip
    servers: float | None = None
    if plan.settings.federation.enabled:
        queries["federatedServers"] = peak(monitoring.known_servers(plan.workloads, namespace))
        known, _ = _value(
            stack, prometheus, queries["federatedServers"], "synapse_federation_known_servers",
            [monitoring.scrape_job(w) for w in plan.workloads], plan, window,
            "metrics_flags.known_servers, which this program turns on with federation: run `pulumi up` once",
        )  # fmt: skip
        servers = max(known - 1, 0)
    classes = []
    for workload in plan.workloads:
        up = _peak_or_none(prometheus, monitoring.processes_up(workload, namespace))
        readings = tuple(
            Reading(t, _peak_or_none(prometheus, peak(t.expr)))
            for t in monitoring.targets(workload, namespace, window.rate_range)
        )
        classes.append(ClassReading(workload.part, int(up or 0), readings))
    return Measured(window, at, ccu, messages, servers, tuple(classes), queries)


# --- from figures to a proposal --------------------------------------------------------------------------


def _next_step(step: int) -> int:
    """1 → 2 → 5 → 10 → 20 → …"""
    mantissa = step // 10 ** (len(str(step)) - 1)
    return step * 5 // 2 if mantissa == 2 else step * 2


def step_for(figure: Figure, current: Fraction) -> int:
    step = MIN_STEP[figure]
    while _next_step(step) <= current / 10:
        step = _next_step(step)
    return step


@dataclass(frozen=True)
class Proposal:
    figure: Figure
    current: Fraction
    peak: float
    step: int
    value: Fraction
    change: Literal["up", "down", "none"]


def propose(figure: Figure, current: Fraction, peak: float) -> Proposal:
    """The step rule (STEP_RULE) applied to one figure."""
    step = step_for(figure, current)
    rounded = Fraction(max(1, math.ceil(Fraction(peak) / step)) * step)
    if rounded >= current + step:
        return Proposal(figure, current, peak, step, rounded, "up")
    if rounded <= current - 2 * step:
        return Proposal(figure, current, peak, step, rounded, "down")
    return Proposal(figure, current, peak, step, current, "none")


@dataclass(frozen=True)
class Flag:
    """A workload breaking one of the guide's targets, and what to do about it."""

    part: str
    reading: Reading
    replicas_before: int | None
    replicas_after: int | None
    pin: int | None
    advice: str


@dataclass(frozen=True)
class Recommendation:
    stack: str
    old: Plan
    measured: Measured
    proposals: tuple[Proposal, ...]
    flags: tuple[Flag, ...]
    change: LoadChange
    result: WhatIf | None
    reason: str
    last_change: dict[str, Any] | None = field(default=None)

    @property
    def command(self) -> list[str]:
        if self.change.is_empty():
            return []
        argv = ["synapse-workers", "scale", "--stack", self.stack]
        for proposal in self.proposals:
            if proposal.change != "none":
                argv += [FLAG_OF[proposal.figure], _text(proposal.value)]
        for name, replicas in self.change.pins:
            argv += ["--pin", f"{name}={replicas}"]
        return [*argv, "--reason", self.reason]


def _text(value: Fraction) -> str:
    return str(int(value)) if value.denominator == 1 else f"{float(value):g}"


def _number(value: float | Fraction | None, digits: int = 3) -> float | int | None:
    if value is None:
        return None
    rounded = round(float(value), digits)
    return int(rounded) if rounded == int(rounded) else rounded


def _show(reading: Reading) -> str:
    target = reading.target
    if reading.peak is None:
        return f"{target.what}: no requests in the window"
    if target.unit == "ratio":
        return f"{target.what} {reading.peak:.0%} (target <= {target.limit:.0%})"
    if target.unit == "seconds":
        return f"{target.what} {reading.peak * 1000:.0f} ms (target < {target.limit * 1000:g} ms)"
    return f"{target.what} {reading.peak:.1f} {target.unit} (target < {target.limit:g})"


def _sizes(plan: Plan) -> dict[str, int]:
    return {s.spec.name: s.replicas for s in plan.sizes if s.deployed}


def _flags(old: Plan, new: Plan, measured: Measured) -> tuple[Flag, ...]:
    """Every broken target, never dropped: either the proposed figures already add replicas to that
    class, or its sizing formula is wrong for this deployment and a pin is suggested (or, where Synapse
    allows one writer only, or for main, more CPU)."""
    before, after = _sizes(old), _sizes(new)
    out: list[Flag] = []
    for reading_set in measured.classes:
        part = reading_set.part
        for reading in reading_set.readings:
            if not reading.broken:
                continue
            assert reading.peak is not None
            spec = next((c for c in WORKER_CLASSES if c.name == part), None)
            if spec is None or spec.exactly_one:
                why = "main runs one replica" if spec is None else spec.why_one
                key = "main" if spec is None else f"workers.{part}"
                advice = (
                    f"one process only ({why}): give it more CPU with "
                    f"`pulumi config set --path synapse:{key}.resources.requests.cpu <cpu>` (and limits.cpu)"
                )
                out.append(Flag(part, reading, before.get(part), after.get(part), None, advice))
                continue
            old_n, new_n = before[part], after[part]
            if new_n > old_n:
                advice = f"the recommended figures already raise {part} from {old_n} to {new_n} replicas"
                out.append(Flag(part, reading, old_n, new_n, None, advice))
                continue
            running = max(reading_set.processes, old_n)
            # Rounded first: 2 x 1.05 / 0.7 is 3 exactly, not the 3.0000000000000004 floats make of it.
            pin = max(old_n + 1, math.ceil(round(running * reading.peak / reading.target.limit, 6)))
            advice = (
                f"its sizing says {new_n} is enough, yet it breaks the guide's target: the formula is wrong "
                f"for this deployment; pin it (`--pin {part}={pin}`, {running} running x "
                f"{reading.peak / reading.target.limit:.2f} of the target, at least one more)"
            )
            out.append(Flag(part, reading, old_n, new_n, pin, advice))
    return tuple(out)


def _reason(measured: Measured, proposals: Sequence[Proposal], flags: Sequence[Flag]) -> str:
    figures = [f"{_number(measured.ccu, 0)} users syncing", f"{measured.messages_per_second:.1f} msg/s persisted"]
    if measured.federated_servers is not None:
        figures.append(f"{_number(measured.federated_servers, 0)} federated servers")
    changed = [f"{p.figure} {_text(p.current)} -> {_text(p.value)}" for p in proposals if p.change != "none"]
    text = f"recommend: peak over {measured.window.text}: {', '.join(figures)}"
    if changed:
        text += f"; {', '.join(changed)}"
    pinned = [f"{f.part} {_show(f.reading)}" for f in flags if f.pin is not None]
    if pinned:
        text += f"; pins for targets broken: {'; '.join(pinned)}"
    return text


def stack_figures(plan: Plan) -> dict[Figure, Fraction]:
    load = plan.load
    figures: dict[Figure, Fraction] = {"ccu": Fraction(load.ccu), "messagesPerSecond": load.messages_per_second}
    if load.federation_enabled:
        figures["federatedServers"] = Fraction(load.federated_servers)
    return figures


def recommend(
    stack: str,
    plan: Plan,
    values: Mapping[str, str],
    secret_keys: frozenset[str],
    measured: Measured,
    history: Sequence[Mapping[str, Any]] = (),
) -> Recommendation:
    peaks: dict[Figure, float | None] = {
        "ccu": measured.ccu,
        "messagesPerSecond": measured.messages_per_second,
        "federatedServers": measured.federated_servers,
    }
    proposals = tuple(
        propose(figure, current, peak)
        for figure, current in stack_figures(plan).items()
        if (peak := peaks[figure]) is not None
    )
    by_figure = {p.figure: _text(p.value) for p in proposals if p.change != "none"}
    figures_only = LoadChange(
        ccu=by_figure.get("ccu"),
        messages_per_second=by_figure.get("messagesPerSecond"),
        federated_servers=by_figure.get("federatedServers"),
    )
    flags_named = {"ccu": "--ccu", "messages_per_second": "--messages-per-second"}
    flags_named |= {"federated_servers": "--federated-servers", "pins": "--pin"}
    sized = _plan_for(stack, plan, values, secret_keys, figures_only, flags_named)
    flags = _flags(plan, sized, measured)
    pins = tuple((f.part, str(f.pin)) for f in flags if f.pin is not None)
    change = LoadChange(
        ccu=figures_only.ccu,
        messages_per_second=figures_only.messages_per_second,
        federated_servers=figures_only.federated_servers,
        pins=tuple(sorted(dict(pins).items())),
    )
    new = _plan_for(stack, plan, values, secret_keys, change, flags_named)
    result = None if change.is_empty() else compare(plan, new)
    return Recommendation(
        stack=stack,
        old=plan,
        measured=measured,
        proposals=proposals,
        flags=flags,
        change=change,
        result=result,
        reason=_reason(measured, proposals, flags),
        last_change=last_change(stack, history, measured),
    )


def _plan_for(
    stack: str,
    plan: Plan,
    values: Mapping[str, str],
    secret_keys: frozenset[str],
    change: LoadChange,
    flags: Mapping[str, str],
) -> Plan:
    if change.is_empty():
        return plan
    new_values, named = apply(values, change, flags)
    return plan_with_flags(stack, new_values, secret_keys, named)


# --- the record and the before/after ---------------------------------------------------------------------


def targets_record(measured: Measured) -> dict[str, dict[str, float | int | None]]:
    """Per workload, each target's peak by its alert name: what the history keeps for the before/after."""
    return {
        c.part: {r.target.alert: _number(r.peak) for r in c.readings}
        for c in sorted(measured.classes, key=lambda c: c.part)
    }


def measured_record(measured: Measured) -> dict[str, Any]:
    """What `scale --from-recommendation` writes into the history beside the replicas."""
    record: dict[str, Any] = {
        "window": measured.window.text,
        "ccu": _number(measured.ccu, 0),
        "messagesPerSecond": _number(measured.messages_per_second, 2),
        "targets": targets_record(measured),
    }
    if measured.federated_servers is not None:
        record["federatedServers"] = _number(measured.federated_servers, 0)
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


# --- JSON ------------------------------------------------------------------------------------------------


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    measured, load = rec.measured, rec.old.load
    stack: dict[str, Any] = {
        "name": rec.stack,
        "ccu": load.ccu,
        "messagesPerSecond": _number(load.messages_per_second, 2),
        "messagesPerSecondEstimated": load.messages_estimated,
        "federationEnabled": load.federation_enabled,
        "replicas": _sizes(rec.old),
    }
    if load.federation_enabled:
        stack["federatedServers"] = load.federated_servers
    document: dict[str, Any] = {
        "stack": stack,
        "measured": {
            **measured_record(measured),
            "messagesPerSecond": _number(measured.messages_per_second, 3),
            "at": _number(measured.at),
            "scrapeIntervalSeconds": _number(measured.window.scrape_seconds),
            "rateRange": measured.window.rate_range,
            "classes": {
                c.part: {
                    "processes": c.processes,
                    "targets": {
                        r.target.alert: {
                            "what": r.target.what,
                            "peak": _number(r.peak),
                            "limit": r.target.limit,
                            "unit": r.target.unit,
                            "broken": r.broken,
                        }
                        for r in c.readings
                    },
                }
                for c in measured.classes
            },
            "queries": dict(sorted(measured.queries.items())),
        },
        "recommended": {
            **{p.figure: _number(p.value, 2) for p in rec.proposals},
            "changes": {
                p.figure: {"from": _number(p.current, 2), "to": _number(p.value, 2), "step": p.step, "change": p.change}
                for p in rec.proposals
            },
            "pins": {name: int(replicas) for name, replicas in rec.change.pins},
            "flags": [
                {
                    "class": f.part,
                    "target": f.reading.target.alert,
                    "peak": _number(f.reading.peak),
                    "limit": f.reading.target.limit,
                    "replicas": {"before": f.replicas_before, "after": f.replicas_after},
                    "pin": f.pin,
                    "advice": f.advice,
                }
                for f in rec.flags
            ],
            "reason": rec.reason,
            "rule": STEP_RULE,
        },
        "whatIf": whatif_json(rec.result) if rec.result is not None else None,
        "command": rec.command,
    }
    if rec.last_change is not None:
        document["lastChange"] = rec.last_change
    return document


# --- reading a saved recommendation back -----------------------------------------------------------------

RECORDED_KEYS = ("window", "at", "ccu", "messagesPerSecond", "federatedServers", "targets")
"""What of the measurements reaches the history: the figures and the targets' peaks, not the queries."""


@dataclass(frozen=True)
class Saved:
    change: LoadChange
    reason: str
    measured: dict[str, Any]


def read_saved(stack: str, path: str, text: str, plan: Plan) -> Saved:
    """A saved `recommend --json` as a `scale` change; refused when it is for another stack, when the
    stack's figures moved since it was measured (it would undo that change), or when it changes nothing."""

    def refuse(problem: str, allowed: str = "the output of `synapse-workers recommend --json` for this stack") -> None:
        raise ConfigError(stack, "--from-recommendation", path, allowed, problem)

    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict) or not {"measured", "stack", "recommended", "command"} <= set(document):
        refuse("not a saved recommendation")
    assert isinstance(document, dict)
    saved_stack = document["stack"]
    if not isinstance(saved_stack, dict) or saved_stack.get("name") != stack:
        refuse(
            f"it was made for stack {json.dumps(saved_stack.get('name') if isinstance(saved_stack, dict) else None)}"
        )
    now = {figure: _number(value, 2) for figure, value in stack_figures(plan).items()}
    then = {figure: saved_stack.get(figure) for figure in now}
    if now != then:
        moved = ", ".join(f"{k} {then[k]} then, {now[k]} now" for k in now if now[k] != then[k])
        refuse(f"the stack's figures changed since it was measured ({moved})", "a fresh `recommend --json`")
    recommended = document["recommended"]
    changes = recommended.get("changes", {}) if isinstance(recommended, dict) else {}
    to = {k: str(v["to"]) for k, v in changes.items() if isinstance(v, dict) and v.get("change") in ("up", "down")}
    pins = tuple(sorted((str(k), str(v)) for k, v in (recommended.get("pins") or {}).items()))
    change = LoadChange(
        ccu=to.get("ccu"),
        messages_per_second=to.get("messagesPerSecond"),
        federated_servers=to.get("federatedServers"),
        pins=pins,
    )
    if change.is_empty():
        refuse("it recommends no change", "a recommendation that changes a figure or pins a class")
    reason = str(recommended.get("reason") or "").strip()
    if not reason:
        refuse("it carries no reason")
    measured = document["measured"]
    kept = {k: measured[k] for k in RECORDED_KEYS if isinstance(measured, dict) and k in measured}
    return Saved(change, reason, kept)
