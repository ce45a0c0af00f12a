"""What a stack has deployed, read from its state with the Pulumi CLI, for the guards and the configs kept.

`pulumi stack export` and `pulumi stack history` are the public ways to read a stack's state; both run
the Pulumi CLI the program itself runs under. They run in a scratch project of the same name, so the
operator's selected stack is never changed. Tests and `render`, which run without a CLI,
hand the program another `DeployedStates`.

The scratch project must reach the backend the update itself runs against, however it was named: a
login and `PULUMI_BACKEND_URL` reach the CLI through the environment it inherits, but `backend.url` in the
project's `Pulumi.yaml` lives only in that file, so the scratch project carries it over (without it, the
CLI falls back to Pulumi Cloud and asks for a token). An Automation API workspace's own `env_vars` never
reach this process: name the backend in one of those three ways.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Protocol

import yaml

from synapse_workers.model.stack_config import PROJECT_FILES
from synapse_workers.model.stack_yaml import StackYamlError, load
from synapse_workers.ops.guards import Deployed, GuardError, deployed_from_state


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


class CliStates:
    """The real reader: `pulumi stack export` and, when asked, `pulumi stack history` of the stack, run as
    commands in a scratch project of the same name (its `Pulumi.yaml` carries `backend.url`). Every run
    reads its own stack (for the configs it keeps), so the reading is kept to what it needs: one command
    per state, none of the Automation API's extra `pulumi version` and `stack select` (about 0.2 s each),
    and without `--show-secrets`, which the Automation API always passes: the annotations and ConfigMaps
    read here hold no secret, so no secret is decrypted (another 0.2 s) or held in this process."""

    def __init__(self, project: str, root: Path | None = None) -> None:
        """`root`: the folder of the project's `Pulumi.yaml` (`pulumi.get_root_directory()`)."""
        self.project = project
        self.root = root

    def deployed(self, stack: str, *, with_history: bool) -> Deployed:
        backend = project_backend(self.root) if self.root is not None else None
        pulumi = shutil.which("pulumi")
        if pulumi is None:
            raise GuardError("the pulumi command is not on PATH")
        with tempfile.TemporaryDirectory(prefix="synapse-workers-guard-") as scratch:
            project: dict[str, Any] = {"name": self.project, "runtime": "python"}
            if backend:
                project["backend"] = {"url": backend}
            (Path(scratch) / "Pulumi.yaml").write_text(yaml.safe_dump(project))
            state = self._json(pulumi, scratch, stack, "stack", "export").get("deployment") or {}
            last_result = None
            if with_history:
                history = self._json(pulumi, scratch, stack, "stack", "history", "--json", "--page-size", "1")
                last_result = history[0].get("result") if isinstance(history, list) and history else None
        return deployed_from_state(state, last_result)

    @staticmethod
    def _json(pulumi: str, scratch: str, stack: str, *command: str) -> Any:
        env = {**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"}
        done = subprocess.run(
            [pulumi, *command, "--stack", stack, "--non-interactive"],
            cwd=scratch,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            text = done.stderr or done.stdout
            if "no stack named" in text or "not found" in text:
                raise GuardError(f"stack '{stack}' does not exist in this backend")
            lines = text.splitlines() or ["no output"]
            first = next((line for line in lines if "error:" in line), lines[0])
            raise GuardError(f"cannot read stack '{stack}': {first.strip()}")
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError:
            raise GuardError(f"cannot read stack '{stack}': the pulumi command printed no JSON") from None


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
