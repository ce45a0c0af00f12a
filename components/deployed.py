"""What a stack has deployed, read from its state through Pulumi's Automation API, for the guards.

`pulumi stack export` and `pulumi stack history` are the public ways to read a stack's state; both run
the Pulumi CLI the program itself runs under. They work from a scratch workspace of the same project
name, so the operator's selected stack is never changed. Tests and `render`, which run without a CLI,
hand the program another `DeployedStates`.

The scratch workspace must reach the backend the update itself runs against, however it was named: a
login and `PULUMI_BACKEND_URL` reach the CLI through the environment it inherits, but `backend.url` in the
project's `Pulumi.yaml` lives only in that file, so the scratch project carries it over (without it, the
CLI falls back to Pulumi Cloud and asks for a token). A workspace's own `env_vars` in an inline run never
reach this process: name the backend in one of those three ways.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from synapse_workers.model.stack_config import PROJECT_FILES
from synapse_workers.model.stack_yaml import StackYamlError, load
from synapse_workers.ops.guards import Deployed, GuardError, deployed_from_state

if TYPE_CHECKING:
    from pulumi.automation import PulumiCommand


class DeployedStates(Protocol):
    def deployed(self, stack: str, *, with_history: bool) -> Deployed:
        """`stack` in full (`org/project/stack`); raises GuardError when it cannot be read."""
        ...


MAX_PROJECT_FILE = 1 << 20


def project_backend(root: Path) -> str | None:
    """`backend.url` of the project file in `root`, if any. A relative `file://` folder is made absolute
    against the project folder, the one place it can mean from a scratch workspace."""
    for name in PROJECT_FILES:
        path = root / name
        if not path.is_file():
            continue
        if path.stat().st_size > MAX_PROJECT_FILE:
            raise GuardError(f"{path} is over {MAX_PROJECT_FILE} bytes: not a project file")
        try:
            document: Any = load(path.read_text(encoding="utf-8"))  # as the CLI reads it (stack_yaml.py)
        except (yaml.YAMLError, StackYamlError, UnicodeDecodeError) as error:
            raise GuardError(f"cannot read {path}: {type(error).__name__}") from None
        backend = document.get("backend") if isinstance(document, dict) else None
        url = backend.get("url") if isinstance(backend, dict) else None
        if not isinstance(url, str) or not url:
            return None
        if url.startswith("file://"):
            folder, mark, query = url.removeprefix("file://").partition("?")
            if folder and not folder.startswith(("/", "~")):
                return f"file://{(root / folder).resolve()}{mark}{query}"
        return url
    return None


class AutomationStates:
    """The real reader: the stack's exported state and, when asked, its last update's result. Every run
    reads its own stack (the configs it keeps), so the reading is kept to what it needs: one `pulumi`
    command object for all reads (creating one runs `pulumi version`), and for a state alone one
    `pulumi stack export`, with no `stack select` first."""

    def __init__(self, project: str, root: Path | None = None) -> None:
        """`root`: the folder of the project's `Pulumi.yaml` (`pulumi.get_root_directory()`)."""
        self.project = project
        self.root = root
        self.command: PulumiCommand | None = None

    def deployed(self, stack: str, *, with_history: bool) -> Deployed:
        from pulumi import automation  # noqa: PLC0415 (only a real run reads state)

        backend = project_backend(self.root) if self.root is not None else None
        if self.command is None:
            self.command = automation.PulumiCommand(skip_version_check=True)
        with tempfile.TemporaryDirectory(prefix="synapse-workers-guard-") as scratch:
            workspace = automation.LocalWorkspace(
                work_dir=scratch,
                project_settings=automation.ProjectSettings(
                    name=self.project,
                    runtime="python",
                    backend=automation.ProjectBackend(url=backend) if backend else None,
                ),
                pulumi_command=self.command,
            )
            try:
                if with_history:
                    handle = automation.Stack.select(stack, workspace)
                    state = handle.export_stack().deployment or {}
                    history = handle.history(page_size=1)
                else:
                    state, history = workspace.export_stack(stack).deployment or {}, []
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
