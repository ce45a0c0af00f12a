"""The worker classes, as one table of data: the guide's nine, then the duties taken off main.

Everything that differs between classes lives here, so sizing, topology, config generation, the router,
monitoring and the Pulumi components stay loops over this table instead of near-copies of the same code.
A new class is one row here (plus its routes in `synapse/routing.py` if it serves HTTP). Main is not a
row but one record, `MAIN`, carrying every name Synapse and Kubernetes know it by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["Deployment", "StatefulSet"]
Scaling = Literal["hpa", "manual"]
FigureKey = Literal["ccu", "messagesPerSecond", "federatedServers"]
Duty = Literal[
    "pusher_instances",
    "run_background_tasks_on",
    "update_user_directory_from_worker",
    "notify_appservices_from_worker",
    "federation_sender_instances",
    "media_instance_running_background_jobs",
]
"""The shared-config key by which Synapse hands one of main's duties to named workers
(synapse/config/workers.py, synapse/config/repository.py)."""
Balance = Literal["hash", "roundrobin"]
"""How the router spreads a class's requests over its pods: `hash` on the route's balance key (a user,
a room, an origin server: see `synapse/routing.py`), or round robin."""
Signal = Literal["sync-latency", "client-latency", "persister-rate", "federation-queue", "stream-lag", "cpu"]
"""What shows first that a class needs scaling: the alert `plan` tells the operator to watch, and
what `recommend` checks beside CPU (the PromQL for each lives in `kube/queries.py`)."""

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
    load: FigureKey
    divisor: int
    guide_table: tuple[tuple[int, int], ...]
    """The guide's example rows as (load figure, replicas), for `sizing: guide-table`."""
    stream: str | None
    """The Synapse stream this class writes (`stream_writers` key), if any."""
    exactly_one: bool
    """Synapse accepts exactly one instance: the stream's only writer or the duty's only runner
    (synapse/config/workers.py refuses more, or runs the duty on one name only)."""
    hash_sharded: bool
    """Synapse shards work by a hash over this class's member list: membership changes must not overlap."""
    http_resources: tuple[str, ...]
    """Listener resources on the client port (8008); `/health` is served on every HTTP listener."""
    resources: Resources
    db_pool: DbPool
    """Default pool per process; the README says why each class gets what it gets."""
    monitoring: str
    """What the guide says to watch for this class."""
    duty: Duty | None = None
    """The main-process duty this class takes over, by its shared-config key."""
    duty_on_every_pod: bool = False
    """The duty's key names every pod (a list, the work hash-sharded over it), not only the first pod."""
    duty_without_pods: bool = False
    """Write the duty's key even when the class runs no pod: an empty list then hands the duty to no
    process (federation off: nobody sends), where an absent key would leave it on main."""
    balance: Balance = "roundrobin"
    metrics_stream: str | None = None
    """The `stream_name` under which Synapse reports this class's stream position, where it exports one
    (the names the stream ID generators register, synapse/storage/databases/main/*.py; presence's is
    `presence_stream`, not `presence`). Typing lives in memory, with no position to export: None."""
    signal: Signal | None = None
    """What shows this class needs scaling; None: its stream's replication lag where it has a
    `metrics_stream`, else its CPU."""
    serves_federation: bool = False
    """Also serves the federation API on its client listener while federation is enabled."""
    session_database: bool = False
    """Runs work that sets PostgreSQL session state (background updates and tasks: autocommit and
    `SET SESSION statement_timeout = 0` around `CREATE INDEX CONCURRENTLY`,
    synapse/storage/background_updates.py). PgBouncer's transaction mode would spread those statements
    over server connections, so this class connects to PostgreSQL directly (counted in the budget)."""
    from_phase: int | None = None
    """Beyond the guide: deployed by default only from this guide phase on (None: one of the guide's
    nine, always deployed). Below it the duty stays on main; a stack pin of 0 turns it off anywhere."""
    default_off: str | None = None
    """Beyond the guide, and off unless pinned: why (the plan prints it)."""

    @property
    def beyond_guide(self) -> bool:
        return self.from_phase is not None or self.default_off is not None

    @property
    def why_one(self) -> str:
        """Why Synapse takes exactly one instance of this class, for errors and plan notes."""
        if self.stream is not None:
            return f"Synapse accepts exactly one writer for the `{self.stream}` stream"
        return f"Synapse runs this duty on the one instance `{self.duty}` names"

    @property
    def workload_name(self) -> str:
        return f"synapse-{self.name}"

    first_pod_writes: str | None = None
    """A stream only this class's first pod writes (with main, which backfills it): pod 0 alone, so
    scaling the class never changes the shared writer list (and restarts nothing)."""

    @property
    def needs_instance_map(self) -> bool:
        """Stream writers are reached over HTTP replication, so every process must know their address."""
        return self.stream is not None or self.first_pod_writes is not None

    @property
    def serves_media(self) -> bool:
        """Loads the media repository (`enable_media_repo`) and mounts the shared media store."""
        return "media" in self.http_resources

    @property
    def needs_federation(self) -> bool:
        """Sized on the federated-server count, so it exists only while federation is enabled."""
        return self.load == "federatedServers"

    @property
    def watch(self) -> Signal:
        if self.signal is not None:
            return self.signal
        return "stream-lag" if self.metrics_stream is not None else "cpu"


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
        exactly_one=False,
        hash_sharded=False,
        http_resources=("client",),
        resources=_BUSY,
        db_pool=DbPool(1, 5),
        monitoring="CPU 60-70 %, /sync p95 < 500 ms, queue depth < 100",
        balance="hash",
        signal="sync-latency",
    ),
    WorkerClass(
        name="generic-worker",
        kind="Deployment",
        scaling="hpa",
        load="ccu",
        divisor=300,
        guide_table=((100, 2), (1000, 4), (5000, 6), (10000, 8), (20000, 10)),
        stream=None,
        exactly_one=False,
        hash_sharded=False,
        http_resources=("client",),
        resources=_BUSY,
        db_pool=DbPool(1, 5),
        monitoring="CPU 60-70 %, API p95 < 1 s, < 50 req/s per worker",
        balance="hash",
        signal="client-latency",
        serves_federation=True,
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
        exactly_one=False,
        hash_sharded=True,
        http_resources=("health",),
        resources=_BUSY,
        db_pool=DbPool(2, 10),
        monitoring="DB write p95 < 50 ms, < 100 events/s per persister, DB pool < 80 %",
        metrics_stream="events",
        signal="persister-rate",
    ),
    WorkerClass(
        name="federation-sender",
        kind="StatefulSet",
        scaling="manual",
        load="federatedServers",
        divisor=50,
        guide_table=((1, 2), (50, 2), (100, 2), (200, 4), (500, 6)),
        stream=None,
        exactly_one=False,
        hash_sharded=True,
        http_resources=("health",),
        resources=_BUSY,
        db_pool=DbPool(1, 5),
        monitoring="send queue < 1,000, outbound p95 < 5 s, failed sends < 1 %",
        signal="federation-queue",
        duty="federation_sender_instances",
        duty_on_every_pod=True,
        duty_without_pods=True,
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
        exactly_one=False,
        hash_sharded=False,
        http_resources=("media",),
        resources=_BUSY,
        db_pool=DbPool(1, 3),
        monitoring="1 MB transfer < 2 s, storage p95 < 500 ms, thumbnail queue < 50",
        duty="media_instance_running_background_jobs",
        # Only media processes serve the media admin API, and its quarantine writes assert that the
        # process writes this stream (synapse/storage/databases/main/room.py).
        first_pod_writes="quarantined_media_changes",
    ),
    WorkerClass(
        name="typing-writer",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=5000,
        guide_table=((100, 2), (5000, 2), (20000, 2)),
        stream="typing",
        exactly_one=True,
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
        exactly_one=True,
        hash_sharded=False,
        http_resources=("client",),
        resources=_SMALL,
        db_pool=DbPool(1, 3),
        monitoring="stream latency < 100 ms, queue < 500, replication lag < 1 s",
        metrics_stream="to_device",
    ),
    WorkerClass(
        name="receipts-writer",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=2000,
        guide_table=((100, 2), (5000, 2), (20000, 3)),
        stream="receipts",
        exactly_one=False,
        hash_sharded=False,
        http_resources=("client",),
        resources=_SMALL,
        db_pool=DbPool(1, 3),
        monitoring="stream latency < 100 ms, queue < 500, replication lag < 1 s",
        balance="hash",
        metrics_stream="receipts",
    ),
    WorkerClass(
        name="presence-writer",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=3000,
        guide_table=((100, 2), (5000, 2), (20000, 3)),
        stream="presence",
        exactly_one=True,
        hash_sharded=False,
        http_resources=("client",),
        resources=_SMALL,
        db_pool=DbPool(1, 3),
        monitoring="stream latency < 100 ms, queue < 500, replication lag < 1 s",
        metrics_stream="presence_stream",
    ),
    # Beyond the guide: main's own duties, each handed to workers by Synapse's shared config. Sized
    # per the README ("Main's duties as worker classes"); off below the guide's phase 3.
    WorkerClass(
        name="pusher",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=10000,
        guide_table=(),
        stream=None,
        exactly_one=False,
        # pusher_instances is a ShardedWorkerHandlingConfig: each user's pushers run on the member its
        # hash picks, so old and new lists side by side would push twice or not at all.
        hash_sharded=True,
        http_resources=("health",),
        resources=_SMALL,
        db_pool=DbPool(1, 3),
        monitoring="push latency, pusher failures, HTTP push gateway errors",
        duty_on_every_pod=True,
        duty="pusher_instances",
        from_phase=3,
    ),
    WorkerClass(
        name="background-worker",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=1,
        guide_table=(),
        stream=None,
        exactly_one=True,
        hash_sharded=False,
        http_resources=("health",),
        resources=_BUSY,
        db_pool=DbPool(2, 5),
        monitoring="background update progress, scheduled task backlog",
        duty="run_background_tasks_on",
        from_phase=3,
        session_database=True,
    ),
    WorkerClass(
        name="user-directory",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=1,
        guide_table=(),
        stream=None,
        exactly_one=True,
        hash_sharded=False,
        http_resources=("client",),
        resources=_SMALL,
        db_pool=DbPool(1, 3),
        monitoring="user directory search p95, directory update lag",
        duty="update_user_directory_from_worker",
        from_phase=3,
    ),
    WorkerClass(
        name="appservice-sender",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=1,
        guide_table=(),
        stream=None,
        exactly_one=True,
        hash_sharded=False,
        http_resources=("health",),
        resources=_SMALL,
        db_pool=DbPool(1, 2),
        monitoring="appservice transaction latency, failed transactions",
        duty="notify_appservices_from_worker",
        from_phase=3,
    ),
    WorkerClass(
        name="account-data-writer",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=1,
        guide_table=(),
        stream="account_data",
        exactly_one=True,
        hash_sharded=False,
        http_resources=("client",),
        resources=_SMALL,
        db_pool=DbPool(1, 3),
        monitoring="stream latency < 100 ms, replication lag < 1 s",
        metrics_stream="account_data",
        from_phase=3,
    ),
    WorkerClass(
        name="push-rules-writer",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=1,
        guide_table=(),
        stream="push_rules",
        exactly_one=True,
        hash_sharded=False,
        http_resources=("client",),
        resources=_SMALL,
        db_pool=DbPool(1, 2),
        monitoring="stream latency < 100 ms, replication lag < 1 s",
        metrics_stream="push_rules_stream",
        from_phase=3,
    ),
    WorkerClass(
        name="device-lists-writer",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=10000,
        guide_table=(),
        stream="device_lists",
        exactly_one=False,
        # Synapse picks a writer at random per request and keeps its linearised work on the first one
        # (synapse/handlers/device.py): no hash over the list, so members may overlap in a rollout.
        hash_sharded=False,
        http_resources=("client",),
        resources=_SMALL,
        db_pool=DbPool(1, 3),
        monitoring="stream latency < 100 ms, key upload p95, replication lag < 1 s",
        metrics_stream="device_lists_stream",
        from_phase=3,
    ),
    WorkerClass(
        name="thread-subscriptions-writer",
        kind="StatefulSet",
        scaling="manual",
        load="ccu",
        divisor=10000,
        guide_table=(),
        stream="thread_subscriptions",
        exactly_one=False,
        hash_sharded=False,
        http_resources=("client",),
        resources=_SMALL,
        db_pool=DbPool(1, 2),
        monitoring="stream latency < 100 ms, replication lag < 1 s",
        metrics_stream="thread_subscriptions",
        default_off=(
            "Synapse serves thread subscriptions only with the experimental MSC4306 on; pinning this "
            "writer turns it on for every process (an experimental API is the operator's choice)"
        ),
    ),
)

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in WORKER_CLASSES)
GUIDE_CLASSES: tuple[str, ...] = tuple(c.name for c in WORKER_CLASSES if not c.beyond_guide)
BY_NAME: dict[str, WorkerClass] = {c.name: c for c in WORKER_CLASSES}

MEDIA_CLASS: WorkerClass = next(c for c in WORKER_CLASSES if c.serves_media)
"""The class that owns the shared media store (its claim is labelled with it)."""


@dataclass(frozen=True)
class MainProcess:
    """Synapse's main process: one record for every name it goes by, so no caller spells one by hand
    and none passes `None` to mean main."""

    name: str
    """Its part: the `component` label, the router's backend, its config file and rollout stage."""
    workload_name: str
    pod: str
    instance: str
    """Synapse's key for it in `instance_map`."""
    writer: str
    """Synapse's instance name for it everywhere else: writer lists and duty names
    (`MAIN_PROCESS_INSTANCE_NAME`, synapse/config/workers.py); `main` there would name no process."""
    resources: Resources
    db_pool: DbPool
    """Synapse's documented example pool: main still runs background updates and every duty no worker takes."""
    kind: Kind = "StatefulSet"
    session_database: bool = True
    """Main always runs the schema background updates (synapse/app/homeserver.py), whoever runs the tasks."""
    watch: Signal = "cpu"
    metrics_stream: str | None = None
    """Main writes no stream of its own that a lag alert could follow."""


MAIN = MainProcess(
    name="main",
    workload_name="synapse-main",
    pod="synapse-main-0",
    instance="main",
    writer="master",
    resources=Resources("1", "1Gi", "4", "4Gi"),
    db_pool=DbPool(5, 10),
)

Process = WorkerClass | MainProcess
"""Main or a worker class: what a workload, a pool or a restart rule is about."""
PROCESSES: tuple[Process, ...] = (MAIN, *WORKER_CLASSES)
