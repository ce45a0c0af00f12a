"""The real engine against the real node of `make node` (tests/node, marker `node`).

Runs only when selected with `-m node` (`venv/bin/python -m pytest tests/node -m node`), so `make test`
never runs it, and needs a running node (`make node`: .tools/node/env and its kubeconfig answering) and
the engine (`make engine`); skips otherwise, also in CI. The stack runs
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/node/" in str(item.path):
            item.add_marker(pytest.mark.node)


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
    if "node" not in (request.config.option.markexpr or ""):
        pytest.skip("the node tier runs only when selected: pytest tests/node -m node (after `make node`)")
    missing = [name for name in NEEDED if not os.access(BIN / name, os.X_OK)]
    if missing:
        pytest.skip(f"node tier needs {', '.join(missing)} in .tools/bin: run `make engine node-tools`")
    if not NODE_ENV.exists():
        pytest.skip("no node: start one with `make node` (the node tier is not part of `make test`)")
    env = read_env(NODE_ENV)
    ready = subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", env["KUBECONFIG"], "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
        check=False,
    )
    if ready.returncode != 0:
        pytest.skip(f"the node does not answer ({ready.stderr.strip()}): restart it with `make node`")
    yield env
