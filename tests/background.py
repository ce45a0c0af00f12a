"""Threads a test runs beside what it drives (a sender, a sampler, long-polling clients, an API watcher):
each runs until `stop` is set; they start on entering the `with` block and are stopped and joined on
leaving it, whatever the block did."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Self


class Background:
    def __init__(self, targets: Sequence[Callable[[], None]], join_timeout: float = 30) -> None:
        """`targets`: one thread each; they should return soon after `stop` is set."""
        self.stop = threading.Event()
        self.join_timeout = join_timeout
        self.threads = [threading.Thread(target=target, daemon=True) for target in targets]

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=self.join_timeout)
