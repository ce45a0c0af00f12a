"""`promote`: staging first, then prod, through Pulumi's Automation API, stopping at the first failure.

Each stack is previewed, updated, and its outputs checked (it must report this checkout's program
revision and a replica table) before the next one starts. The Automation API drives the real Pulumi
CLI; `select` is a parameter so the sequencing can be tested where no CLI exists.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

from synapse_workers.ops.revision import program_revision

DEFAULT_ORDER = ("staging", "prod")
PROJECT_NAME = "synapse-workers"


class StackLike(Protocol):
    """The part of `pulumi.automation.Stack` that promote uses."""

    def preview(self, *, on_output: Callable[[str], Any] | None = ...) -> Any: ...

    def up(self, *, on_output: Callable[[str], Any] | None = ...) -> Any: ...

    def outputs(self) -> Mapping[str, Any]: ...


class PromoteError(Exception):
    """A stage failed; the message names the stack and the step."""


def automation_select(name: str, program: Callable[[], None], work_dir: Path) -> StackLike:
    """The stack in the project folder `work_dir`, running `program` inline: the program runs in this
    process, so promote needs the Pulumi CLI and the Kubernetes provider but no Python language host."""
    from pulumi import automation  # noqa: PLC0415 (only promote needs the Automation API)

    stack = automation.select_stack(
        stack_name=name,
        project_name=PROJECT_NAME,
        program=program,
        opts=automation.LocalWorkspaceOptions(work_dir=str(work_dir)),
    )
    return cast(StackLike, stack)


@dataclass(frozen=True)
class Step:
    stack: str
    action: str


def _check_outputs(name: str, outputs: Mapping[str, Any], revision: str) -> None:
    deployed = outputs.get("revision")
    value = getattr(deployed, "value", None)
    if value != revision:
        raise PromoteError(f"{name}: after update the stack reports revision {value!r}, expected {revision}")
    if "replicas" not in outputs:
        raise PromoteError(f"{name}: after update the stack exports no replica table")


def promote(
    order: Sequence[str] = DEFAULT_ORDER,
    select: Callable[[str], StackLike] | None = None,
    say: Callable[[str], Any] = print,
    revision: str | None = None,
) -> list[Step]:
    """Run preview, up and the output check per stack in order; raise PromoteError at the first failure."""
    expected = revision or program_revision()
    if select is None:
        raise ValueError("promote needs a way to select stacks: automation_select with the program")
    done: list[Step] = []
    for name in order:
        for action in ("select", "preview", "up", "check"):
            say(f"== {name}: {action}")
            try:
                if action == "select":
                    stack = select(name)
                elif action == "preview":
                    stack.preview(on_output=say)
                elif action == "up":
                    stack.up(on_output=say)
                else:
                    _check_outputs(name, stack.outputs(), expected)
            except PromoteError:
                raise
            except Exception as error:  # the Automation API raises CommandError and friends
                first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise PromoteError(f"{name}: {action} failed: {first_line}") from error
            done.append(Step(name, action))
    return done
