"""Refactors change nothing a user or the cluster sees: this tree renders and plans byte for byte as the
baseline commit does, for the shipped stacks and a corpus of varied ones (`tests/data/render-corpus`).

One value is masked: the `synapse-workers/revision` annotation, a digest of the program's own source
(ops/revision.py) that the guards compare between stacks, which every commit changes by design.

The baseline is the last commit whose output was meant to change. A commit that changes output on
purpose is followed by one that moves `BASELINE` to it (with the reason in its message), so every
commit in between is proven to be a pure restructuring.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "d02ef89eac43258a87ce021ecdda52dd1b77baa5"
"""Autoscaled pods drain before they stop (a preStop), and the router drops a vanished pod sooner."""
REVISION = re.compile(rb"(synapse-workers/revision: )[0-9a-f]{16}")


def _git(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, check=False)


def _baseline_tree(into: Path) -> None:
    if _git("cat-file", "-e", f"{BASELINE}^{{commit}}").returncode != 0:
        message = f"baseline commit {BASELINE} is not in this clone (a shallow clone?): fetch the history"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    archive = _git("archive", BASELINE)
    assert archive.returncode == 0, archive.stderr.decode()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def _working_tree(into: Path) -> None:
    """The files git would commit now (tracked and new, ignored ones left out)."""
    listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, into / name)


def _render(project: Path, out: Path) -> dict[str, bytes]:
    out.mkdir()
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "render_corpus.py"), str(project), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    files = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    masked = {name: REVISION.sub(rb"\1<program revision>", text) for name, text in files.items()}
    assert sum(masked[name] != files[name] for name in files) > 10, "no revision annotation to mask"
    return masked


def test_every_stack_renders_and_plans_as_the_baseline_does(tmp_path: Path) -> None:
    base, head = tmp_path / "base", tmp_path / "head"
    base.mkdir()
    head.mkdir()
    _baseline_tree(base)
    _working_tree(head)
    before = _render(base, tmp_path / "out-base")
    after = _render(head, tmp_path / "out-head")

    # The corpus really exercised the program: every stack rendered objects, and one was refused.
    assert sum(name.startswith("render/") for name in before) > 500
    assert any(b"is not allowed" in text for name, text in before.items() if name.startswith("refused/"))

    assert sorted(before) == sorted(after), "the set of files differs"
    changed = [name for name in before if before[name] != after[name]]
    shown = "".join(
        "".join(
            difflib.unified_diff(
                before[name].decode().splitlines(keepends=True),
                after[name].decode().splitlines(keepends=True),
                f"baseline/{name}",
                f"now/{name}",
                n=1,
            )
        )[:2000]
        for name in changed[:3]
    )
    assert not changed, f"{len(changed)} files differ from the baseline, e.g.:\n{shown}"
