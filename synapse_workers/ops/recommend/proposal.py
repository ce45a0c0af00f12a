"""`recommend`, the deciding half: the step rule, the proposed figures and pins, the reason.

A change smaller than a step is "no change", so a load hovering at a boundary never flips the stack
back and forth; a broken target is never dropped: either the new figures already add replicas to its
class, or its formula is wrong for this deployment and a pin is proposed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal

from synapse_workers.kube.budget import check_budget
from synapse_workers.model.errors import ConfigError
from synapse_workers.model.load_figures import BY_KEY, LOAD_FIGURES, in_use
from synapse_workers.model.settings import load_settings
from synapse_workers.model.worker_classes import FigureKey, MainProcess
from synapse_workers.ops.overrides import LoadChange, apply, name_flag
from synapse_workers.ops.recommend.measure import Measured, Reading, last_change, rounded
from synapse_workers.ops.whatif import WhatIf, compare
from synapse_workers.plan import Plan, build_plan

Figure = FigureKey
STEP_RULE = (
    "step = the largest of 1, 2 or 5 x a power of ten that is at most a tenth of the stack's figure "
    "(at least 10 CCU, 1 msg/s, 1 server); recommended = the window's peak rounded up to a step; "
    "up when that is at least one step above the stack's figure, down when at least two steps below, "
    "otherwise no change (a load hovering at a boundary never flips the stack back and forth)"
)


def _next_step(step: int) -> int:
    """1 → 2 → 5 → 10 → 20 → …"""
    mantissa = step // 10 ** (len(str(step)) - 1)
    return step * 5 // 2 if mantissa == 2 else step * 2


def step_for(figure: Figure, current: Fraction) -> int:
    step = BY_KEY[figure].min_step  # below it, a change moves no replica count of any class
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
    refusal: str | None = field(default=None)
    """Why the proposal does not fit the stack's budget (it is still shown whole, then refused)."""

    @property
    def command(self) -> list[str]:
        if self.change.is_empty():
            return []
        argv = ["synapse-workers", "scale", "--stack", self.stack]
        for proposal in self.proposals:
            if proposal.change != "none":
                argv += [BY_KEY[proposal.figure].flag, figure_text(proposal.value)]
        for name, replicas in self.change.pins:
            argv += ["--pin", f"{name}={replicas}"]
        return [*argv, "--reason", self.reason]


def figure_text(value: Fraction) -> str:
    return str(int(value)) if value.denominator == 1 else f"{float(value):g}"


def _show(reading: Reading) -> str:
    target = reading.target
    if reading.peak is None:
        return f"{target.what}: no requests in the window"
    if target.unit == "ratio":
        return f"{target.what} {reading.peak:.0%} (target <= {target.limit:.0%})"
    if target.unit == "seconds":
        return f"{target.what} {reading.peak * 1000:.0f} ms (target < {target.limit * 1000:g} ms)"
    return f"{target.what} {reading.peak:.1f} {target.unit} (target < {target.limit:g})"


def replica_counts(plan: Plan) -> dict[str, int]:
    return {s.spec.name: s.replicas for s in plan.sizes if s.deployed}


def _flags(old: Plan, new: Plan, measured: Measured) -> tuple[Flag, ...]:
    """Every broken target, never dropped: either the proposed figures already add replicas to that
    class, or its sizing formula is wrong for this deployment and a pin is suggested (or, where Synapse
    allows one writer only, or for main, more CPU)."""
    before, after = replica_counts(old), replica_counts(new)
    out: list[Flag] = []
    for reading_set in measured.classes:
        part = reading_set.part
        for reading in reading_set.readings:
            if not reading.broken:
                continue
            assert reading.peak is not None
            process = old.workload(part).spec
            if isinstance(process, MainProcess) or process.exactly_one:
                why = "main runs one replica" if isinstance(process, MainProcess) else process.why_one
                advice = (
                    f"one process only ({why}): give it more CPU with "
                    f"`pulumi config set --path {old.settings.key_of(process)}.resources.requests.cpu <cpu>` "
                    "(and limits.cpu)"
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
    figures = [f"{rounded(measured.ccu, 0)} users syncing", f"{measured.messages_per_second:.1f} msg/s persisted"]
    if measured.federated_servers is not None:
        figures.append(f"{rounded(measured.federated_servers, 0)} federated servers")
    changed = [
        f"{p.figure} {figure_text(p.current)} -> {figure_text(p.value)}" for p in proposals if p.change != "none"
    ]
    text = f"recommend: peak over {measured.window.text}: {', '.join(figures)}"
    if changed:
        text += f"; {', '.join(changed)}"
    pinned = [f"{f.part} {_show(f.reading)}" for f in flags if f.pin is not None]
    if pinned:
        text += f"; pins for targets broken: {'; '.join(pinned)}"
    return text


def stack_figures(plan: Plan) -> dict[Figure, Fraction]:
    load = plan.load
    return {f.key: Fraction(getattr(load, f.attr)) for f in in_use(load.federation_enabled)}


def recommend(
    stack: str,
    plan: Plan,
    values: Mapping[str, str],
    secret_keys: frozenset[str],
    measured: Measured,
    history: Sequence[Mapping[str, Any]] = (),
) -> Recommendation:
    peaks: dict[Figure, float | None] = {f.key: getattr(measured, f.attr) for f in LOAD_FIGURES}
    proposals = tuple(
        propose(figure, current, peak)
        for figure, current in stack_figures(plan).items()
        if (peak := peaks[figure]) is not None
    )
    by_figure = {p.figure: figure_text(p.value) for p in proposals if p.change != "none"}
    figures_only = LoadChange.of(by_figure)
    sized = _plan_for(stack, plan, values, secret_keys, figures_only)
    flags = _flags(plan, sized, measured)
    pins = tuple((f.part, str(f.pin)) for f in flags if f.pin is not None)
    change = replace(figures_only, pins=tuple(sorted(dict(pins).items())))
    new = _plan_for(stack, plan, values, secret_keys, change)
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
        refusal=_refusal(new),
    )


def _refusal(plan: Plan) -> str | None:
    try:
        check_budget(plan.settings, plan.budget)
    except ConfigError as error:
        return str(error)
    return None


def _plan_for(
    stack: str,
    plan: Plan,
    values: Mapping[str, str],
    secret_keys: frozenset[str],
    change: LoadChange,
) -> Plan:
    if change.is_empty():
        return plan
    new_values, named = apply(values, change)
    try:
        # Unchecked: a proposal over the budget is shown whole with the refusal, not in its place.
        return build_plan(load_settings(stack, new_values, secret_keys), enforce_budget=False)
    except ConfigError as error:
        raise name_flag(error, named) from None
