"""Replica arithmetic: the guide's formulas and tables, the HA floor, Synapse's one-writer rule, pins.

Pure functions over the worker-class table; exact arithmetic with Fraction so that a value the guide
lists lands exactly on it, never one replica off through float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import Literal

from synapse_workers.model.errors import ConfigError
from synapse_workers.model.load_figures import LOAD_FIGURES
from synapse_workers.model.settings import NAMESPACE, Settings
from synapse_workers.model.worker_classes import HA_FLOOR, WORKER_CLASSES, WorkerClass

MESSAGE_RATE_POINTS: tuple[tuple[int, int], ...] = (
    (100, 10),
    (1000, 50),
    (5000, 200),
    (10000, 400),
    (20000, 800),
)
"""The guide's CCU → messages-per-second pairs ("100 CCU (~10 msg/s)", …)."""


def interpolate(points: tuple[tuple[int, int], ...], x: Fraction, below: Literal["extend", "clamp"]) -> Fraction:
    """Straight lines through `points`; past the last point along the last line.

    Below the first point the first line is extended (`extend`) or its first value kept (`clamp`).
    """
    if x <= points[0][0] and below == "clamp":
        return Fraction(points[0][1])
    (x0, y0), (x1, y1) = next(
        ((a, b) for a, b in pairwise(points) if x <= b[0]),
        (points[-2], points[-1]),
    )
    return Fraction(y0) + Fraction(y1 - y0, x1 - x0) * (x - x0)


def estimate_messages_per_second(ccu: int) -> Fraction:
    return interpolate(MESSAGE_RATE_POINTS, Fraction(ccu), below="extend")


@dataclass(frozen=True)
class Load:
    """The load figures a plan is sized from."""

    ccu: int
    messages_per_second: Fraction
    messages_estimated: bool
    federation_enabled: bool
    federated_servers: int

    def figure(self, spec: WorkerClass, scale: Fraction = Fraction(1)) -> Fraction:
        """The load figure `spec` is sized on, scaled (the HPA maximum is sized at ccu × headroom)."""
        (figure,) = (f for f in LOAD_FIGURES if f.key == spec.load)
        return Fraction(getattr(self, figure.attr)) * scale


def load_of(settings: Settings) -> Load:
    given = settings.messages_per_second
    return Load(
        ccu=settings.ccu,
        messages_per_second=(
            Fraction(given).limit_denominator(1000) if given is not None else estimate_messages_per_second(settings.ccu)
        ),
        messages_estimated=given is None,
        federation_enabled=settings.federation.enabled,
        federated_servers=settings.federation.servers or 0,
    )


def formula_replicas(spec: WorkerClass, figure: Fraction) -> int:
    """The guide's formula as written: ceil(load ÷ divisor)."""
    return math.ceil(figure / spec.divisor)


def table_replicas(spec: WorkerClass, figure: Fraction) -> int:
    """The guide's example table: exact at each listed row, straight lines between, rounded up."""
    return math.ceil(interpolate(spec.guide_table, figure, below="clamp"))


@dataclass(frozen=True)
class ClassSize:
    """One class's resolved size, with the figures behind it so the plan can show its work."""

    spec: WorkerClass
    deployed: bool
    replicas: int
    """For an HPA class: the HPA minimum (and the Deployment's initial replicas)."""
    min_replicas: int | None
    max_replicas: int | None
    guide_value: int
    """What the guide's chosen model (formula or table) gives before floors, Synapse rules and pins."""
    formula_value: int
    table_value: int
    notes: tuple[str, ...]
    """What the plan prints under the class, in order."""
    departures: tuple[str, ...] = ()
    """Those of the notes that depart from the guide, which the plan also lists on their own."""


def _not_deployed(spec: WorkerClass, formula: int, notes: tuple[str, ...]) -> ClassSize:
    """A class that runs no pod; the plan still shows what its formula would give, and why."""
    return ClassSize(
        spec=spec,
        deployed=False,
        replicas=0,
        min_replicas=None,
        max_replicas=None,
        guide_value=formula,
        formula_value=formula,
        table_value=0,
        notes=notes,
    )


def _guide(settings: Settings, spec: WorkerClass, figure: Fraction) -> int:
    if settings.sizing == "guide-table":
        return table_replicas(spec, figure)
    return formula_replicas(spec, figure)


def _off_notes(settings: Settings, spec: WorkerClass) -> tuple[str, ...] | None:
    """Why a class beyond the guide is not deployed at this stack's load and pins (None: it is)."""
    pin = settings.pin(spec.name)
    pinned = None if pin is None else pin.replicas
    if pinned == 0:
        return (f"off: {NAMESPACE}:workers.{spec.name}.replicas is 0; the duty stays on main",)
    if pinned is not None:
        return None
    if spec.default_off is not None:
        return (f"off unless pinned: {spec.default_off}",)
    phase = phase_of(settings.ccu).number
    if spec.from_phase is not None and phase is not None and phase < spec.from_phase:
        return (
            f"off below the guide's phase {spec.from_phase} (this load is phase {phase}): main keeps the "
            f"duty; pin {NAMESPACE}:workers.{spec.name}.replicas to deploy it",
        )
    return None


def _size_beyond_guide(settings: Settings, load: Load, spec: WorkerClass) -> ClassSize:
    """A duty taken off main: one instance where Synapse takes one, else the formula above the HA floor."""
    formula = 1 if spec.exactly_one else formula_replicas(spec, load.figure(spec))
    off = _off_notes(settings, spec)
    if off is not None:
        return _not_deployed(spec, formula, off)
    notes: list[str] = []
    replicas = max(formula, 1 if spec.exactly_one else HA_FLOOR)
    if spec.exactly_one:
        notes.append(f"1 replica: {spec.why_one}")
    elif replicas != formula:
        notes.append(f"raised to the HA floor of {HA_FLOOR} (1 per {spec.divisor:,} CCU gives {formula})")
    pin = settings.pin(spec.name)
    if pin is not None and pin.replicas is not None and not spec.exactly_one:
        notes.append(f"pinned to {pin.replicas} (sizing gives {replicas})")
        replicas = pin.replicas
    return ClassSize(
        spec=spec,
        deployed=True,
        replicas=replicas,
        min_replicas=None,
        max_replicas=None,
        guide_value=formula,
        formula_value=formula,
        table_value=0,
        notes=tuple(notes),
    )


def size_class(settings: Settings, load: Load, spec: WorkerClass) -> ClassSize:
    if spec.beyond_guide:
        return _size_beyond_guide(settings, load, spec)
    figure = load.figure(spec)
    formula = formula_replicas(spec, figure)
    table = table_replicas(spec, figure)
    guide = table if settings.sizing == "guide-table" else formula
    if spec.needs_federation and not load.federation_enabled:
        return _not_deployed(spec, 0, ("not deployed: federation is disabled",))

    notes: list[str] = []
    replicas = max(HA_FLOOR, guide)
    if replicas != guide:
        notes.append(f"raised to the HA floor of {HA_FLOOR} (the guide's model gives {guide})")
    departures: list[str] = []
    if spec.exactly_one:
        replicas = 1
        departures.append(
            f"departs from the guide: 1 replica, not {max(HA_FLOOR, guide)}; {spec.why_one} and refuses "
            "to start with more (synapse/config/workers.py)"
        )
        notes.extend(departures)
    pin = settings.pin(spec.name)
    min_replicas: int | None = None
    max_replicas: int | None = None
    if spec.scaling == "hpa":
        ceiling_guide = _guide(settings, spec, load.figure(spec, Fraction(settings.hpa.headroom)))
        min_replicas = replicas
        max_replicas = max(ceiling_guide, min_replicas)
        pinned_min = None if pin is None else (pin.min_replicas or pin.replicas)
        if pinned_min is not None:
            notes.append(f"HPA minimum pinned to {pinned_min} (sizing gives {min_replicas})")
            min_replicas = pinned_min
        if pin is not None and pin.max_replicas is not None:
            notes.append(f"HPA maximum pinned to {pin.max_replicas} (sizing gives {max_replicas})")
            max_replicas = pin.max_replicas
        elif max_replicas < min_replicas:
            max_replicas = min_replicas
        if max_replicas < min_replicas:
            # Checked here, not in settings: the minimum it must reach is what sizing gives at this load.
            raise ConfigError(
                settings.stack,
                f"{NAMESPACE}:workers.{spec.name}.maxReplicas",
                max_replicas,
                f"a whole number of at least {min_replicas} (the HPA minimum at this load)",
                "below the minimum",
            )
        replicas = min_replicas
    elif pin is not None and pin.replicas is not None and not spec.exactly_one:
        notes.append(f"pinned to {pin.replicas} (sizing gives {replicas})")
        replicas = pin.replicas
    return ClassSize(
        spec=spec,
        deployed=True,
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        guide_value=guide,
        formula_value=formula,
        table_value=table,
        notes=tuple(notes),
        departures=tuple(departures),
    )


def size_all(settings: Settings) -> tuple[Load, tuple[ClassSize, ...]]:
    load = load_of(settings)
    return load, tuple(size_class(settings, load, spec) for spec in WORKER_CLASSES)


@dataclass(frozen=True)
class Phase:
    number: int | None
    name: str
    range: str
    monitoring_focus: str


PHASES: tuple[tuple[int, Phase], ...] = (
    (1000, Phase(1, "Small", "100-1,000 CCU", "CPU utilization, /sync latency")),
    (5000, Phase(2, "Medium", "1,000-5,000 CCU", "Database write latency, replication lag")),
    (10000, Phase(3, "Large", "5,000-10,000 CCU", "PostgreSQL connection pool, Redis memory")),
    (20000, Phase(4, "Very Large", "10,000-20,000 CCU", "All metrics, capacity planning for 30K+ CCU")),
)
BEYOND = Phase(
    None,
    "beyond the guide",
    "above 20,000 CCU",
    "All metrics; the guide's figures stop at 20,000 CCU: size from measurements, not only formulas",
)


def phase_of(ccu: int) -> Phase:
    """The guide's phase; a CCU on a boundary belongs to the smaller phase (1,000 is Small)."""
    return next((phase for upper, phase in PHASES if ccu <= upper), BEYOND)
