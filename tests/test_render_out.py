"""`render --out` owns only what it writes: a file or an unwritable folder is refused in one line with
nothing changed, a file someone else put under manifests/ or synapse/ is never deleted, and a new
render is swapped in whole from a temporary sibling (no half-written folder, nothing left behind)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from synapse_workers.cli.render import OWNED
from synapse_workers.model.stack_config import PROJECT_DIR

IN_CI = os.environ.get("CI") == "true"


def render(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synapse_workers", "render", "--stack", "staging", "--out", str(out), *extra],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)},
        check=False,
    )


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_refusal(done: subprocess.CompletedProcess[str], out: Path) -> str:
    assert done.returncode == 2, done.stdout
    assert done.stdout == ""
    assert done.stderr.startswith(f"error: stack 'staging': --out = \"{out}\" is not allowed ("), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    return done.stderr


def test_an_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out.yaml"
    out.write_text("mine\n")
    err = one_line_refusal(render(out), out)
    assert "it is a file, not a folder" in err
    assert out.read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.yaml"]


def test_an_out_below_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("mine\n")
    out = tmp_path / "file" / "out"
    err = one_line_refusal(render(out), out)
    assert "cannot write it: " in err
    assert tree(tmp_path) == {"file": b"mine\n"}


def test_a_render_replaces_its_own_files_and_keeps_everyone_elses(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert render(out).returncode == 0
    first = tree(out)
    assert OWNED in first and all(name.startswith(("manifests/", "synapse/")) for name in first if name != OWNED)
    (out / "NOTES.md").write_text("an operator's notes\n")
    # An object an earlier render wrote (it is in the list) that this render no longer makes: dropped.
    (out / "manifests" / "deployment-gone.yaml").write_text("kind: Deployment\n")
    with (out / OWNED).open("a") as listing:
        listing.write("manifests/deployment-gone.yaml\n")
    assert render(out, "--ccu", "800").returncode == 0
    second = tree(out)
    assert second["NOTES.md"] == b"an operator's notes\n"
    assert "manifests/deployment-gone.yaml" not in second
    assert {k: v for k, v in second.items() if k != "NOTES.md"} != first  # the new load changed something
    listed = set((out / OWNED).read_text().splitlines())
    assert listed == {n for n in second if n not in (OWNED, "NOTES.md")}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary sibling left


def test_a_file_render_did_not_write_is_never_deleted(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert render(out).returncode == 0
    (out / "manifests" / "hand-written.yaml").write_text("kind: ConfigMap\n")
    before = tree(out)
    err = one_line_refusal(render(out, "--ccu", "800"), out)
    assert "it holds files render did not write: manifests/hand-written.yaml" in err
    assert tree(out) == before


def test_a_folder_from_before_render_kept_a_list_is_not_emptied(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "synapse").mkdir(parents=True)
    (out / "synapse" / "synapse-main-0.yaml").write_text("old\n")
    err = one_line_refusal(render(out), out)
    assert "synapse/synapse-main-0.yaml" in err
    assert tree(out) == {"synapse/synapse-main-0.yaml": b"old\n"}


def test_an_unwritable_folder_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """An immutable output folder (`chattr +i`): nothing in it can be renamed or created."""
    out = tmp_path / "out"
    assert render(out).returncode == 0
    before = tree(out)
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        if IN_CI:
            pytest.fail("CI=true and chattr +i needs root and chattr")
        pytest.skip("chattr +i needs root and chattr")
    flagged = subprocess.run(["chattr", "+i", str(out)], capture_output=True, text=True, check=False)
    if flagged.returncode != 0:
        if IN_CI:
            pytest.fail(f"CI=true and chattr +i failed: {flagged.stderr.strip()}")
        pytest.skip(f"this file system takes no immutable flag: {flagged.stderr.strip()}")
    try:
        done = render(out, "--ccu", "800")
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=True)
    err = one_line_refusal(done, out)
    assert "cannot write it: Operation not permitted" in err
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
