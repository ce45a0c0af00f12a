"""The real Pulumi engine against a real Kubernetes API: fixtures for `tests/engine` (marker `engine`).

The CLI and the Kubernetes provider come from `make engine`, the control plane from `make cluster`
(both into .tools/bin). The session starts the cluster (and stops it), points the Automation API at a
file backend in a scratch folder, and runs the config-check executor and a stand-in ingress controller
for the fake cluster. Stacks run the project's own program inline (`components.program.run`), from a
scratch copy of the project's stack files. Missing tools fail the run in CI and skip it elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi import automation
from signedjson.key import encode_signing_key_base64, generate_signing_key

from components.program import run as program_run
from synapse_workers.model.stack_config import PROJECT_DIR
from tests.engine.executor import CheckExecutor, ingress_controller, kubectl

TOOLS = PROJECT_DIR / ".tools"
BIN = TOOLS / "bin"
NEEDED = ("pulumi", "pulumi-resource-kubernetes", "kube-apiserver", "etcd", "kwok", "kubectl")
PASSPHRASE = "engine-tests"

TEST_SECRETS = {
    "registrationSharedSecret": "engine-registration-0a1b",
    "macaroonSecretKey": "engine-macaroon-2c3d",
    "formSecret": "engine-form-4e5f",
    "replicationSecret": "engine-replication-6a7b",
    "postgresPassword": "engine-postgres-8c9d",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/engine/" in str(item.path):
            item.add_marker(pytest.mark.engine)


def signing_key() -> str:
    """A real ed25519 signing key in Synapse's format, made by Synapse's own helper."""
    key = generate_signing_key("a_engine")
    return f"ed25519 a_engine {encode_signing_key_base64(key)}\n"


def shipped_config(name: str) -> dict[str, Any]:
    """The `config:` of the project's Pulumi.<name>.yaml, less synapse:existingSecret (the scratch stacks
    manage their secrets)."""
    config: dict[str, Any] = yaml.safe_load((PROJECT_DIR / f"Pulumi.{name}.yaml").read_text())["config"]
    config.pop("synapse:existingSecret", None)
    return config


def scratch_stack(
    name: str, work: Path, config: dict[str, Any], program: Callable[[], None] = program_run
) -> automation.Stack:
    """A stack of this project in the folder `work`, running `program` inline with `config` as its stack
    file and the test secrets as Pulumi secrets, through the CLI built in .tools/bin."""
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", work / "Pulumi.yaml")
    (work / f"Pulumi.{name}.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=True))
    stack = automation.create_or_select_stack(
        stack_name=name,
        project_name="synapse-workers",
        program=program,
        opts=automation.LocalWorkspaceOptions(
            work_dir=str(work), pulumi_command=automation.PulumiCommand(root=str(TOOLS))
        ),
    )
    set_test_secrets(stack)
    return stack


def set_test_secrets(stack: automation.Stack) -> None:
    """The test secrets and a fresh signing key, as Pulumi secrets of `stack`."""
    for key, value in {**TEST_SECRETS, "signingKey": signing_key()}.items():
        stack.set_config(f"synapse:{key}", automation.ConfigValue(value, secret=True))


def pulumi_cli_or_skip(what: str) -> None:
    """For tests that need only the Pulumi CLI (no cluster): fail in CI without it, skip elsewhere."""
    if not os.access(BIN / "pulumi", os.X_OK):
        message = f"{what} needs .tools/bin/pulumi: run `make engine`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class Engine:
    backend: Path
    projects: Path
    executor: CheckExecutor
    stacks: dict[str, automation.Stack] = field(default_factory=dict)

    def kubectl(self, *args: str) -> str:
        return kubectl(str(BIN / "kubectl"), *args)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json")))

    def project_for(self, stack: str) -> Path:
        return self.projects / stack

    def stack(self, name: str, overrides: dict[str, Any] | None = None) -> automation.Stack:
        """Create the stack from the project's Pulumi.<name>.yaml, with `overrides` (keys without the
        namespace) on top."""
        config = shipped_config(name)
        for key, value in (overrides or {}).items():
            config[f"synapse:{key}"] = value
        stack = scratch_stack(name, self.project_for(name), config)
        self.stacks[name] = stack
        return stack

    def stack_file(self, stack: automation.Stack) -> Path:
        return self.project_for(stack.name) / f"Pulumi.{stack.name}.yaml"

    def value(self, stack: automation.Stack, key: str) -> Any:
        """A plain value of the stack file (`synapse:<key>`), an object stored as JSON text decoded."""
        found = yaml.safe_load(self.stack_file(stack).read_text())["config"].get(f"synapse:{key}")
        return json.loads(found) if isinstance(found, str) and found.startswith(("{", "[")) else found

    def set(self, stack: automation.Stack, key: str, value: Any) -> None:
        """Write a plain value into the stack file, as `pulumi config set --path` would."""
        path = self.stack_file(stack)
        document = yaml.safe_load(path.read_text())
        document["config"][f"synapse:{key}"] = value
        path.write_text(yaml.safe_dump(document, sort_keys=True))


def _tools_or_skip() -> None:
    missing = [name for name in NEEDED if not os.access(BIN / name, os.X_OK)]
    if missing:
        message = f"engine tier needs {', '.join(missing)} in .tools/bin: run `make engine cluster-tools`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _cluster_up() -> bool:
    """Start the local cluster unless one of ours already runs; True when this session started it."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    if (TOOLS / "cluster" / "pids").exists():
        check = subprocess.run(
            [str(BIN / "kubectl"), "--kubeconfig", str(TOOLS / "kubeconfig"), "get", "--raw", "/readyz"],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode == 0:
            return False
        subprocess.run(["bash", str(PROJECT_DIR / "scripts/cluster/cluster-down.sh")], env=env, check=False)
    subprocess.run(["bash", str(PROJECT_DIR / "scripts/cluster/cluster-up.sh")], env=env, check=True)
    return True


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    _tools_or_skip()
    scratch = tmp_path_factory.mktemp("engine")
    backend, home = scratch / "state", scratch / "pulumi-home"
    backend.mkdir()
    home.mkdir()
    saved = dict(os.environ)
    os.environ.update(
        {
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "PULUMI_BACKEND_URL": backend.as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_HOME": str(home),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "KUBECONFIG": str(TOOLS / "kubeconfig"),
        }
    )
    os.environ.pop("PULUMI_IGNORE_AMBIENT_PLUGINS", None)
    started = _cluster_up()
    executor = CheckExecutor(str(BIN / "kubectl"))
    engine = Engine(backend=backend, projects=scratch / "projects", executor=executor)
    stopped = threading.Event()
    threads = [
        threading.Thread(target=executor.loop, daemon=True),
        threading.Thread(target=ingress_controller, args=(str(BIN / "kubectl"), stopped), daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        yield engine
    finally:
        executor.stopped.set()
        stopped.set()
        for thread in threads:
            thread.join(timeout=10)
        if started:
            subprocess.run(["bash", str(PROJECT_DIR / "scripts/cluster/cluster-down.sh")], check=False)
        os.environ.clear()
        os.environ.update(saved)


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 60, every: float = 0.5) -> float:
    """Poll until `predicate()` holds; the seconds that took. `every`: the pause between polls (a poll of a
    real node's pods is a kubectl call, worth spacing)."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out waiting for {what} (after {timeout} s)")
        time.sleep(every)
    return time.monotonic() - started
