"""A stack deployed by the commit before the explicit provider moves onto it replacing nothing, and a
secret change then updates the Secret in place (#22 item 1).

The earlier commit's tree (`git archive`) deploys the stack in a subprocess, with its own program and
its own test helpers, into this module's backend and cluster; the current program then previews and
updates the same stack. Every step is counted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation

from components.program import run
from components.provider import PROVIDER_NAME
from synapse_workers.model.stack_config import PROJECT_DIR
from tests.engine.conftest import TOOLS, Engine, shipped_config

BEFORE_PROVIDER = "7d313d19a303399942f2b88f8af83fb04f21e682"
"""The last commit whose program used the default provider."""
NAMESPACE = "matrix-move"
OLD_UP = """
import json, sys
from pathlib import Path
from components.program import run
from tests.engine.conftest import scratch_stack
stack = scratch_stack("move", Path(sys.argv[1]), json.loads(sys.argv[2]), run)
stack.up(color="never")
"""


def old_tree(into: Path) -> Path:
    present = subprocess.run(["git", "cat-file", "-e", f"{BEFORE_PROVIDER}^{{commit}}"], cwd=PROJECT_DIR, check=False)
    if present.returncode != 0:
        pytest.fail(f"commit {BEFORE_PROVIDER} is not in this clone (a shallow clone?): fetch the history")
    archive = subprocess.run(["git", "archive", BEFORE_PROVIDER], cwd=PROJECT_DIR, capture_output=True, check=True)
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    (into / ".tools").symlink_to(TOOLS)
    return into


def ops_of(stack: automation.Stack, action: str) -> list[tuple[str, str, str]]:
    """(op, type, name) of every step that is not `same`."""
    found: list[tuple[str, str, str]] = []

    def collect(event: automation.EngineEvent) -> None:
        pre = event.resource_pre_event
        if pre is not None and pre.metadata.op != "same":
            urn = pre.metadata.urn
            found.append((str(pre.metadata.op.value), pre.metadata.type, urn.rsplit("::", 1)[1]))

    if action == "preview":
        stack.preview(on_event=collect, color="never")
    else:
        stack.up(on_event=collect, color="never")
    return found


def test_the_provider_move_replaces_nothing_and_secrets_then_update_in_place(engine: Engine, tmp_path: Path) -> None:
    old = old_tree(tmp_path / "old")
    work = tmp_path / "move"
    config: dict[str, Any] = {**shipped_config("staging"), "synapse:namespace": NAMESPACE}
    done = subprocess.run(
        [sys.executable, "-c", OLD_UP, str(work), json.dumps(config)],
        cwd=old,
        env={**os.environ, "PYTHONPATH": str(old)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-5000:]
    stack = automation.select_stack(
        "move",
        project_name="synapse-workers",
        program=run,
        opts=automation.LocalWorkspaceOptions(
            work_dir=str(work), pulumi_command=automation.PulumiCommand(root=str(TOOLS))
        ),
    )
    try:
        uid = engine.get("secret", "synapse-secrets", NAMESPACE)["metadata"]["uid"]
        previewed = ops_of(stack, "preview")
        applied = ops_of(stack, "up")
        for steps in (previewed, applied):
            providers = sorted((op, name) for op, kind, name in steps if kind == "pulumi:providers:kubernetes")
            assert providers == [("create", PROVIDER_NAME), ("delete", "default_4_34_2")], providers
            objects = [(op, kind, name) for op, kind, name in steps if kind.startswith("kubernetes:")]
            # Updates (the revision annotation, and what this tree renders differently on purpose), and new
            # contents of content-named ConfigMaps beside the old ones (the router's, since d02ef89): nothing
            # replaced, nothing deleted.
            assert objects and {op for op, _, _ in objects} <= {"update", "create"}, objects
            created = {kind for op, kind, _ in objects if op == "create"}
            assert created <= {"kubernetes:core/v1:ConfigMap"}, objects
        assert engine.get("secret", "synapse-secrets", NAMESPACE)["metadata"]["uid"] == uid

        stack.set_config("synapse:formSecret", automation.ConfigValue("a-new-form-secret", secret=True))
        changed = ops_of(stack, "up")
        secret = [op for op, kind, name in changed if kind == "kubernetes:core/v1:Secret"]
        assert secret == ["update"], changed
        assert engine.get("secret", "synapse-secrets", NAMESPACE)["metadata"]["uid"] == uid
        # Only the two Jobs are replaced: named after their config, they run again for the new Secret.
        replaced = {name for op, kind, name in changed if op in ("replace", "delete-replaced", "create-replacement")}
        assert replaced == {"synapse-config-check", "synapse-schema"}, changed
        assert not [s for s in changed if s[0] == "delete"], changed
    finally:
        stack.destroy(color="never")
        engine.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")
