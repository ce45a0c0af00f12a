"""Load figures given on the command line in place of (or on top of) a stack's values.

Shared by `plan` (what-if) and `scale` (which writes them back), so both validate a change the same
way and name the flag, not only the key, when it is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from synapse_workers.model.errors import ConfigError
from synapse_workers.model.settings import NAMESPACE, load_settings
from synapse_workers.plan import Plan, build_plan


@dataclass(frozen=True)
class LoadChange:
    """Values as typed on the command line (text); None leaves the stack's value alone."""

    ccu: str | None = None
    messages_per_second: str | None = None
    federated_servers: str | None = None
    pins: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """(class, replicas) pairs from `--pin class=N`."""

    def is_empty(self) -> bool:
        return not (self.ccu or self.messages_per_second or self.federated_servers or self.pins)


def _object(values: Mapping[str, str], key: str) -> dict[str, object]:
    raw = values.get(key)
    if raw is None:
        return {}
    loaded = json.loads(raw)
    return loaded if isinstance(loaded, dict) else {}


FLAGS: Mapping[str, str] = {
    "ccu": "--ccu",
    "messages_per_second": "--messages-per-second",
    "federated_servers": "--federated-servers",
    "pins": "--pin",
}
"""The flag each `LoadChange` field is typed as (`plan`, `scale`, and the command `recommend` proposes)."""


def apply(
    values: Mapping[str, str], change: LoadChange, flags: Mapping[str, str] = FLAGS
) -> tuple[dict[str, str], dict[str, str]]:
    """The stack's values with `change` applied, and which config key each flag stands in for."""
    out = dict(values)
    named: dict[str, str] = {}
    if change.ccu is not None:
        out[f"{NAMESPACE}:ccu"] = change.ccu
        named[f"{NAMESPACE}:ccu"] = flags["ccu"]
    if change.messages_per_second is not None:
        out[f"{NAMESPACE}:messagesPerSecond"] = change.messages_per_second
        named[f"{NAMESPACE}:messagesPerSecond"] = flags["messages_per_second"]
    if change.federated_servers is not None:
        federation = _object(out, f"{NAMESPACE}:federation")
        federation["servers"] = change.federated_servers
        out[f"{NAMESPACE}:federation"] = json.dumps(federation, sort_keys=True)
        named[f"{NAMESPACE}:federation.servers"] = flags["federated_servers"]
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
