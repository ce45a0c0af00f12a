"""The three load figures a stack is sized from, as one table: where each lives in the stack file, the
flags that give it on the command line, and how `recommend` steps it.

`plan`, `scale`, `recommend` and the history all loop over this table, so a figure is spelled once.
"""

from __future__ import annotations

from dataclasses import dataclass

from synapse_workers.model.worker_classes import FigureKey


@dataclass(frozen=True)
class LoadFigure:
    key: FigureKey
    """Its name in the plan's JSON, the history and `recommend`'s document."""
    path: tuple[str, ...]
    """Where it lives under the `synapse:` namespace (`federation.servers` is inside an object)."""
    attr: str
    """Its field on `Load`, on `Measured` and on a `LoadChange`."""
    flag: str
    """The flag that sets it (`scale`, `plan`, `render`, the command `recommend` proposes)."""
    whole: bool
    """A whole number (users, servers), where the message rate may be fractional."""
    min_step: int
    """`recommend` never proposes a change smaller than this (see its step rule)."""
    needs_federation: bool = False
    """Only meaningful, and only accepted, while federation is enabled."""

    @property
    def config_key(self) -> str:
        return ".".join(self.path)

    @property
    def whatif_flag(self) -> str:
        """`plan`'s what-if: `--to-ccu` compares the stack with this figure changed."""
        return "--to-" + self.flag.removeprefix("--")


LOAD_FIGURES: tuple[LoadFigure, ...] = (
    LoadFigure("ccu", ("ccu",), "ccu", "--ccu", whole=True, min_step=10),
    LoadFigure(
        "messagesPerSecond",
        ("messagesPerSecond",),
        "messages_per_second",
        "--messages-per-second",
        whole=False,
        min_step=1,
    ),
    LoadFigure(
        "federatedServers",
        ("federation", "servers"),
        "federated_servers",
        "--federated-servers",
        whole=True,
        min_step=1,
        needs_federation=True,
    ),
)

BY_KEY: dict[FigureKey, LoadFigure] = {f.key: f for f in LOAD_FIGURES}


def in_use(federation_enabled: bool) -> tuple[LoadFigure, ...]:
    """The figures a stack is sized from: the server count only while federation is on."""
    return tuple(f for f in LOAD_FIGURES if federation_enabled or not f.needs_federation)
