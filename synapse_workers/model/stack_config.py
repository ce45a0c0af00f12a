"""Stack config in the form the Pulumi CLI hands it to a program: `namespace:key` → text.

Two sources give that form: the Pulumi runtime (under `pulumi up`, or under mocks), and a stack file
read without the CLI (for `plan` and `render`). Reading a file follows what the CLI does (stack_yaml.py:
its YAML rules, scalars as text the way it prints them, objects and lists as its JSON), and `secure:`
values, which only the CLI can decrypt, become opaque placeholders marked secret, never used as values.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from synapse_workers.model.errors import ConfigError, names_secret
from synapse_workers.model.stack_yaml import StackYamlError, cli_text, load

PROJECT_DIR = Path(__file__).resolve().parents[2]
"""The checkout this package was loaded from: only the program's own revision digest reads it. The
commands find the project as `pulumi` does (`find_project`), so an installed copy works anywhere."""

PROJECT_FILES = ("Pulumi.yaml", "Pulumi.yml")


def find_project(start: Path) -> Path | None:
    """The nearest folder from `start` upward holding a `Pulumi.yaml`, as the Pulumi CLI looks for it."""
    for folder in (start, *start.parents):
        if any((folder / name).is_file() for name in PROJECT_FILES):
            return folder
    return None


SECRET_PLACEHOLDER = "[secret: decrypted only by the Pulumi CLI]"


@dataclass(frozen=True)
class StackFileError(Exception):
    stack: str
    path: Path
    problem: str

    def __str__(self) -> str:
        return f"stack '{self.stack}': {self.path}: {self.problem}"


def _has_secure(value: Any) -> bool:
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return True
        return any(_has_secure(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secure(v) for v in value)
    return False


MAX_STACK_FILE = 4 << 20
"""Bytes: stack files are a few kilobytes; anything this large is not one."""


def read_stack_text(stack: str, path: Path) -> str:
    """The stack file's text, refused in one line when it is missing, not a regular file (a FIFO would
    block, a device never end), too large, or not UTF-8."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise StackFileError(stack, path, "no such stack file (create it with `pulumi stack init`)") from None
    except OSError as error:
        raise StackFileError(stack, path, f"cannot read it: {error.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise StackFileError(stack, path, "not a regular file")
    if info.st_size > MAX_STACK_FILE:
        raise StackFileError(stack, path, f"{info.st_size:,} bytes, over the {MAX_STACK_FILE:,} a stack file may have")
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_STACK_FILE + 1)  # bounded: the file may have grown since the stat
    except OSError as error:
        raise StackFileError(stack, path, f"cannot read it: {error.strerror}") from None
    if len(data) > MAX_STACK_FILE:
        raise StackFileError(stack, path, f"grew while read, over the {MAX_STACK_FILE:,} a stack file may have")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise StackFileError(stack, path, f"not UTF-8 (byte {error.start})") from None


def read_stack_file(stack: str, path: Path) -> tuple[dict[str, str], frozenset[str]]:
    """Config values and the set of secret keys, as the CLI would pass them for this stack."""
    text = read_stack_text(stack, path)
    try:
        document = load(text)
    except StackYamlError as error:
        raise StackFileError(stack, path, str(error)) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise StackFileError(stack, path, f"not valid YAML{where}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise StackFileError(stack, path, "expected a mapping with a `config:` key")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise StackFileError(stack, path, "`config:` must be a mapping of namespace:key to value")
    values: dict[str, str] = {}
    secret_keys: set[str] = set()
    for raw_key, value in config.items():
        key = cli_text(raw_key)
        if _has_secure(value):
            values[key] = SECRET_PLACEHOLDER
            secret_keys.add(key)
        else:
            values[key] = cli_text(value)
    refuse_plain_secrets(stack, values, frozenset(secret_keys))
    return values, frozenset(secret_keys)


def _secret_field(value: Any, path: str) -> str | None:
    """The first field (dotted path) of a plain object whose name names a secret and that has a value."""
    if isinstance(value, dict):
        for key, inner in value.items():
            here = f"{path}.{key}"
            if names_secret(str(key)) and inner not in (None, "", {}, []):
                return here
            found = _secret_field(inner, here)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, inner in enumerate(value):
            found = _secret_field(inner, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def refuse_plain_secrets(stack: str, values: Mapping[str, str], secret_keys: AbstractSet[str]) -> None:
    """A key that names a secret, in any namespace or letter case, set in plain text is refused without
    its value: whatever the key is for, a secret written there is already exposed in the stack file.
    """
    for key in sorted(values):
        if key in secret_keys:
            continue
        found: str | None = key if names_secret(key) else None
        if found is None and values[key][:1] in ("{", "["):
            try:
                found = _secret_field(json.loads(values[key]), key)
            except ValueError:
                found = None
        if found is not None:
            raise ConfigError(
                stack,
                found,
                "(plain text, not shown)",
                f"a secret: pulumi config set --secret {'--path ' if found != key else ''}'{found}' <value> "
                "(and rotate it: it was stored in the clear)",
                "given in plain text",
            )


def runtime_config() -> tuple[dict[str, str], frozenset[str]]:
    """All config the Pulumi runtime holds for this run, with the keys it marks secret."""
    from pulumi.runtime import config as runtime  # noqa: PLC0415 (plan and render never need it)

    values: dict[str, Any] = {**runtime.get_config_env(), **runtime.CONFIG.get()}
    secret_keys = set(runtime.get_config_secret_keys_env()) | {k for k in values if runtime.is_config_secret(k)}
    return {k: cli_text(v) if not isinstance(v, str) else v for k, v in values.items()}, frozenset(secret_keys)
