"""`synapse-workers plan|render` as an operator runs them: output, exit codes, nothing written on error."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synapse_workers.model.stack_config import PROJECT_DIR
from synapse_workers.model.worker_classes import BY_NAME, CLASS_NAMES
from tests.conftest import pulumi_project


def cli(*args: str, cwd: Path = PROJECT_DIR) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_DIR)}
    return subprocess.run(
        [sys.executable, "-m", "synapse_workers", *args], capture_output=True, text=True, cwd=cwd, env=env, check=False
    )


def test_plan_prod_prints_the_whole_table() -> None:
    done = cli("plan", "--stack", "prod")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Stack prod: 20,000 CCU")
    assert "Phase 4: Very Large" in lines[1]
    for name in CLASS_NAMES:
        mark = "*" if BY_NAME[name].beyond_guide else ""
        assert any(line.startswith(f"{name}{mark} ") for line in lines), name
    assert any(line.startswith("* beyond the guide") for line in lines)
    assert "Departures from the guide" in done.stdout
    assert "exactly one writer" in done.stdout


def test_plan_json_shape_and_values() -> None:
    done = cli("plan", "--stack", "prod", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["stack"] == "prod"
    assert plan["phase"] == "Very Large"
    assert plan["load"]["ccu"] == 20000
    assert plan["load"]["messagesPerSecond"] == 800
    assert list(plan["workers"]) == list(CLASS_NAMES)
    for name, worker in plan["workers"].items():
        assert {"kind", "scaling", "replicas", "minReplicas", "maxReplicas", "notes"} <= set(worker), name
    sync = plan["workers"]["synchrotron"]
    assert (sync["kind"], sync["scaling"]) == ("Deployment", "hpa")
    assert sync["replicas"] == sync["minReplicas"] == math.ceil(20000 / 250)
    persister = plan["workers"]["event-persister"]
    assert (persister["kind"], persister["scaling"], persister["minReplicas"]) == ("StatefulSet", "manual", None)
    assert plan["workers"]["typing-writer"]["replicas"] == 1
    assert plan["workers"]["typing-writer"]["notes"]
    assert plan["workers"]["federation-sender"]["replicas"] == 0


def test_plan_flags_override_the_stack_file() -> None:
    done = cli("plan", "--stack", "prod", "--ccu", "1000", "--messages-per-second", "400", "--json")
    plan = json.loads(done.stdout)
    assert plan["load"]["ccu"] == 1000
    assert plan["load"]["messagesPerSecondEstimated"] is False
    assert plan["workers"]["event-persister"]["replicas"] == 8
    assert plan["phase"] == "Small"


def test_plan_takes_the_federated_server_count_as_a_flag_too() -> None:
    """Every load figure has its flag on plan and render, not only on scale; prod has federation off, so
    the flag is refused there, naming itself and the key it stands in for."""
    refused = cli("plan", "--stack", "prod", "--federated-servers", "300")
    assert refused.returncode == 2
    assert "--federated-servers (in place of synapse:federation.servers) = 300" in refused.stderr
    assert "federation is off" in refused.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (
            ["plan", "--stack", "prod", "--ccu", "0"],
            "--ccu (in place of synapse:ccu) = 0 is not allowed (out of range)",
        ),
        (["plan", "--stack", "prod", "--ccu", "many"], "whole number"),
        (["plan", "--stack", "prod", "--messages-per-second", "-1"], "--messages-per-second"),
        (["plan", "--stack", "nosuch"], "Pulumi.nosuch.yaml: no such stack file"),
        (["plan"], "--stack"),
        (["plan", "--stack", "prod", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        (["deploy", "--stack", "prod"], "invalid choice"),
        (["render", "--stack", "prod"], "--out"),
    ],
)
def test_bad_command_lines_give_one_line_and_exit_non_zero(args: list[str], fragment: str) -> None:
    done = cli(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("error: ")
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr


def test_installed_command_finds_the_project_as_pulumi_does(tmp_path: Path) -> None:
    """The set-up installs `synapse-workers` beside the interpreter. Like `pulumi`, it works on the
    project it is run in (or `-C DIR`), not on the checkout it was installed from; outside a project
    it says so in one line. Its usage errors carry its own name."""
    script = Path(sys.executable).parent / "synapse-workers"
    assert script.exists(), "run the README's set-up (make plan / make test): it installs the command"
    outside = subprocess.run(
        [str(script), "plan", "--stack", "staging"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert outside.returncode == 2 and outside.stdout == ""
    assert outside.stderr.startswith(f"error: synapse-workers: no Pulumi.yaml in {tmp_path} or any folder above it")
    done = subprocess.run(
        [str(script), "-C", str(PROJECT_DIR), "plan", "--stack", "staging"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Stack staging: 500 CCU")
    bad = subprocess.run([str(script), "plan"], capture_output=True, text=True, cwd=tmp_path, check=False)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: synapse-workers plan: ")


def _stack_dir(tmp_path: Path, text: str, stack: str = "test") -> Path:
    (tmp_path / f"Pulumi.{stack}.yaml").write_text(text)
    return pulumi_project(tmp_path)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("config: [unclosed", "not valid YAML"),
        ("- just\n- a list\n", "expected a mapping"),
        ("config:\n  synapse:ccu: '100'\n  synapse:colour: blue\n", "synapse:colour"),
        ("config:\n  synapse:ccu: 0\n", "synapse:ccu = 0 is not allowed"),
    ],
)
def test_bad_stack_files_write_nothing(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "project").mkdir()
    project = _stack_dir(tmp_path / "project", text)
    out = tmp_path / "out"
    done = cli("render", "--stack", "test", "--out", str(out), "-C", str(project))
    assert done.returncode == 2
    assert fragment in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_render_writes_one_file_per_object_and_per_process(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = cli("render", "--stack", "staging", "--out", str(out))
    assert done.returncode == 0, done.stderr
    manifests = sorted((out / "manifests").iterdir())
    for path in manifests:
        document = yaml.safe_load(path.read_text())
        assert path.name == f"{document['kind'].lower()}-{document['metadata']['name']}.yaml"
    processes = {p.name for p in (out / "synapse").iterdir()}
    plan = json.loads(cli("plan", "--stack", "staging", "--json").stdout)
    expected = {"synapse-main-0.yaml", "synapse-synchrotron.yaml", "synapse-generic-worker.yaml"}
    for name, worker in plan["workers"].items():
        if worker["kind"] == "StatefulSet":
            expected |= {f"synapse-{name}-{i}.yaml" for i in range(worker["replicas"])}
    assert processes == expected
    persister = yaml.safe_load((out / "synapse" / "synapse-event-persister-1.yaml").read_text())
    assert persister["worker_name"] == "synapse-event-persister-1"
    sample = yaml.safe_load((out / "synapse" / "synapse-synchrotron.yaml").read_text())
    assert sample["worker_name"].startswith("synapse-synchrotron-")
    main = yaml.safe_load((out / "synapse" / "synapse-main-0.yaml").read_text())
    assert "worker_name" not in main and main["enable_media_repo"] is False


def _scalars(node: object) -> list[object]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _scalars(v)]
    if isinstance(node, list):
        return [s for v in node for s in _scalars(v)]
    return [node]


def test_render_writes_integers_not_floats(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert cli("render", "--stack", "prod", "--out", str(out)).returncode == 0
    text = (out / "manifests" / "statefulset-synapse-event-persister.yaml").read_text()
    assert "replicas: 16\n" in text
    floats = [
        (path.name, value)
        for path in (out / "manifests").iterdir()
        for value in _scalars(yaml.safe_load(path.read_text()))
        if isinstance(value, float)
    ]
    assert floats == []


def test_render_is_byte_identical_twice_and_drops_stale_files(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    assert cli("render", "--stack", "prod", "--out", str(first), "--ccu", "30000").returncode == 0
    assert cli("render", "--stack", "prod", "--out", str(second), "--ccu", "30000").returncode == 0
    files = sorted(p.relative_to(first) for p in first.rglob("*.yaml"))
    assert files == sorted(p.relative_to(second) for p in second.rglob("*.yaml"))
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    # Rendering a smaller load into the same folder leaves no file from the bigger one.
    assert cli("render", "--stack", "prod", "--out", str(first), "--ccu", "1000").returncode == 0
    assert not (first / "synapse" / "synapse-event-persister-5.yaml").exists()


def test_render_redacts_secrets_from_a_stack_file_with_secure_values(tmp_path: Path) -> None:
    text = (PROJECT_DIR / "Pulumi.staging.yaml").read_text().replace("  synapse:existingSecret: synapse-secrets\n", "")
    for key in (
        "registrationSharedSecret",
        "macaroonSecretKey",
        "formSecret",
        "replicationSecret",
        "signingKey",
        "postgresPassword",
    ):
        text += f"  synapse:{key}:\n    secure: v1:AAAABBBBCCCC{key}==\n"
    (tmp_path / "project").mkdir()
    project = pulumi_project(tmp_path / "project")
    (project / "Pulumi.staging.yaml").write_text("encryptionsalt: v1:abc=\n" + text)
    out = tmp_path / "out"
    done = cli("render", "--stack", "staging", "--out", str(out), "-C", str(project))
    assert done.returncode == 0, done.stderr
    secret = yaml.safe_load((out / "manifests" / "secret-synapse-secrets.yaml").read_text())
    assert set(secret["stringData"].values()) == {"<redacted>"}
    assert "signing.key" in secret["stringData"]
    everything = "".join(p.read_text() for p in out.rglob("*.yaml"))
    assert "AAAABBBBCCCC" not in everything


def test_unreadable_stack_file_is_one_clear_line(tmp_path: Path) -> None:
    # Root reads any file whatever its mode, so a folder in the file's place stands for "unreadable".
    (tmp_path / "Pulumi.test.yaml").mkdir()
    pulumi_project(tmp_path)
    done = cli("plan", "--stack", "test", "-C", str(tmp_path))
    assert done.returncode == 2
    assert "Pulumi.test.yaml: not a regular file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_plan_what_if_json() -> None:
    done = cli("plan", "--stack", "prod", "--to-ccu", "25000", "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["load"]["ccu"] == 25000
    sync = plan["changes"]["synchrotron"]
    assert (sync["old"]["replicas"], sync["new"]["replicas"]) == (80, 100)
    assert plan["restarts"].index("media-repository") > plan["restarts"].index("main")
    assert plan["restarts"].index("event-persister") < plan["restarts"].index("main")
    assert plan["maintenanceWindow"] is True


def test_plan_shows_the_budget_and_what_if_shows_it_before_and_after() -> None:
    table = cli("plan", "--stack", "prod")
    assert table.returncode == 0, table.stderr
    assert "Budget (at the HPA minimums -> at the HPA maximums during a rollout):" in table.stdout
    # 2 PgBouncer pods (+1 in a rollout) x 100, plus main (10) and the background worker (5) directly,
    # and at the maximum the schema Job's one.
    assert "PostgreSQL connections: 215 -> 316 of 490 allowed" in table.stdout
    done = cli("plan", "--stack", "prod", "--to-ccu", "25000", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    before, after = document["budgetBefore"], document["budget"]
    assert before["postgresConnections"] == after["postgresConnections"]  # PgBouncer's pools, not the load
    assert after["synapseConnections"]["atMaximum"] > before["synapseConnections"]["atMaximum"]
    assert after["cpuRequests"]["atMinimum"] > before["cpuRequests"]["atMinimum"]
    assert document["workers"]["event-persister"]["dbConnections"] == 10
    assert after["byWorkload"]["main"]["perProcess"] == 10
    assert set(after["nodes"]) == {"atMinimum", "atMaximum", "node"}


def test_plan_what_if_without_restarts_needs_no_window() -> None:
    done = cli("plan", "--stack", "staging", "--to-ccu", "600")
    assert done.returncode == 0, done.stderr
    assert "restarts: none" in done.stdout
    assert "maintenance window needed: no" in done.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--to-ccu", "-1"], "--to-ccu (in place of synapse:ccu) = -1"),
        (["--to-federated-servers", "300"], "--to-federated-servers (in place of synapse:federation.servers)"),
    ],
)
def test_plan_what_if_bad_target(args: list[str], fragment: str) -> None:
    done = cli("plan", "--stack", "prod", *args)
    assert done.returncode == 2
    assert fragment in done.stderr


def test_plan_lists_routes_and_what_to_watch() -> None:
    plan = json.loads(cli("plan", "--stack", "prod", "--json").stdout)
    by_target: dict[str, list[str]] = {}
    for route in plan["routes"]:
        by_target.setdefault(route["target"], []).append(route["pattern"])
    assert any("/sync" in p for p in by_target["synchrotron"])
    assert any("sendToDevice" in p for p in by_target["todevice-writer"])
    assert "federation-sender" not in by_target and "event-persister" not in by_target
    assert not any("/_matrix/federation/" in p for patterns in by_target.values() for p in patterns)
    assert plan["workers"]["synchrotron"]["watch"]["alert"] == "SynapseSyncLatencyHigh"
    assert plan["workers"]["federation-sender"]["watch"] is None
    table = cli("plan", "--stack", "prod").stdout
    assert "Routes (router" in table and "alert SynapseHpaAtMaximum" not in table.split("Routes")[1]
