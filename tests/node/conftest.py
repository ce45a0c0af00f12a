"""The real engine against the real node of `make node` (tests/node, marker `node`).

Runs only when selected with `-m node` (`venv/bin/python -m pytest tests/node -m node`): otherwise its
tests are deselected (never counted as skipped or passed), so `make test` does not run it yet. Selected,
it needs a running node (`make node`: .tools/node/env and its kubeconfig answering) and the engine
(`make engine`); without them it fails in CI (CI=true) and skips elsewhere. The stack runs
the project's own program inline through the Automation API, as tests/engine does, but against the node:
its pods run the real images with their real probes.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from synapse_workers.model.stack_config import PROJECT_DIR

TOOLS = PROJECT_DIR / ".tools"
BIN = TOOLS / "bin"
NODE_ENV = TOOLS / "node" / "env"
NEEDED = ("pulumi", "pulumi-resource-kubernetes", "kubectl")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    node = [item for item in items if "tests/node/" in str(item.path)]
    for item in node:
        item.add_marker(pytest.mark.node)
    if node and "node" not in (config.option.markexpr or ""):
        items[:] = [item for item in items if item not in node]
        config.hook.pytest_deselected(items=node)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def read_env(path: Path) -> dict[str, str]:
    """The `export NAME=value` lines of .tools/node/env."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line.removeprefix("export ").partition("=")
            words = shlex.split(value)
            found[name] = words[0] if words else ""
    return found


@pytest.fixture(scope="module")
def node_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    missing = [name for name in NEEDED if not os.access(BIN / name, os.X_OK)]
    if missing:
        _unavailable(f"node tier needs {', '.join(missing)} in .tools/bin: run `make engine node-tools`")
    if not NODE_ENV.exists():
        _unavailable("no node: start one with `make node` (the node tier is not part of `make test`)")
    env = read_env(NODE_ENV)
    ready = subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", env["KUBECONFIG"], "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
        check=False,
    )
    if ready.returncode != 0:
        _unavailable(f"the node does not answer ({ready.stderr.strip()}): restart it with `make node`")
    yield env
