"""The one error type operators see: it names the stack, the key, the bad value and what is allowed."""

from __future__ import annotations

import json
from typing import Any

UNSET = object()


def show_value(value: Any) -> str:
    """Quote a bad value the way it was written, so the operator can find it in the stack file."""
    if value is UNSET:
        return "(unset)"
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
        self.value = value
        self.allowed = allowed
        self.problem = problem
        detail = f" ({problem})" if problem else ""
        shown = f"{key} is missing" if value is UNSET else f"{key} = {show_value(value)} is not allowed"
        what = shown + detail
        super().__init__(f"stack '{stack}': {what}; allowed: {allowed}")
