"""A cycle of staging gates, refused before anything runs.

`synapse:stagingGate` makes a stack wait until its gate stack has deployed the same program revision.
Gates that lead back to the stack itself (prod gated on staging, staging gated on prod) can never pass:
each waits for the other. A gate naming its own stack is a settings check; a longer cycle needs the
other stacks' files, so it is followed here, through the project folder's stack files (where `pulumi`
keeps them). A gate whose stack file is not in the folder ends the search: what is not here cannot be
checked, and the guard that reads its state still holds.
"""

from __future__ import annotations

from pathlib import Path

from synapse_workers.model.errors import ConfigError
from synapse_workers.model.settings import NAMESPACE
from synapse_workers.model.stack_config import StackFileError, read_stack_file

GATE_KEY = f"{NAMESPACE}:stagingGate"
MAX_HOPS = 50


def short_name(stack: str) -> str:
    """`org/project/stack` or `stack`: the name its stack file carries."""
    return stack.rsplit("/", 1)[-1]


def refuse_gate_cycle(stack: str, gate: str | None, project_dir: Path) -> None:
    chain = [short_name(stack)]
    current = gate
    while current and len(chain) <= MAX_HOPS:
        name = short_name(current.strip())
        if name in chain:
            cycle = " -> ".join([*chain[chain.index(name) :], name])
            raise ConfigError(
                stack,
                GATE_KEY,
                gate,
                "a stack whose own staging gates do not lead back here",
                f"a cycle of gates, {cycle}: each waits for the other, so no update could ever pass",
            )
        chain.append(name)
        path = project_dir / f"Pulumi.{name}.yaml"
        if not path.is_file():
            return
        try:
            values, _ = read_stack_file(name, path)
        except (StackFileError, ConfigError):
            return  # that stack's file is refused when that stack runs
        current = values.get(GATE_KEY)
