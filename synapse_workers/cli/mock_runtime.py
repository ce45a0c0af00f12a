"""Run the real Pulumi program under Pulumi's mock runtime and keep what it registered.

This is how `render` and the tests see exactly what `pulumi up` would send: the same `__main__.py`,
the same components, with the engine replaced by a recorder. Inputs come back as the engine would see
them, so two of protobuf's habits are undone here: numbers arrive as floats (`replicas: 4` → 4.0) and
secrets arrive wrapped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime.stack import run_pulumi_func

from components.deployed import DeployedStates, FixedStates
from components.program import run
from synapse_workers.model.worker_classes import MAIN
from synapse_workers.ops.guards import Deployed
from synapse_workers.ops.revision import program_revision

PROJECT = "synapse-workers"
SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
REDACTED = "<redacted>"


@dataclass(frozen=True)
class Registered:
    """One resource registration: its type token, logical name and inputs (camelCase wire form)."""

    type: str
    name: str
    inputs: dict[str, Any]
    secret_paths: tuple[str, ...]
    """Dotted paths of inputs that arrived as Pulumi secrets (values already redacted)."""

    @property
    def is_kubernetes(self) -> bool:
        return self.type.startswith("kubernetes:")


def restore(value: Any, path: str, secrets: list[str]) -> Any:
    """Undo the wire form: integral floats back to int, secret wrappers to a redaction marker."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG_KEY) == SECRET_SIG:
            secrets.append(path)
            inner = value.get("value")
            # Keep a secret map's keys (which file holds which secret) and drop only the values.
            return {k: REDACTED for k in sorted(inner)} if isinstance(inner, dict) else REDACTED
        return {k: restore(v, f"{path}.{k}" if path else k, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [restore(v, f"{path}[{i}]", secrets) for i, v in enumerate(value)]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.registered: list[Registered] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        secrets: list[str] = []
        inputs = restore(dict(args.inputs), "", secrets)
        self.registered.append(Registered(args.typ, args.name, inputs, tuple(secrets)))
        outputs = dict(args.inputs)
        metadata = outputs.get("metadata")
        if isinstance(metadata, dict) and not metadata.get("name"):
            # The mock engine does not auto-name; invent what the provider would.
            outputs["metadata"] = {**metadata, "name": f"{args.name}-mock"}
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def gates_pass(stack: str) -> FixedStates:
    """The guards' view for a review: `stack` has deployed nothing yet (so no restart needs a window),
    and every other stack (the staging gate) has deployed this revision and succeeded."""
    staged = Deployed(revisions={MAIN.name: program_revision()}, last_result="succeeded")
    return FixedStates({stack: Deployed()}, default=staged)


def run_program(
    stack: str,
    values: Mapping[str, str],
    secret_keys: Set[str] = frozenset(),
    program: Callable[[], None] | None = None,
    preview: bool = False,
    mocks: RecordingMocks | None = None,
    states: DeployedStates | None = None,
) -> list[Registered]:
    """Run `program` (by default the project's, the `run` its `__main__.py` calls) under mocks with this
    config, the guards reading `states` (by default `gates_pass`).

    Pass `mocks` to keep what was registered even when the program fails.
    """
    mocks = mocks or RecordingMocks()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview)
        pulumi.runtime.set_all_config(dict(values), sorted(secret_keys))
        guard_states = states or gates_pass(stack)
        loop.run_until_complete(run_pulumi_func(program or (lambda: run(guard_states))))
    finally:
        loop.close()
        asyncio.set_event_loop(None)
    return mocks.registered
