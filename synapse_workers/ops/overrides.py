"""Load figures given on the command line in place of (or on top of) a stack's values.

Shared by `plan` (what-if) and `scale` (which writes them back), so both validate a change the same
way and name the flag, not only the key, when it is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from synapse_workers.model.errors import ConfigError
from synapse_workers.model.load_figures import LOAD_FIGURES, LoadFigure
from synapse_workers.model.settings import NAMESPACE, load_settings
from synapse_workers.model.worker_classes import FigureKey
from synapse_workers.plan import Plan, build_plan


@dataclass(frozen=True)
class LoadChange:
    """Values as typed on the command line (text); None leaves the stack's value alone."""

    ccu: str | None = None
    messages_per_second: str | None = None
    federated_servers: str | None = None
    pins: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """(class, replicas) pairs from `--pin class=N`."""

    @classmethod
    def of(cls, figures: Mapping[FigureKey, str | None], pins: tuple[tuple[str, str], ...] = ()) -> LoadChange:
        """A change from figures keyed as the plan, the history and `recommend` name them."""
        return cls(
            ccu=figures.get("ccu"),
            messages_per_second=figures.get("messagesPerSecond"),
            federated_servers=figures.get("federatedServers"),
            pins=pins,
        )

    def value(self, figure: LoadFigure) -> str | None:
        text: str | None = getattr(self, figure.attr)
        return text

    def is_empty(self) -> bool:
        return not (any(self.value(f) for f in LOAD_FIGURES) or self.pins)


def _object(values: Mapping[str, str], key: str) -> dict[str, object]:
    raw = values.get(key)
    if raw is None:
        return {}
    loaded = json.loads(raw)
    return loaded if isinstance(loaded, dict) else {}


PIN_FLAG = "--pin"
FLAGS: Mapping[str, str] = {**{f.attr: f.flag for f in LOAD_FIGURES}, "pins": PIN_FLAG}
"""The flag each `LoadChange` field is typed as (`plan`, `scale`, and the command `recommend` proposes)."""
WHATIF_FLAGS: Mapping[str, str] = {f.attr: f.whatif_flag for f in LOAD_FIGURES}
"""`plan`'s what-if flags, which stand in for the same keys."""


def apply(
    values: Mapping[str, str], change: LoadChange, flags: Mapping[str, str] = FLAGS
) -> tuple[dict[str, str], dict[str, str]]:
    """The stack's values with `change` applied, and which config key each flag stands in for."""
    out = dict(values)
    named: dict[str, str] = {}
    for figure in LOAD_FIGURES:
        value = change.value(figure)
        if value is None:
            continue
        top, *inner = figure.path
        if inner:
            (field_name,) = inner
            parent = _object(out, f"{NAMESPACE}:{top}")
            parent[field_name] = value
            out[f"{NAMESPACE}:{top}"] = json.dumps(parent, sort_keys=True)
        else:
            out[f"{NAMESPACE}:{top}"] = value
        named[f"{NAMESPACE}:{figure.config_key}"] = flags[figure.attr]
    if change.pins:
        workers = _object(out, f"{NAMESPACE}:workers")
        for name, replicas in change.pins:
            entry = workers.get(name)
            workers[name] = {**(entry if isinstance(entry, dict) else {}), "replicas": replicas}
            named[f"{NAMESPACE}:workers.{name}.replicas"] = flags["pins"]
        out[f"{NAMESPACE}:workers"] = json.dumps(workers, sort_keys=True)
    return out, named


def plan_with_flags(
    stack: str, values: Mapping[str, str], secret_keys: frozenset[str], named: Mapping[str, str]
) -> Plan:
    """Validate and plan; a refusal caused by a flag names the flag the operator typed."""
    try:
        return build_plan(load_settings(stack, values, secret_keys))
    except ConfigError as error:
        raise name_flag(error, named) from None


def name_flag(error: ConfigError, named: Mapping[str, str]) -> ConfigError:
    """Point an error at the flag the operator typed when a flag supplied the bad value."""
    flag = named.get(error.key)
    if flag is None:
        return error
    return ConfigError(error.stack, f"{flag} (in place of {error.key})", error.value, error.allowed, error.problem)
