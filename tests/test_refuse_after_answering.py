"""`plan` (and its what-if) and `recommend` answer first and refuse after: a plan or proposal over the
capacity budget is printed whole, then the refusal (with what would make it fit) on one line of
stderr, exit 2; `--json` carries the refusal. `render` and `scale`, which write, still refuse first."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from synapse_workers.model.stack_config import PROJECT_DIR
from tests import test_recommend
from tests.test_recommend import Answers, recommend_args, run, write_stack

serve = test_recommend.serve
"""The recorded-answers Prometheus fixture, shared."""

REFUSAL = "error: stack 'staging': synapse:postgres.maxConnections = 200 is not allowed ("
"""Staging's PostgreSQL allows 190 connections: 5,000 CCU needs 548 at the HPA maximums (the schema Job's
one among them)."""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synapse_workers", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)},
        check=False,
    )


def refused_after(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(REFUSAL), line
    assert "allowed: at least 558 (548 + 10 reserved)" in line and "pooler.enabled" in line


@pytest.mark.parametrize("how", [["--to-ccu", "5000"], ["--ccu", "5000"]], ids=["what-if", "in-place-of"])
def test_plan_over_the_budget_prints_the_whole_plan_then_refuses(how: list[str]) -> None:
    done = cli("plan", "--stack", "staging", *how)
    refused_after(done)
    row = next(line for line in done.stdout.splitlines() if line.startswith("synchrotron "))
    # The plan at 5,000 CCU is all there: synchrotrons at ceil(5000 / 250).
    assert str(math.ceil(5000 / 250)) in row.split()
    assert "548 of 190 allowed" in done.stdout
    if how[0] == "--to-ccu":
        assert "budget after" in done.stdout


def test_plan_json_carries_the_refusal() -> None:
    done = cli("plan", "--stack", "staging", "--json", "--to-ccu", "5000")
    refused_after(done)
    document = json.loads(done.stdout)
    assert document["load"]["ccu"] == 5000 and "changes" in document
    (refusal,) = document["refused"]
    assert "error: " + refusal == done.stderr.strip()


def test_a_plan_that_fits_answers_without_a_refusal() -> None:
    """The control: the same what-if within the budget."""
    done = cli("plan", "--stack", "staging", "--json", "--to-ccu", "600")
    assert done.returncode == 0 and done.stderr == ""
    assert "refused" not in json.loads(done.stdout)


def test_render_still_refuses_before_writing(tmp_path: Path) -> None:
    done = cli("render", "--stack", "staging", "--ccu", "5000", "--out", str(tmp_path / "out"))
    refused_after(done)
    assert done.stdout == ""
    assert not (tmp_path / "out").exists()


def test_recommend_prints_a_proposal_over_the_budget_then_refuses(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_stack(tmp_path, postgres={"host": "pg.example.org", "maxConnections": 200})
    url = serve(Answers(plan, {"ccu": 5000, "messagesPerSecond": 50, "knownServers": 101}))
    code, out, err = run(recommend_args(tmp_path, url, "--json"), capsys)
    assert code == 2
    document = json.loads(out)
    # By hand: 1,000 CCU moves in steps of 100, so a peak of 5,000 proposes 5,000.
    assert document["recommended"]["changes"]["ccu"]["to"] == 5000
    assert document["whatIf"]["changes"]["synchrotron"]["new"]["replicas"] == math.ceil(5000 / 250)
    assert "synapse:postgres.maxConnections = 200 is not allowed" in document["refused"]
    (line,) = err.strip().splitlines()
    assert line == f"error: the proposal does not fit: {document['refused']}"
    code, table, err = run(recommend_args(tmp_path, url), capsys)
    assert code == 2 and table.strip() and err.strip() == line
