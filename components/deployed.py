"""What a stack has deployed, read from its state through Pulumi's Automation API, for the guards.

`pulumi stack export` and `pulumi stack history` are the public ways to read a stack's state; both run
the Pulumi CLI the program itself runs under. They work from a scratch workspace of the same project
name, so the operator's selected stack is never changed. Tests and `render`, which run without a CLI,
hand the program another `DeployedStates`.
"""

from __future__ import annotations

import tempfile
from typing import Protocol

from synapse_workers.ops.guards import Deployed, GuardError, deployed_from_state


class DeployedStates(Protocol):
    def deployed(self, stack: str, *, with_history: bool) -> Deployed:
        """`stack` in full (`org/project/stack`); raises GuardError when it cannot be read."""
        ...


class AutomationStates:
    """The real reader: the stack's exported state and, when asked, its last update's result."""

    def __init__(self, project: str) -> None:
        self.project = project

    def deployed(self, stack: str, *, with_history: bool) -> Deployed:
        from pulumi import automation  # noqa: PLC0415 (only a real run reads state)

        with tempfile.TemporaryDirectory(prefix="synapse-workers-guard-") as scratch:
            workspace = automation.LocalWorkspace(
                work_dir=scratch,
                project_settings=automation.ProjectSettings(name=self.project, runtime="python"),
            )
            try:
                handle = automation.Stack.select(stack, workspace)
                state = handle.export_stack().deployment or {}
                history = handle.history(page_size=1) if with_history else []
            except automation.CommandError as error:
                text = str(error)
                if "no stack named" in text or "not found" in text:
                    raise GuardError(f"stack '{stack}' does not exist in this backend") from None
                first = next((line for line in text.splitlines() if "error:" in line), text.splitlines()[0])
                raise GuardError(f"cannot read stack '{stack}': {first.strip()}") from None
        return deployed_from_state(state, history[0].result if history else None)


class FixedStates:
    """Answers from a table, by the stack name's last part, for `render` and the tests: a stack not in it
    exists with `default` deployed (nothing, unless given), or not at all when named in `absent`."""

    def __init__(
        self, states: dict[str, Deployed], absent: frozenset[str] = frozenset(), default: Deployed | None = None
    ) -> None:
        self.states = states
        self.absent = absent
        self.default = default or Deployed()
        self.asked: list[str] = []

    def deployed(self, stack: str, *, with_history: bool) -> Deployed:
        self.asked.append(stack)
        short = stack.rsplit("/", 1)[-1]
        if short in self.absent:
            raise GuardError(f"stack '{stack}' does not exist in this backend")
        return self.states.get(short, self.default)
