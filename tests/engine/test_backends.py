"""The guards read the stack's own backend however it was named: `PULUMI_BACKEND_URL`, a login, or
`backend.url` in the project's `Pulumi.yaml` (#22). Real Pulumi CLI, file backends, no cluster.

A staging stack is made in a file backend with a known deployment (`pulumi stack import`: one StatefulSet
carrying the annotations the guards read); the real reader (`components.deployed.CliStates`) then
reads it back with the backend named each way and no other, and an inline run of the program itself,
whose project file alone names the backend, is refused by the prod gate for what staging really runs.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from pulumi import automation

from components.deployed import CliStates
from components.program import inline_program
from components.program import run as program_run
from synapse_workers.ops.guards import DIGEST_ANNOTATION, REVISION_ANNOTATION, GuardError
from tests.engine.conftest import BIN, PASSPHRASE, TOOLS, pulumi_cli_or_skip, set_test_secrets, shipped_config

DIGEST, REVISION = "digest-from-the-backend", "revision-from-the-backend"
PROJECT = "synapse-workers"


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No backend named anywhere yet: a fresh PULUMI_HOME, no PULUMI_BACKEND_URL, the CLI on PATH."""
    pulumi_cli_or_skip("the backend tests")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    monkeypatch.delenv("PULUMI_ACCESS_TOKEN", raising=False)
    monkeypatch.setenv("PULUMI_HOME", str(home))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("PULUMI_SKIP_UPDATE_CHECK", "true")
    monkeypatch.setenv("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "true")
    monkeypatch.setenv("PATH", f"{BIN}:{os.environ['PATH']}")
    return home


def pulumi_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(BIN / "pulumi"), *args, "--non-interactive"],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def project(folder: Path, backend: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = f"name: {PROJECT}\nruntime: python\n"
    if backend is not None:
        text += f"backend:\n  url: {backend}\n"
    (folder / "Pulumi.yaml").write_text(text)
    return folder


def staging_in(state: Path, work: Path) -> None:
    """A staging stack in the file backend `state` whose deployment carries the guards' annotations."""
    state.mkdir(parents=True, exist_ok=True)
    url = {"PULUMI_BACKEND_URL": state.as_uri()}
    scratch = project(work / "maker")
    pulumi_cli("stack", "init", "staging", cwd=scratch, env=url)
    exported = json.loads(pulumi_cli("stack", "export", "--stack", "staging", cwd=scratch, env=url))
    stack_urn = f"urn:pulumi:staging::{PROJECT}::pulumi:pulumi:Stack::{PROJECT}-staging"
    exported["deployment"]["resources"] = [
        {"urn": stack_urn, "custom": False, "type": "pulumi:pulumi:Stack"},
        {
            "urn": f"urn:pulumi:staging::{PROJECT}::kubernetes:apps/v1:StatefulSet::synapse-main",
            "custom": True,
            "id": "matrix-staging/synapse-main",
            "type": "kubernetes:apps/v1:StatefulSet",
            "parent": stack_urn,
            "outputs": {
                "metadata": {
                    "labels": {"app.kubernetes.io/name": "synapse", "app.kubernetes.io/component": "main"},
                    "annotations": {DIGEST_ANNOTATION: DIGEST, REVISION_ANNOTATION: REVISION},
                }
            },
        },
    ]
    (work / "import.json").write_text(json.dumps(exported))
    pulumi_cli("stack", "import", "--stack", "staging", "--file", str(work / "import.json"), cwd=scratch, env=url)


def read(root: Path) -> tuple[dict[str, str], dict[str, str]]:
    deployed = CliStates(PROJECT, root).deployed("staging", with_history=False)
    return deployed.digests, deployed.revisions


EXPECTED = ({"main": DIGEST}, {"main": REVISION})


def test_named_by_the_environment(clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staging_in(tmp_path / "state", tmp_path)
    monkeypatch.setenv("PULUMI_BACKEND_URL", (tmp_path / "state").as_uri())
    assert read(project(tmp_path / "project")) == EXPECTED


def test_named_by_a_login(clean_env: Path, tmp_path: Path) -> None:
    staging_in(tmp_path / "state", tmp_path)
    root = project(tmp_path / "project")
    pulumi_cli("login", (tmp_path / "state").as_uri(), cwd=root)
    assert read(root) == EXPECTED


def test_named_only_by_the_project_file(clean_env: Path, tmp_path: Path) -> None:
    staging_in(tmp_path / "state", tmp_path)
    assert read(project(tmp_path / "project", (tmp_path / "state").as_uri())) == EXPECTED


def test_a_relative_folder_in_the_project_file_is_the_project_folders(clean_env: Path, tmp_path: Path) -> None:
    root = tmp_path / "project"
    staging_in(root / "state", tmp_path)
    assert read(project(root, "file://./state")) == EXPECTED


def test_another_backend_in_the_project_file_is_the_one_read(clean_env: Path, tmp_path: Path) -> None:
    """The control: the reader really follows the project file (an empty backend has no staging)."""
    staging_in(tmp_path / "state", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GuardError, match="stack 'staging' does not exist in this backend"):
        read(project(tmp_path / "project", (tmp_path / "empty").as_uri()))


def prod_in(root: Path, program: Callable[[], None]) -> automation.Stack:
    """Prod as shipped, gated on staging, in the workspace `root`, running `program` inline."""
    config = {**shipped_config("prod"), "synapse:stagingGate": "staging"}
    (root / "Pulumi.prod.yaml").write_text(yaml.safe_dump({"config": config}, sort_keys=True))
    stack = automation.create_stack(
        "prod",
        project_name=PROJECT,
        program=program,
        opts=automation.LocalWorkspaceOptions(
            work_dir=str(root), pulumi_command=automation.PulumiCommand(root=str(TOOLS))
        ),
    )
    set_test_secrets(stack)
    return stack


@pytest.mark.parametrize("told", [True, False], ids=["inline_program", "run-from-the-project-folder"])
def test_an_inline_run_named_only_by_its_project_file(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, told: bool
) -> None:
    """The case that asked Pulumi Cloud for a token: the update's backend named only in `Pulumi.yaml`.
    The Automation API names no project folder to an inline program: the caller says which
    (`inline_program(folder)`), or the process runs in it. The gate then reads staging from that backend
    and refuses for the right reason, before anything is registered."""
    staging_in(tmp_path / "state", tmp_path)
    root = project(tmp_path / "project", (tmp_path / "state").as_uri())
    if not told:
        monkeypatch.chdir(root)
    prod = prod_in(root, inline_program(root) if told else program_run)
    lines: list[str] = []
    with pytest.raises(automation.CommandError):
        prod.up(on_output=lines.append, color="never")
    text = "\n".join(lines)
    assert "PULUMI_ACCESS_TOKEN" not in text and "Traceback" not in text, text[-3000:]
    errors = [line.strip() for line in text.splitlines() if line.strip().startswith("error: stack 'prod'")]
    assert errors, text[-3000:]
    assert "has not been deployed to 'staging'" in errors[0], errors[0]
    assert f"it last deployed {REVISION}" in errors[0], errors[0]
    assert (tmp_path / "state" / ".pulumi" / "stacks" / PROJECT / "prod.json").exists()
