"""A saved `recommend --json` is checked before `scale` applies it: its proposal must follow from its
own measurements by the step rule and the pin rule.

The file is an operator's artefact that travels (a ticket, a review, an edit by hand): a figure typed
over, a pin added, or a measurement changed without its proposal would otherwise be applied and
recorded in the history as "measured". The proposal is recomputed from the file's measurements with
the same code `recommend` runs. The file keeps peaks rounded (CCU and servers to a whole number, rates
and targets to three decimals), so each figure is recomputed at both ends of its rounding interval and
the saved proposal must lie between the two (the rules are monotone in every peak).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from synapse_workers.kube.targets import targets
from synapse_workers.model.errors import ConfigError
from synapse_workers.ops.prometheus import parse_duration
from synapse_workers.ops.recommend.measure import ClassReading, Measured, Reading, Window
from synapse_workers.ops.recommend.proposal import Recommendation, recommend
from synapse_workers.plan import Plan

HALF_UNIT = {"ccu": 0.5, "messagesPerSecond": 0.0005, "federatedServers": 0.5}
"""Half the last digit each figure is saved with: the true peak lay within this of the saved one."""
TARGET_HALF_UNIT = 0.0005


class _ShapeError(Exception):
    pass


def _number(value: Any, where: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise _ShapeError(f"{where} is {json.dumps(value)}, not a figure")
    return float(value)


def _rebuild(document: Mapping[str, Any], plan: Plan, nudge: int) -> Measured:
    """The file's measurements as `recommend` measured them, every peak moved by `nudge` half-units."""
    measured = document.get("measured")
    if not isinstance(measured, dict):
        raise _ShapeError("measured is not an object")
    window_text = measured.get("window")
    seconds = parse_duration(window_text) if isinstance(window_text, str) else None
    rate_text = measured.get("rateRange")
    rate = parse_duration(rate_text) if isinstance(rate_text, str) else None
    scrape = _number(measured.get("scrapeIntervalSeconds"), "measured.scrapeIntervalSeconds")
    if seconds is None or rate is None or not isinstance(window_text, str) or scrape is None:
        raise _ShapeError("measured.window, rateRange or scrapeIntervalSeconds is not a duration")
    window = Window(window_text, seconds, scrape, rate)

    def figure(name: str, required: bool) -> float | None:
        value = _number(measured.get(name), f"measured.{name}", allow_none=not required)
        return None if value is None else max(0.0, value + nudge * HALF_UNIT[name])

    ccu, messages = figure("ccu", True), figure("messagesPerSecond", True)
    servers = figure("federatedServers", plan.settings.federation.enabled)
    assert ccu is not None and messages is not None
    classes_doc = measured.get("classes")
    if not isinstance(classes_doc, dict):
        raise _ShapeError("measured.classes is not an object")
    classes = []
    for workload in plan.workloads:
        entry = classes_doc.get(workload.part)
        if not isinstance(entry, dict) or not isinstance(entry.get("targets"), dict):
            raise _ShapeError(f"measured.classes has no targets for {workload.part}")
        processes = entry.get("processes")
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 0:
            raise _ShapeError(f"measured.classes.{workload.part}.processes is not a count")
        readings = []
        for target in targets(workload, plan.settings.namespace, window.rate_range):
            saved = entry["targets"].get(target.alert)
            where = f"measured.classes.{workload.part}.targets.{target.alert}"
            if not isinstance(saved, dict) or saved.get("limit") != target.limit or saved.get("unit") != target.unit:
                raise _ShapeError(f"{where} is not this program's target (limit {target.limit:g} {target.unit})")
            peak = _number(saved.get("peak"), f"{where}.peak", allow_none=True)
            if peak is not None:
                peak = max(0.0, peak + nudge * TARGET_HALF_UNIT)
            readings.append(Reading(target, peak))
        classes.append(ClassReading(workload.part, processes, tuple(readings)))
    at = _number(measured.get("at"), "measured.at") or 0.0
    return Measured(window, at, ccu, messages, servers, tuple(classes), {})


def _saved_proposal(document: Mapping[str, Any]) -> tuple[dict[str, Fraction], dict[str, int]]:
    recommended = document.get("recommended")
    if not isinstance(recommended, dict):
        raise _ShapeError("recommended is not an object")
    changes, pins = recommended.get("changes", {}), recommended.get("pins") or {}
    if not isinstance(changes, dict) or not isinstance(pins, dict):
        raise _ShapeError("recommended.changes or recommended.pins is not an object")
    figures: dict[str, Fraction] = {}
    for name, change in changes.items():
        if not isinstance(change, dict) or change.get("change") not in ("up", "down", "none"):
            raise _ShapeError(f"recommended.changes.{name} is not a change")
        if change["change"] != "none":
            figures[name] = Fraction(str(_number(change.get("to"), f"recommended.changes.{name}.to")))
    for name, count in pins.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise _ShapeError(f"recommended.pins.{name} is not a replica count")
    return figures, dict(pins)


def _proposed(rec: Recommendation) -> tuple[dict[str, Fraction], dict[str, int]]:
    figures: dict[str, Fraction] = {p.figure: p.value for p in rec.proposals if p.change != "none"}
    return figures, {name: int(n) for name, n in rec.change.pins}


def _refusal(stack: str, path: str, problem: str) -> ConfigError:
    return ConfigError(
        stack,
        "--from-recommendation",
        path,
        "the unedited output of `synapse-workers recommend --json` for this stack",
        problem,
    )


def check_shape(stack: str, path: str, text: str) -> None:
    """Refuse, before anything reads it, a saved recommendation whose proposal is not shaped as
    `recommend --json` writes it (a file that is not one at all is left to the reader's own refusal)."""
    try:
        document = json.loads(text)
    except ValueError:
        return
    if not isinstance(document, dict) or not {"measured", "stack", "recommended", "command"} <= set(document):
        return
    try:
        if not isinstance(document["stack"], dict) or not isinstance(document["measured"], dict):
            raise _ShapeError("stack or measured is not an object")
        _saved_proposal(document)
    except _ShapeError as error:
        raise _refusal(stack, path, f"wrong shape: {error}") from None


def verify_saved(
    stack: str, path: str, text: str, plan: Plan, values: Mapping[str, str], secret_keys: frozenset[str]
) -> None:
    """Refuse a saved recommendation whose proposal does not follow from its own measurements."""

    def refuse(problem: str) -> ConfigError:
        return _refusal(stack, path, problem)

    try:
        document = json.loads(text)
        if not isinstance(document, dict):
            raise _ShapeError("not a JSON object")
        saved_figures, saved_pins = _saved_proposal(document)
        low, high = (recommend(stack, plan, values, secret_keys, _rebuild(document, plan, nudge)) for nudge in (-1, 1))
    except (_ShapeError, ValueError) as error:
        raise refuse(f"wrong shape: {error}") from None
    (low_figures, low_pins), (high_figures, high_pins) = _proposed(low), _proposed(high)
    current: dict[str, Fraction] = {p.figure: p.current for p in low.proposals}
    for name in sorted(set(saved_figures) | set(low_figures) | set(high_figures)):
        if name not in current:
            raise refuse(f"it changes {name}, a figure this stack does not size by")
        at_low, at_high = low_figures.get(name, current[name]), high_figures.get(name, current[name])
        saved = saved_figures.get(name, current[name])
        if not min(at_low, at_high) <= saved <= max(at_low, at_high):
            shown = "no change" if name not in saved_figures else f"{float(saved):g}"
            follows = f"{float(at_low):g}" if at_low == at_high else f"{float(at_low):g} to {float(at_high):g}"
            raise refuse(f"its {name} {shown} does not follow from its measurements by the step rule ({follows})")
    for name in sorted(set(saved_pins) | set(low_pins) | set(high_pins)):
        lowest, highest = low_pins.get(name), high_pins.get(name)
        pin = saved_pins.get(name)
        allowed = {n for n in (lowest, highest) if n is not None}
        if pin is None and lowest is None:
            continue  # the rounding interval straddles the pin threshold: no pin is as right as the pin
        if pin is None or not allowed or not min(allowed) <= pin <= max(allowed):
            raise refuse(
                f"its pin {name}={pin if pin is not None else 'none'} does not follow from its measured targets "
                f"({'no pin' if not allowed else ' to '.join(str(n) for n in sorted(allowed))})"
            )
