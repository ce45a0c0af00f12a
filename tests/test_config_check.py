"""The check-config Job's script, run here against real Synapse: it passes a good config and stops on a
bad one with Synapse's own message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synapse_workers.plan import Plan, build_plan
from tests.conftest import secrets_folder, settings_for


def _stage(plan: Plan, root: Path, shared_text: str | None = None) -> str:
    """Lay the Job's mounts out under `root` and return its script with paths pointed there."""
    secrets = secrets_folder(root)
    (root / "run" / "synapse").mkdir(parents=True)
    text = (shared_text or plan.shared.text).replace("/secrets/", f"{secrets}/")
    text = text.replace("media_store_path: /media", f"media_store_path: {root / 'media'}")
    (root / "config" / "shared").mkdir(parents=True)
    (root / "config" / "shared" / "shared.yaml").write_text(text)
    for workload in plan.workloads:
        folder = root / "config" / workload.part
        folder.mkdir()
        (folder / "class.yaml").write_text(workload.config.text)
    job = plan.config_check()
    script: str = job["spec"]["template"]["spec"]["containers"][0]["command"][2]
    return script.replace("/config/", f"{root}/config/").replace("/run/synapse/", f"{root}/run/synapse/")


def _run(script: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env, check=False)


@pytest.fixture(scope="module")
def plan() -> Plan:
    return build_plan(settings_for(ccu="3000", federation={"enabled": True, "servers": 60}))


def test_good_config_passes_for_every_part(plan: Plan, tmp_path: Path) -> None:
    done = _run(_stage(plan, tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    parts = [w.part for w in plan.workloads]
    assert len(parts) == 10
    assert done.stdout.count("Config parses OK!") == len(parts)
    for part in parts:
        assert f"checking {part}" in done.stdout


def test_config_synapse_rejects_stops_the_job_with_synapses_message(plan: Plan, tmp_path: Path) -> None:
    shared = yaml.safe_load(plan.shared.text)
    shared["stream_writers"]["typing"] = ["synapse-typing-writer-0", "synapse-typing-writer-1"]
    shared["instance_map"]["synapse-typing-writer-1"] = {"host": "localhost", "port": 9093}
    done = _run(_stage(plan, tmp_path, yaml.safe_dump(shared)))
    assert done.returncode != 0
    assert "Must only specify one instance to handle `typing` messages" in done.stderr
    assert "Config parses OK!" not in done.stdout


def test_job_name_follows_the_config_content() -> None:
    def name(**overrides: object) -> str:
        return str(build_plan(settings_for(**overrides)).config_check()["metadata"]["name"])

    assert name(ccu="3000") == name(ccu="3000")
    assert name(ccu="3000") != name(ccu="3000", messagesPerSecond="400")  # more persisters: new topology
    assert name(ccu="3000") == name(ccu="3100")  # only synchrotron counts change: same config


def test_a_new_image_checks_the_config_again() -> None:
    def name(**overrides: object) -> str:
        return str(build_plan(settings_for(**overrides)).config_check()["metadata"]["name"])

    assert name() != name(image="ghcr.io/element-hq/synapse:v1.164.0")
