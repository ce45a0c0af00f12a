"""Stack files that are not what they seem are refused in one line, before anything reads them as YAML:
a FIFO (reading would block), a device (reading would never end), a folder, a file too large to be a
stack file, bytes that are not UTF-8, and YAML that Pulumi itself refuses. The YAML rules themselves are
compared with the Pulumi CLI in tests/engine/test_stack_yaml.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from synapse_workers.model.stack_config import MAX_STACK_FILE, StackFileError, read_stack_file
from synapse_workers.model.stack_yaml import MAX_NODES, cli_text, go_float, load

PROJECT = "name: synapse-workers\nruntime: python\n"


def refusal(path: Path) -> str:
    with pytest.raises(StackFileError) as caught:
        read_stack_file("x", path)
    text = str(caught.value)
    assert text.startswith(f"stack 'x': {path}: ") and "\n" not in text
    return text


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.x.yaml"
    os.mkfifo(path)
    assert refusal(path).endswith("not a regular file")


def test_a_device_and_a_folder_are_refused(tmp_path: Path) -> None:
    device = tmp_path / "Pulumi.x.yaml"
    device.symlink_to("/dev/zero")
    assert refusal(device).endswith("not a regular file")
    folder = tmp_path / "folder" / "Pulumi.x.yaml"
    folder.mkdir(parents=True)
    assert refusal(folder).endswith("not a regular file")


def test_a_file_too_large_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.x.yaml"
    with path.open("wb") as handle:
        handle.truncate(MAX_STACK_FILE + 1)
    assert "over the 4,194,304 a stack file may have" in refusal(path)


def test_bytes_that_are_not_utf8_are_refused_with_where(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_bytes(b"config:\n  synapse:ccu: \xff\xfe\n")
    assert refusal(path).endswith("not UTF-8 (byte 23)")


def test_a_duplicate_key_is_refused_where_pyyaml_let_the_last_win(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text("config:\n  synapse:ccu: 100\n  synapse:ccu: 5000\n")
    assert "line 3: key 'synapse:ccu' already defined at line 2" in refusal(path)


def test_yaml11_spellings_stay_text_as_pulumi_passes_them(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text("config:\n  synapse:a: on\n  synapse:b: 8:20\n  synapse:c: 0777\n  synapse:d: 1e3\n")
    values, _ = read_stack_file("x", path)
    assert values == {"synapse:a": "on", "synapse:b": "8:20", "synapse:c": "511", "synapse:d": "1000"}


def test_an_alias_bomb_is_refused_not_expanded() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for level in "bcdefgh":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [{', '.join([f'*{previous}'] * 10)}]")
    with pytest.raises(ValueError, match=f"past {MAX_NODES:,} values"):
        load("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    ("value", "text"),
    [(1e-7, "1e-7"), (1e-6, "0.000001"), (1e20, "100000000000000000000"), (1e21, "1e+21"), (0.1, "0.1"),
     (1.0, "1"), (-2.5e-9, "-2.5e-9"), (123456789012345678901234.0, "1.2345678901234569e+23")],
)  # fmt: skip
def test_floats_print_as_go_prints_them(value: float, text: str) -> None:
    """Figures read off the CLI's own output (tests/engine/test_stack_yaml.py compares them live)."""
    assert go_float(value) == text


def test_objects_are_go_json() -> None:
    assert cli_text({"b": [1.0, None, True], "a": "<&>"}) == '{"a":"\\u003c\\u0026\\u003e","b":[1,null,true]}'


def test_plan_refuses_a_bad_stack_file_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text(PROJECT)
    (tmp_path / "Pulumi.x.yaml").write_text("config:\n  synapse:ccu: 1\n  synapse:ccu: 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "synapse_workers", "plan", "--stack", "x", "-C", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "already defined at line 2" in done.stderr, done.stderr
    assert done.stdout == ""
