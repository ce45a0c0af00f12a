"""`scale`: the stack file edited as `pulumi config set` would, comments kept, history appended,
and nothing written when the change would be refused."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synapse_workers.model.stack_config import PROJECT_DIR, read_stack_file
from tests.conftest import pulumi_project


def scale(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR)}
    return subprocess.run(
        [sys.executable, "-m", "synapse_workers", "scale", "-C", str(project), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(PROJECT_DIR / "Pulumi.prod.yaml", tmp_path / "Pulumi.prod.yaml")
    return pulumi_project(tmp_path)


def test_scale_writes_values_as_the_cli_does_and_keeps_comments(project: Path) -> None:
    before = (project / "Pulumi.prod.yaml").read_text()
    done = scale(project, "--stack", "prod", "--ccu", "25000", "--pin", "receipts-writer=4", "--reason", "launch")
    assert done.returncode == 0, done.stderr
    after = (project / "Pulumi.prod.yaml").read_text()
    assert '  synapse:ccu: "25000"\n' in after
    # Every line but the changed one is kept, comments and key order included; the pin is appended.
    kept = [line for line in before.splitlines() if "synapse:ccu" not in line]
    assert [line for line in after.splitlines() if "synapse:ccu" not in line][: len(kept)] == kept
    values, _ = read_stack_file("prod", project / "Pulumi.prod.yaml")
    assert values["synapse:ccu"] == "25000"
    assert yaml.safe_load(values["synapse:workers"]) == {"receipts-writer": {"replicas": 4}}
    assert "maintenance window needed: yes" in done.stdout


def test_scale_appends_a_history_record_per_change(project: Path) -> None:
    assert scale(project, "--stack", "prod", "--ccu", "25000", "--reason", "spring launch").returncode == 0
    assert scale(project, "--stack", "prod", "--messages-per-second", "500", "--reason", "quiet week").returncode == 0
    history = yaml.safe_load((project / "scaling-history.yaml").read_text())
    assert [r["reason"] for r in history] == ["spring launch", "quiet week"]
    first = history[0]
    assert first["stack"] == "prod"
    assert first["load"] == {"ccu": "20000 -> 25000"}
    sync_old, sync_new = math.ceil(20000 / 250), math.ceil(25000 / 250)
    assert first["replicas"]["synchrotron"] == f"{sync_old} -> {sync_new}"
    assert first["date"].endswith("Z") and first["date"][:4].isdigit()
    # The second change lowered the message rate from the estimate (1,000/s at 25,000 CCU) to 500/s.
    assert history[1]["replicas"]["event-persister"] == f"{math.ceil(1000 / 50)} -> {math.ceil(500 / 50)}"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--pin", "typing-writer=2", "--reason", "r"], "exactly one writer"),
        (["--ccu", "0", "--reason", "r"], "--ccu (in place of synapse:ccu)"),
        (["--federated-servers", "100", "--reason", "r"], "--federated-servers"),
        (["--pin", "nonsense=3", "--reason", "r"], "unknown class"),
        (["--pin", "event-persister", "--reason", "r"], "CLASS=REPLICAS"),
        (["--ccu", "30000", "--reason", "  "], "--reason"),
        (["--reason", "nothing to do"], "at least one of"),
        (["--ccu", "30000"], "--reason"),
    ],
)
def test_refused_changes_write_nothing(project: Path, args: list[str], fragment: str) -> None:
    before = (project / "Pulumi.prod.yaml").read_bytes()
    done = scale(project, "--stack", "prod", *args)
    assert done.returncode == 2
    assert fragment in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert (project / "Pulumi.prod.yaml").read_bytes() == before
    assert not (project / "scaling-history.yaml").exists()


def test_scale_refuses_a_change_the_database_cannot_take(tmp_path: Path) -> None:
    """Staging's PostgreSQL allows 190 connections: 5,000 CCU would need 547 at the HPA maximums."""
    shutil.copy(PROJECT_DIR / "Pulumi.staging.yaml", tmp_path / "Pulumi.staging.yaml")
    pulumi_project(tmp_path)
    before = (tmp_path / "Pulumi.staging.yaml").read_text()
    done = scale(tmp_path, "--stack", "staging", "--ccu", "5000", "--reason", "load test")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("error: stack 'staging': synapse:postgres.maxConnections = 200 is not allowed")
    assert "over the limit of 190" in done.stderr and "pooler.enabled" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert (tmp_path / "Pulumi.staging.yaml").read_text() == before
    assert not (tmp_path / "scaling-history.yaml").exists()


def test_a_pin_stored_as_json_text_survives_another_pin(project: Path) -> None:
    """`pulumi config set synapse:workers '{...}'` stores JSON text; the CLI hands it to the program as is,
    and `scale` used to replace it with its one new pin, dropping the others."""
    path = project / "Pulumi.prod.yaml"
    with path.open("a") as handle:
        handle.write("""  synapse:workers: '{"event-persister": {"replicas": 4}}'\n""")
    done = scale(project, "--stack", "prod", "--pin", "synchrotron=3", "--reason", "json pins")
    assert done.returncode == 0, done.stderr
    workers = yaml.safe_load(path.read_text())["config"]["synapse:workers"]
    assert workers == {"event-persister": {"replicas": 4}, "synchrotron": {"replicas": 3}}


def test_a_value_that_is_not_an_object_is_refused_not_replaced(project: Path) -> None:
    path = project / "Pulumi.prod.yaml"
    with path.open("a") as handle:
        handle.write("  synapse:workers: '[1, 2]'\n")
    before = path.read_bytes()
    done = scale(project, "--stack", "prod", "--pin", "synchrotron=3", "--reason", "bad")
    assert done.returncode != 0
    assert path.read_bytes() == before
