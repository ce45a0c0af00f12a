"""The real engine against a real node (tests/node, marker `node`): part of `make test`.

The session starts the node with `scripts/node/node-up.sh` (kubelet, containerd, CoreDNS, metrics-server,
PostgreSQL and Redis; `make node` does the same) unless one of ours already answers, and stops it with
`node-down.sh` at the end when it started it. A SIGTERM is turned into KeyboardInterrupt so the stop
runs then too; after a SIGKILL the next start finds the record of the machine's state and cleans up
first. It needs root and the tools of `make engine node-tools`: without them it fails in CI (CI=true)
and skips elsewhere, saying why.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from synapse_workers.model.stack_config import PROJECT_DIR

TOOLS = PROJECT_DIR / ".tools"
BIN = TOOLS / "bin"
NODE_ENV = TOOLS / "node" / "env"
SCRIPTS = PROJECT_DIR / "scripts" / "node"
NEEDED = ("pulumi", "pulumi-resource-kubernetes", "kubectl", "kubelet", "containerd")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/node/" in str(item.path):
            item.add_marker(pytest.mark.node)


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


def _answers() -> bool:
    if not NODE_ENV.exists():
        return False
    env = read_env(NODE_ENV)
    ready = subprocess.run(
        [str(BIN / "kubectl"), "--kubeconfig", env["KUBECONFIG"], "get", "--raw", "/readyz"],
        capture_output=True,
        text=True,
        check=False,
    )
    return ready.returncode == 0


@pytest.fixture(scope="session")
def node_env() -> Iterator[dict[str, str]]:
    missing = [name for name in NEEDED if not os.access(BIN / name, os.X_OK)]
    if missing:
        _unavailable(f"node tier needs {', '.join(missing)} in .tools/bin: run `make engine node-tools`")
    if os.geteuid() != 0:
        _unavailable("node tier needs root (a kubelet, a bridge and nftables): run it as root")
    started = False
    try:
        if not _answers():
            done = subprocess.run(
                ["bash", str(SCRIPTS / "node-up.sh")], capture_output=True, text=True, check=False, cwd=PROJECT_DIR
            )
            started = True  # a failed start cleans up after itself; stopping again is harmless
            if done.returncode != 0:
                _unavailable(f"the node did not start:\n{(done.stdout + done.stderr)[-4000:]}")
            print(done.stdout[-600:])
        yield read_env(NODE_ENV)
    finally:
        if started:
            # A second SIGTERM (make forwards its own to the run it started) must not cut the stop short:
            # subprocess.run kills node-down.sh when interrupted, leaving the node running. The first one
            # reaches here as a KeyboardInterrupt (tests/conftest.py).
            previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
            subprocess.run(["bash", str(SCRIPTS / "node-down.sh")], capture_output=True, check=False, cwd=PROJECT_DIR)
            signal.signal(signal.SIGTERM, previous)
