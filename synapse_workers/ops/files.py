"""Writing the files an operator owns (stack files, the scaling history): under a lock, all or nothing.

Two `scale` runs at once, a full disk or a history that cannot be replaced must never leave a stack
file changed without its history record, half a file, or one run's change silently overwritten by
another's. So: one exclusive lock per project folder (the history is shared by every stack) held for
the whole read-change-write; every new file written beside its target and fsynced before anything is
renamed; the renames last, with the first file put back if a later rename fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

LOCK_FILE = ".synapse-workers.lock"
LOCK_WAIT_SECONDS = 30.0
LOCK_WAIT_VARIABLE = "SYNAPSE_WORKERS_LOCK_WAIT"
"""Seconds to wait for another run's lock, instead of 30 (for a script that would rather fail fast)."""


def lock_wait() -> float:
    """The wait for the lock: `SYNAPSE_WORKERS_LOCK_WAIT` when it is a number of seconds, else 30."""
    try:
        wait = float(os.environ.get(LOCK_WAIT_VARIABLE, LOCK_WAIT_SECONDS))
    except ValueError:
        return LOCK_WAIT_SECONDS
    return wait if math.isfinite(wait) and wait >= 0 else LOCK_WAIT_SECONDS


class WriteRefusedError(Exception):
    """Nothing was written: `problem` says why, in one line."""

    def __init__(self, stack: str, problem: str) -> None:
        self.stack = stack
        self.problem = problem
        super().__init__(f"stack '{stack}': {problem}; nothing was written")


@contextlib.contextmanager
def project_lock(folder: Path, stack: str, wait: float | None = None) -> Iterator[None]:
    """Hold the folder's lock for the block; wait at most `wait` seconds for another run to finish."""
    wait = lock_wait() if wait is None else wait
    path = folder / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise WriteRefusedError(stack, f"cannot open the lock file {path}: {error.strerror}") from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WriteRefusedError(
                        stack, f"another synapse-workers run held {path} for {wait:g} s; try again when it is done"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(path: Path, data: bytes) -> Path:
    """A fully written, fsynced sibling of `path`, with `path`'s permissions when it exists."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temp, path.stat().st_mode & 0o7777)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def replace_together(stack: str, files: Sequence[tuple[Path, bytes]]) -> None:
    """Replace every file with its new bytes, or none of them.

    Every temporary file is written and fsynced first (a full disk fails here, with nothing
    renamed). Each file but the last is hard-linked to a backup before the renames, so if a later
    rename fails the earlier ones are undone by renaming the backup back (no new data blocks needed).
    """
    temps: list[Path] = []
    backups: dict[Path, Path | None] = {}
    renamed: list[Path] = []
    current = files[0][0] if files else Path()
    try:
        for current, data in files:
            temps.append(_write_temp(current, data))
        for current, _ in files[:-1]:
            backup = current.with_name(f".{current.name}.{os.getpid()}.bak")
            backup.unlink(missing_ok=True)
            if current.exists():
                os.link(current, backup)
                backups[current] = backup
            else:
                backups[current] = None
        for (current, _), temp in zip(files, temps, strict=True):
            os.replace(temp, current)
            renamed.append(current)
    except OSError as error:
        for path in reversed(renamed):
            saved = backups.get(path)
            if saved is None:
                path.unlink(missing_ok=True)  # it did not exist before this write
            else:
                os.replace(saved, path)
        for temp in temps:
            temp.unlink(missing_ok=True)
        raise WriteRefusedError(stack, f"cannot write {current}: {error.strerror or error}") from None
    finally:
        for maybe in backups.values():
            if maybe is not None:
                maybe.unlink(missing_ok=True)
    # Both renames are done; make them durable. A failure here cannot be undone meaningfully (the
    # new files are already what a reader sees), so it is not turned into a refusal.
    for folder in {path.parent for path, _ in files}:
        with contextlib.suppress(OSError):
            _fsync_folder(folder)
