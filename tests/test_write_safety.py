"""`scale` writes the stack file and the history all or nothing, under a lock: concurrent runs lose no
change, a full disk or a history that cannot be replaced leaves both files byte for byte as they were,
and bytes outside the edited values (line endings, markers, indentation, comments) are kept."""

from __future__ import annotations

import concurrent.futures
import fcntl
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from synapse_workers.model.stack_config import PROJECT_DIR
from synapse_workers.ops.files import LOCK_FILE, WriteRefusedError, replace_together
from tests.conftest import pulumi_project

IN_CI = os.environ.get("CI") == "true"


def scale(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synapse_workers", "scale", "-C", str(project), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_DIR), **(env or {})},
        check=False,
    )


def missing(what: str) -> None:
    """Outside CI a machine without the capability skips (and says so); in CI it is a failure."""
    if IN_CI:
        pytest.fail(f"CI=true and {what}")
    pytest.skip(what)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(PROJECT_DIR / "Pulumi.prod.yaml", tmp_path / "Pulumi.prod.yaml")
    shutil.copy(PROJECT_DIR / "scaling-history.yaml", tmp_path / "scaling-history.yaml")
    return pulumi_project(tmp_path)


def snapshot(project: Path) -> dict[str, bytes]:
    return {name: (project / name).read_bytes() for name in ("Pulumi.prod.yaml", "scaling-history.yaml")}


def leftovers(project: Path) -> list[str]:
    """Temporary or backup files a write left behind (the lock file is meant to stay)."""
    return sorted(p.name for p in project.iterdir() if p.name.startswith(".") and p.name != LOCK_FILE)


def test_ten_concurrent_runs_each_land_in_the_file_and_the_history(project: Path) -> None:
    """Ten runs at once, each pinning event persisters to a different count: every run that exits 0
    has its record, the records chain (each starts where the one before ended, so no run read a file
    another was about to replace), and the file holds the last record's value."""
    counts = list(range(3, 13))  # prod sizes 16 event persisters, so every pin is a change

    def run(n: int) -> tuple[int, subprocess.CompletedProcess[str]]:
        return n, scale(project, "--stack", "prod", "--pin", f"event-persister={n}", "--reason", f"run {n}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(counts)) as pool:
        results = list(pool.map(run, counts))
    succeeded = [n for n, done in results if done.returncode == 0]
    for _, done in results:
        if done.returncode != 0:
            assert done.returncode == 2, done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert "another synapse-workers run held" in done.stderr
    assert succeeded, [done.stderr for _, done in results]
    history = yaml.safe_load((project / "scaling-history.yaml").read_text())
    records = [r for r in history if r.get("reason", "").startswith("run ")]
    assert sorted(r["reason"] for r in records) == sorted(f"run {n}" for n in succeeded)
    chain = [r["replicas"]["event-persister"].split(" -> ") for r in records]
    assert chain[0][0] == "16"
    for (_, to), (frm, _) in itertools.pairwise(chain):
        assert frm == to
    assert [int(to) for _, to in chain] == [r["pins"]["event-persister"] for r in records]
    stack = yaml.safe_load((project / "Pulumi.prod.yaml").read_text())
    assert stack["config"]["synapse:workers"]["event-persister"]["replicas"] == int(chain[-1][1])
    assert leftovers(project) == []


def test_a_held_lock_is_waited_for_then_refused_in_one_line(project: Path) -> None:
    before = snapshot(project)
    fd = os.open(project / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        done = scale(
            project, "--stack", "prod", "--ccu", "25000", "--reason", "r", env={"SYNAPSE_WORKERS_LOCK_WAIT": "1"}
        )
    finally:
        os.close(fd)
    assert done.returncode == 2
    assert done.stderr.startswith("error: stack 'prod': another synapse-workers run held ")
    assert "nothing was written" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert snapshot(project) == before
    assert scale(project, "--stack", "prod", "--ccu", "25000", "--reason", "r").returncode == 0


FULL_DISK = r"""
set -eu
mount -t tmpfs -o size={size},mode=0755 tmpfs "$DIR"
trap 'umount "$DIR"' EXIT
cp "$SRC/Pulumi.yaml" "$SRC/Pulumi.prod.yaml" "$SRC/scaling-history.yaml" "$DIR/"
: > "$DIR/{lock}"
sha256sum "$DIR/Pulumi.prod.yaml" "$DIR/scaling-history.yaml" > "$OUT/before"
dd if=/dev/zero of="$DIR/filler" bs=4096 2>/dev/null || true
truncate -s -{free} "$DIR/filler"
set +e
"$PY" -m synapse_workers scale -C "$DIR" --stack prod --ccu 25000 --reason full \
    > "$OUT/stdout" 2> "$OUT/stderr"
echo $? > "$OUT/rc"
sha256sum "$DIR/Pulumi.prod.yaml" "$DIR/scaling-history.yaml" > "$OUT/after"
ls -a "$DIR" > "$OUT/listing"
"""


@pytest.mark.parametrize("free_pages", [0, 1], ids=["no-space", "space-for-the-stack-file-only"])
def test_a_full_disk_changes_neither_file(tmp_path: Path, free_pages: int) -> None:
    """On a tiny tmpfs in a private mount namespace: with no space, the first temporary file fails;
    with one page free, the stack file's temporary file fits and the history's does not."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        missing("mounting a tmpfs needs root and unshare")
    assert len((PROJECT_DIR / "Pulumi.prod.yaml").read_bytes()) <= 4096  # one page holds the stack file
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    script = FULL_DISK.format(size="64k", lock=LOCK_FILE, free=free_pages * 4096)
    env = {**os.environ, "DIR": str(disk), "SRC": str(PROJECT_DIR), "OUT": str(out), "PY": sys.executable}
    env["PYTHONPATH"] = str(PROJECT_DIR)
    ran = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "bash", "-c", script],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if ran.returncode != 0 and "Operation not permitted" in ran.stderr:
        missing(f"no permission to mount a tmpfs: {ran.stderr.strip()}")
    assert ran.returncode == 0, ran.stderr
    stderr = (out / "stderr").read_text()
    assert (out / "rc").read_text().strip() == "2", stderr
    failed = "scaling-history.yaml" if free_pages else "Pulumi.prod.yaml"
    assert stderr.startswith(f"error: stack 'prod': cannot write {disk / failed}: No space left on device")
    assert "No space left on device" in stderr and "nothing was written" in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert (out / "stdout").read_text() == ""
    # The hashes name the files by their (same) paths, so the comparison is of the content alone.
    assert (out / "after").read_text() == (out / "before").read_text()
    before = {line.split()[1] for line in (out / "before").read_text().splitlines()}
    assert len(before) == 2
    listing = set((out / "listing").read_text().split())
    assert listing == {".", "..", LOCK_FILE, "Pulumi.yaml", "Pulumi.prod.yaml", "scaling-history.yaml", "filler"}
    assert not any(p.name != "disk" for p in tmp_path.glob("disk/*"))  # the mount never reached this namespace


def test_a_history_that_cannot_be_replaced_leaves_the_stack_file_as_it_was(project: Path) -> None:
    """An immutable history (`chattr +i`): readable, but renaming onto it fails after the stack file
    was already renamed into place, so the stack file must be put back."""
    history = project / "scaling-history.yaml"
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        missing("chattr +i needs root and chattr")
    set_flag = subprocess.run(["chattr", "+i", str(history)], capture_output=True, text=True, check=False)
    if set_flag.returncode != 0:
        missing(f"this file system takes no immutable flag: {set_flag.stderr.strip()}")
    try:
        before = snapshot(project)
        done = scale(project, "--stack", "prod", "--ccu", "25000", "--reason", "immutable history")
        after = snapshot(project)
    finally:
        subprocess.run(["chattr", "-i", str(history)], check=True)
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith(f"error: stack 'prod': cannot write {history}: Operation not permitted")
    assert len(done.stderr.strip().splitlines()) == 1
    assert after == before
    assert leftovers(project) == []


def test_a_history_that_cannot_be_read_is_refused_before_anything_is_written(project: Path) -> None:
    history = project / "scaling-history.yaml"
    history.unlink()
    history.mkdir()
    before = (project / "Pulumi.prod.yaml").read_bytes()
    done = scale(project, "--stack", "prod", "--ccu", "25000", "--reason", "r")
    assert done.returncode == 2
    assert f"cannot read {history}" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert (project / "Pulumi.prod.yaml").read_bytes() == before
    assert list(history.iterdir()) == []


def test_a_failed_second_rename_puts_the_first_file_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_bytes(b"a: 1\n")
    second.write_bytes(b"b: 1\n")
    real_replace = os.replace
    calls: list[str] = []

    def failing_second(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(str(dst))
        if Path(dst) == second:
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_second)
    with pytest.raises(WriteRefusedError, match=r"cannot write .*b\.yaml: Input/output error; nothing was written"):
        replace_together("t", [(first, b"a: 2\n"), (second, b"b: 2\n")])
    assert (first.read_bytes(), second.read_bytes()) == (b"a: 1\n", b"b: 1\n")
    assert calls[:2] == [str(first), str(second)]  # the first rename had happened
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.yaml", "b.yaml"]


ORIGINAL = (PROJECT_DIR / "Pulumi.prod.yaml").read_text()


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(ORIGINAL.replace("\n", "\r\n"), id="crlf"),
        pytest.param("---\n" + ORIGINAL + "...\n", id="document-markers"),
        pytest.param(ORIGINAL.replace("\n  ", "\n    "), id="four-space-indent"),
        pytest.param(ORIGINAL.replace('synapse:ccu: "20000"', "synapse:ccu: '20000'   # the load"), id="comment"),
    ],
)
def test_bytes_outside_the_edited_values_are_kept(project: Path, variant: str) -> None:
    (project / "Pulumi.prod.yaml").write_bytes(variant.encode())
    done = scale(project, "--stack", "prod", "--ccu", "25000", "--pin", "receipts-writer=4", "--reason", "r")
    assert done.returncode == 0, done.stderr
    after = (project / "Pulumi.prod.yaml").read_bytes().decode()
    old_lines, new_lines = variant.splitlines(keepends=True), after.splitlines(keepends=True)
    changed = [i for i, line in enumerate(old_lines) if line.lstrip().startswith("synapse:ccu:")]
    assert len(changed) == 1
    kept = len(old_lines) - 1 if variant.endswith("...\n") else len(old_lines)
    # Every line but the CCU line is the same, byte for byte, in the same place; the pin comes after
    # them (before the end marker, when there is one).
    for i in range(kept):
        if i not in changed:
            assert new_lines[i] == old_lines[i], (i, old_lines[i])
    ending = "\r\n" if variant.count("\r\n") else "\n"
    assert "25000" in new_lines[changed[0]] and new_lines[changed[0]].endswith(ending)
    assert "# the load" in new_lines[changed[0]] or "# the load" not in variant
    added = new_lines[kept : kept + 3]
    assert [line.strip() for line in added] == ["synapse:workers:", "receipts-writer:", "replicas: 4"]
    assert all(line.endswith(ending) for line in added)
    assert new_lines[kept + 3 :] == old_lines[kept:]
    config = yaml.safe_load(after)["config"]
    assert str(config["synapse:ccu"]) == "25000"
    assert config["synapse:workers"] == {"receipts-writer": {"replicas": 4}}
