"""An installed copy (not editable, not this checkout) finds the project as `pulumi` does: the nearest
`Pulumi.yaml` from the current folder upward, or `-C/--cwd DIR`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from synapse_workers.model.stack_config import PROJECT_DIR


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install --no-deps .` of a clean copy of the tracked files into a folder of its own (the
    project venv's Python supplies the dependencies; pip builds the wheel with the setuptools
    pyproject.toml names, from PyPI or pip's cache); returns that folder."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_DIR, capture_output=True, check=True).stdout.split(
        b"\0"
    )
    for name in filter(None, tracked):
        path = Path(name.decode())
        if (PROJECT_DIR / path).is_file():
            (source / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_DIR / path, source / path)
    target = root / "site"
    pip = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps"]
    subprocess.run(
        [*pip, "--target", str(target), str(source)],
        check=True,
        capture_output=True,
    )
    shutil.rmtree(source)
    return target


def command(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [str(site / "bin" / "synapse-workers"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(site)},
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml"):
        shutil.copy(PROJECT_DIR / name, tmp_path / name)
    (tmp_path / "deeper" / "still").mkdir(parents=True)
    return tmp_path


def test_the_installed_copy_is_the_one_running(installed: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import synapse_workers; print(synapse_workers.__file__)"],
        capture_output=True,
        text=True,
        cwd=installed.parent,  # as the commands run: from a project folder, not from this checkout
        env={**os.environ, "PYTHONPATH": str(installed)},
        check=True,
    )
    assert done.stdout.strip() == str(installed / "synapse_workers" / "__init__.py")


@pytest.mark.parametrize("where", ["project", "subfolder"])
def test_plan_from_a_project_folder_or_below_it(installed: Path, project: Path, where: str) -> None:
    cwd = project if where == "project" else project / "deeper" / "still"
    done = command(installed, cwd, "plan", "--stack", "staging")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Stack staging: 500 CCU")


def test_plan_with_cwd_as_pulumi_spells_it(
    installed: Path, project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    for args in (
        ["-C", str(project), "plan", "--stack", "staging"],
        ["plan", "--stack", "staging", "--cwd", str(project)],
    ):
        done = command(installed, elsewhere, *args)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Stack staging: 500 CCU")


def test_outside_any_project_is_one_line(installed: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    done = command(installed, elsewhere, "plan", "--stack", "staging")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip() == (
        f"error: synapse-workers: no Pulumi.yaml in {elsewhere} or any folder above it; "
        "run it in the project's folder, or give -C/--cwd DIR as for pulumi"
    )
    done = command(installed, elsewhere, "-C", str(elsewhere / "nope"), "plan", "--stack", "staging")
    assert done.returncode == 2 and "No such file or directory" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cwd_holds_only_for_the_command(tmp_path: Path) -> None:
    """`main` called in-process (as the tests and a wrapper script do) leaves the caller's folder as it was."""
    from synapse_workers.cli.main import main  # noqa: PLC0415

    before = Path.cwd()
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml"):
        shutil.copy(PROJECT_DIR / name, tmp_path / name)
    assert main(["-C", str(tmp_path), "plan", "--stack", "staging", "--json"]) == 0
    assert main(["-C", str(tmp_path / "missing"), "plan", "--stack", "staging"]) == 2
    assert Path.cwd() == before
