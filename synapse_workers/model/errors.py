"""The one error type operators see: it names the stack, the key, the bad value and what is allowed.

It also keeps secrets out of every message: a key that names a secret (in any namespace or letter
case) never has its value shown, nor does any field of an object whose name names one.
"""

from __future__ import annotations

import json
import re
from typing import Any

UNSET = object()

NOT_SHOWN = "(not shown: the key names a secret)"
SECRET_WORDS = ("secret", "password", "passwd", "token", "signingkey", "privatekey", "apikey", "credential")
NOT_SECRET_NAMES = frozenset({"existingsecret", "tlssecret", "secretname"})
"""Keys that name a Kubernetes Secret object, not a secret value: their values are names, safe to show."""


def names_secret(key: str) -> bool:
    """Whether a config key (`ns:key`, `ns:key.field`, or a field name) names a secret value."""
    last = re.split(r"[:.]", key)[-1]
    word = re.sub(r"[^a-z0-9]", "", last.lower())
    if word in NOT_SECRET_NAMES or word.endswith(("file", "path")):  # a name or where a secret is kept
        return False
    return any(w in word for w in SECRET_WORDS)


def _hidden(value: Any) -> Any:
    """`value` with every field whose name names a secret replaced, at any depth."""
    if isinstance(value, dict):
        return {k: NOT_SHOWN if names_secret(str(k)) else _hidden(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hidden(v) for v in value]
    return value


def show_value(value: Any) -> str:
    """Quote a bad value the way it was written, so the operator can find it in the stack file."""
    if value is UNSET:
        return "(unset)"
    value = _hidden(value)
    if isinstance(value, str):
        return json.dumps(value)
    try:
        return json.dumps(value, sort_keys=True)
    except TypeError:
        return repr(value)


class ConfigError(Exception):
    """Bad stack config or command-line input, found before anything is registered or written."""

    def __init__(self, stack: str, key: str, value: Any, allowed: str, problem: str = "") -> None:
        self.stack = stack
        self.key = key
        placeholder = isinstance(value, str) and value.startswith("(") and value.endswith("not shown)")
        if names_secret(key) and value is not UNSET and not placeholder:
            value = NOT_SHOWN
        self.value = value
        self.allowed = allowed
        self.problem = problem
        detail = f" ({problem})" if problem else ""
        # A key can be anything a file holds, a line break included: quoted then, so the message stays one line.
        named = key if key.isprintable() else json.dumps(key)
        shown = f"{named} is missing" if value is UNSET else f"{named} = {show_value(value)} is not allowed"
        what = shown + detail
        super().__init__(f"stack '{stack}': {what}; allowed: {allowed}")
