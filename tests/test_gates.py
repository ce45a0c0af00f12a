"""A cycle of staging gates is refused before anything runs (#19 item 6): by the commands that read the
stack files, and by the program itself under `pulumi up` (here under mocks, with nothing registered)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from synapse_workers.cli.mock_runtime import RecordingMocks, run_program
from synapse_workers.model.errors import ConfigError
from synapse_workers.model.stack_config import PROJECT_DIR, read_stack_file
from synapse_workers.ops.gates import refuse_gate_cycle
from tests.conftest import pulumi_project


def stacks(folder: Path, gates: dict[str, str | None]) -> Path:
    """Copies of the shipped staging stack file, each with the given gate (or none)."""
    pulumi_project(folder)
    base = (PROJECT_DIR / "Pulumi.staging.yaml").read_text()
    for name, gate in gates.items():
        text = base.replace("matrix-staging", f"matrix-{name}")
        if gate is not None:
            text += f"  synapse:stagingGate: {gate}\n"
        (folder / f"Pulumi.{name}.yaml").write_text(text)
    return folder


def plan(folder: Path, stack: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synapse_workers", "plan", "--stack", stack, "-C", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_two_stacks_gated_on_each_other_are_refused(tmp_path: Path) -> None:
    folder = stacks(tmp_path, {"prod": "staging", "staging": "prod"})
    done = plan(folder, "prod")
    assert done.returncode == 2 and done.stdout == ""
    line = done.stderr.strip()
    assert "\n" not in line
    assert line.startswith("error: stack 'prod': synapse:stagingGate = \"staging\" is not allowed (a cycle of gates, ")
    assert "prod -> staging -> prod" in line


def test_scale_refuses_a_cycle_and_writes_nothing(tmp_path: Path) -> None:
    folder = stacks(tmp_path, {"prod": "staging", "staging": "prod"})
    before = (folder / "Pulumi.prod.yaml").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "synapse_workers", "scale", "--stack", "prod", "-C", str(folder), "--ccu", "900",
         "--reason", "cycle"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "prod -> staging -> prod" in done.stderr and done.stderr.count("\n") == 1
    assert (folder / "Pulumi.prod.yaml").read_bytes() == before
    assert not (folder / "scaling-history.yaml").exists()


def test_a_longer_cycle_is_named_whole(tmp_path: Path) -> None:
    folder = stacks(tmp_path, {"a": "b", "b": "organization/synapse-workers/c", "c": "a"})
    with pytest.raises(ConfigError, match="a cycle of gates, a -> b -> c -> a"):
        refuse_gate_cycle("a", "b", folder)


def test_a_chain_without_a_cycle_passes(tmp_path: Path) -> None:
    folder = stacks(tmp_path, {"prod": "staging", "staging": "dev", "dev": None})
    assert plan(folder, "prod").returncode == 0
    refuse_gate_cycle("prod", "staging", folder)  # and the function agrees
    refuse_gate_cycle("prod", "elsewhere", folder)  # a gate whose file is not here ends the search


def test_a_cycle_that_does_not_come_back_here_is_that_chains_business(tmp_path: Path) -> None:
    """prod -> staging -> dev -> staging: prod waits forever too, but the refusal belongs where the cycle
    is; prod names it all the same, from staging on."""
    folder = stacks(tmp_path, {"prod": "staging", "staging": "dev", "dev": "staging"})
    with pytest.raises(ConfigError, match="staging -> dev -> staging"):
        refuse_gate_cycle("prod", "staging", folder)


def test_the_program_refuses_a_cycle_before_registering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = stacks(tmp_path, {"prod": "staging", "staging": "prod"})
    monkeypatch.chdir(folder)  # under mocks Pulumi names no project folder: the program's own fallback
    values, secret_keys = read_stack_file("prod", folder / "Pulumi.prod.yaml")
    mocks = RecordingMocks()
    with pytest.raises(Exception, match="a cycle of gates, prod -> staging -> prod") as caught:
        run_program("prod", values, secret_keys, mocks=mocks)
    assert "\n" not in str(caught.value)
    assert [r for r in mocks.registered if not r.type.startswith("pulumi:")] == []
