"""`promote`'s sequencing with the Automation API replaced: no Pulumi CLI exists here or in CI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from synapse_workers.ops.promote import PromoteError, StackLike, automation_select, promote


@dataclass
class Value:
    value: Any


@dataclass
class FakeStack:
    name: str
    log: list[str]
    fail: str | None = None
    outputs_value: dict[str, Any] = field(default_factory=dict)

    def _step(self, action: str) -> None:
        self.log.append(f"{self.name}:{action}")
        if self.fail == action:
            raise RuntimeError(f"{action} exploded\nsecond line")

    def preview(self, on_output: Callable[[str], Any] | None = None) -> None:
        self._step("preview")

    def up(self, on_output: Callable[[str], Any] | None = None) -> None:
        self._step("up")

    def outputs(self) -> dict[str, Any]:
        self._step("outputs")
        return self.outputs_value


def selector(log: list[str], **stacks: FakeStack) -> Callable[[str], StackLike]:
    def select(name: str) -> StackLike:
        log.append(f"{name}:select")
        return stacks[name]

    return select


def healthy(name: str, log: list[str], revision: str = "r1", fail: str | None = None) -> FakeStack:
    return FakeStack(name, log, fail, {"revision": Value(revision), "replicas": Value({})})


def test_staging_then_prod_each_previewed_updated_and_checked() -> None:
    log: list[str] = []
    select = selector(log, staging=healthy("staging", log), prod=healthy("prod", log))
    steps = promote(select=select, say=lambda _line: None, revision="r1")
    assert log == [
        "staging:select",
        "staging:preview",
        "staging:up",
        "staging:outputs",
        "prod:select",
        "prod:preview",
        "prod:up",
        "prod:outputs",
    ]
    assert [s.stack for s in steps].count("prod") == 4


@pytest.mark.parametrize("failing", ["preview", "up"])
def test_a_failing_staging_step_stops_before_prod(failing: str) -> None:
    log: list[str] = []
    select = selector(log, staging=healthy("staging", log, fail=failing), prod=healthy("prod", log))
    with pytest.raises(PromoteError, match=f"staging: {failing} failed: {failing} exploded$"):
        promote(select=select, say=lambda _line: None, revision="r1")
    assert not any(entry.startswith("prod") for entry in log)


def test_staging_reporting_another_revision_stops_before_prod() -> None:
    log: list[str] = []
    select = selector(log, staging=healthy("staging", log, revision="old"), prod=healthy("prod", log))
    with pytest.raises(PromoteError, match="reports revision 'old', expected r1"):
        promote(select=select, say=lambda _line: None, revision="r1")
    assert "prod:select" not in log


def test_prod_failure_is_reported_after_staging_succeeded() -> None:
    log: list[str] = []
    select = selector(log, staging=healthy("staging", log), prod=healthy("prod", log, fail="up"))
    with pytest.raises(PromoteError, match="prod: up failed"):
        promote(select=select, say=lambda _line: None, revision="r1")
    assert log[-1] == "prod:up" and "staging:outputs" in log


def test_without_the_pulumi_cli_promote_stops_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Automation API needs the `pulumi` binary; with none on PATH the first step fails cleanly."""
    monkeypatch.setenv("PATH", str(tmp_path))
    select = partial(automation_select, program=lambda: None, work_dir=tmp_path)
    with pytest.raises(PromoteError, match="staging: select failed"):
        promote(order=["staging"], select=select, say=lambda _line: None, revision="r1")


def test_promote_outside_a_project_is_one_line(tmp_path: Path) -> None:
    """`promote` finds the project as the other commands do (it used to assume this checkout)."""
    done = subprocess.run(
        [sys.executable, "-m", "synapse_workers", "promote", "-C", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: synapse-workers: no Pulumi.yaml in {tmp_path}")
    assert done.stderr.count("\n") == 1
