"""The worker classes of the operators' guide, as one table of data.

Everything that differs between classes lives here, so sizing, topology, config generation and the
Pulumi components stay loops over this table instead of nine near-copies of the same code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["Deployment", "StatefulSet"]
Scaling = Literal["hpa", "manual"]
LoadFigure = Literal["ccu", "messagesPerSecond", "federatedServers"]

HA_FLOOR = 2
"""Every class runs at least two replicas for availability (the guide's examples give 2 at 100 CCU)."""


@dataclass(frozen=True)
class Resources:
    """Container requests and limits; the HPA needs CPU requests to compute utilisation."""

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str


@dataclass(frozen=True)
class DbPool:
    """One process's PostgreSQL pool (Synapse's `database.args.cp_min`/`cp_max`, handed to Twisted's
    adbapi): a thread per connection, at most `cp_max` open, so a process never holds more than that."""

    cp_min: int
    cp_max: int


@dataclass(frozen=True)
class WorkerClass:
    """One worker class: how the guide sizes it and how Synapse wires it."""

    name: str
    kind: Kind
    scaling: Scaling
    load: LoadFigure
    divisor: int
    guide_table: tuple[tuple[int, int], ...]
    """The guide's example rows as (load figure, replicas), for `sizing: guide-table`."""
    stream: str | None
    """The Synapse stream this class writes (`stream_writers` key), if any."""
    single_writer: bool
    """Synapse accepts exactly one writer for this stream (synapse/config/workers.py)."""
    hash_sharded: bool
    """Synapse shards work by a hash over this class's member list: membership changes must not overlap."""
    http_resources: tuple[str, ...]
    """Listener resources on the client port (8008); `/health` is served on every HTTP listener."""
    resources: Resources
    db_pool: DbPool
    """Default pool per process; the README says why each class gets what it gets."""
    monitoring: str
    """What the guide says to watch for this class."""

    @property
    def component(self) -> str:
        return self.name

    @property
    def workload_name(self) -> str:
        return f"synapse-{self.name}"

    @property
    def needs_instance_map(self) -> bool:
        """Stream writers are reached over HTTP replication, so every process must know their address."""
        return self.stream is not None


_SMALL = Resources("100m", "256Mi", "1", "1Gi")
_BUSY = Resources("500m", "512Mi", "2", "2Gi")

WORKER_CLASSES: tuple[WorkerClass, ...] = (
    WorkerClass(
        name="synchrotron",
        kind="Deployment",
        scaling="hpa",
        load="ccu",
        divisor=250,
        guide_table=((100, 2), (1000, 4), (5000, 8), (10000, 12), (20000, 16)),
        stream=None,
        single_writer=False,
        hash_sharded=False,
        http_resources=("client",),
        resources=_BUSY,
        db_pool=DbPool(1, 5),
        monitoring="CPU 60-70 %, /sync p95 < 500 ms, queue depth < 100",
    ),
    WorkerClass(
        name="generic-worker",
        kind="Deployment",
        scaling="hpa",
        load="ccu",
        divisor=300,
        guide_table=((100, 2), (1000, 4), (5000, 6), (10000, 8), (20000, 10)),
        stream=None,
        single_writer=False,
        hash_sharded=False,
        http_resources=("client",),
        resources=_BUSY,
        db_pool=DbPool(1, 5),
        monitoring="CPU 60-70 %, API p95 < 1 s, < 50 req/s per worker",
    ),
    WorkerClass(
        name="event-persister",
        kind="StatefulSet",
        scaling="manual",
        load="messagesPerSecond",
        divisor=50,
        # The guide lists these rows by CCU with the message rate beside them; keyed here by that rate.
        guide_table=((10, 2), (50, 2), (200, 3), (400, 4), (800, 4)),
        stream="events",
        single_writer=False,
        hash_sharded=True,
        http_resources=("health",),
        resources=_BUSY,
        db_pool=DbPool(2, 10),
        monitoring="DB write p95 < 50 ms, < 100 events/s per persister, DB pool < 80 %",
    ),
    WorkerClass(
        name="federation-sender",
        kind="StatefulSet",
        scaling="manual",
        load="federatedServers",
        divisor=50,
        guide_table=((1, 2), (50, 2), (100, 2), (200, 4), (500, 6)),
        stream=None,
        single_writer=False,
        hash_sharded=True,
        http_resources=("health",),
        resources=_BUSY,
        db_pool=DbPool(1, 5),
        monitoring="send queue < 1,000, outbound p95 < 5 s, failed sends < 1 %",
    ),
    WorkerClass(
        name="media-repository",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=1000,
        # The guide gives "2-3" at 5,000 CCU; the table takes the upper end.
        guide_table=((100, 2), (1000, 2), (5000, 3), (10000, 3), (20000, 4)),
        stream=None,
        single_writer=False,
        hash_sharded=False,
        http_resources=("media",),
        resources=_BUSY,
        db_pool=DbPool(1, 3),
        monitoring="1 MB transfer < 2 s, storage p95 < 500 ms, thumbnail queue < 50",
    ),
    WorkerClass(
        name="typing-writer",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=5000,
        guide_table=((100, 2), (5000, 2), (20000, 2)),
        stream="typing",
        single_writer=True,
        hash_sharded=False,
        http_resources=("client",),
        resources=_SMALL,
        db_pool=DbPool(1, 2),
        monitoring="stream latency < 100 ms, queue < 500 (typing lives in memory: no position to lag)",
    ),
    WorkerClass(
        name="todevice-writer",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=1000,
        guide_table=((100, 2), (5000, 2), (20000, 4)),
        stream="to_device",
        single_writer=True,
        hash_sharded=False,
        http_resources=("client",),
        resources=_SMALL,
        db_pool=DbPool(1, 3),
        monitoring="stream latency < 100 ms, queue < 500, replication lag < 1 s",
    ),
    WorkerClass(
        name="receipts-writer",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=2000,
        guide_table=((100, 2), (5000, 2), (20000, 3)),
        stream="receipts",
        single_writer=False,
        hash_sharded=False,
        http_resources=("client",),
        resources=_SMALL,
        db_pool=DbPool(1, 3),
        monitoring="stream latency < 100 ms, queue < 500, replication lag < 1 s",
    ),
    WorkerClass(
        name="presence-writer",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=3000,
        guide_table=((100, 2), (5000, 2), (20000, 3)),
        stream="presence",
        single_writer=True,
        hash_sharded=False,
        http_resources=("client",),
        resources=_SMALL,
        db_pool=DbPool(1, 3),
        monitoring="stream latency < 100 ms, queue < 500, replication lag < 1 s",
    ),
)

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in WORKER_CLASSES)
BY_NAME: dict[str, WorkerClass] = {c.name: c for c in WORKER_CLASSES}

MAIN_RESOURCES = Resources("1", "1Gi", "4", "4Gi")
MAIN_DB_POOL = DbPool(5, 10)
"""Synapse's documented example pool: main still runs background updates and every duty no worker takes."""
