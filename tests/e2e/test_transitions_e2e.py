"""Changes that re-route, applied as the program applies them, with real Synapse (issue #20's proofs).

A change of the persister list or of who runs the pushers is a quiesce: every Synapse process stops,
then all start on the new routing in stage order (`kube/quiesce.py`; `topology.quiesce` does the same
with processes). A client sends to many rooms through the router the whole time: no send may fail with
a 500 (unavailable while nothing runs is expected, and counted), and a push gateway stub must get each
notification exactly once while the pusher duty moves from main to its worker and back. A control runs
the rolling order the quiesce replaced and sees the 500s, in exactly the rooms Synapse's sharding moves.

Two things real Synapse showed on the way, both handled where they belong: writers started together on
a shrunk list race on deleting the dropped writers' stream positions (one dies at start with a
serialization failure), so the schema Job, which runs alone in a quiesce, prunes them first (this suite
runs its command between the stop and the start, as the program orders it); and Synapse's HTTP pusher
drains at most 20 queued notifications per pass and starts the next pass only on new activity, so the
check sends a nudge until the queue is empty (queued, not lost).

The background-update proof: under the project's PgBouncer with its statement timeout lowered to a few
seconds, an index build of Synapse's own that waits longer than that completes, because main (which runs
background updates here) reaches PostgreSQL directly, and no connection in PgBouncer's pool ever shows
the zero timeout the build sets on its own session.
"""

from __future__ import annotations

import collections
import inspect
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2
import pytest
import requests
import yaml
from synapse.storage.databases.main import receipts
from synapse.storage.databases.main.event_push_actions import EventPushActionsWorkerStore
from synapse.storage.engines.postgres import PostgresEngine

from synapse_workers.model.settings import SECRET_FILES
from synapse_workers.ops.whatif import compare
from synapse_workers.plan import Plan, build_plan
from synapse_workers.synapse.topology import CLIENT_PORT, POOLER_PORT
from tests.background import Background
from tests.conftest import settings_for
from tests.e2e.client import Client, Stub, eventually, serve_stub
from tests.e2e.services import MAX_CONNECTIONS, Loopback, Postgres, Processes
from tests.e2e.topology import (
    MAIN,
    SERVER_NAME,
    Homeserver,
    db_query,
    expected_persister,
    quiesce,
    register,
    start_homeserver,
    start_processes,
    wait_router,
    write_configs,
)

pytestmark = pytest.mark.e2e

STATEMENT_TIMEOUT_MS = 4000
"""Lowered for this module on both sides, as the program keeps them equal: PgBouncer's connect_query and
Synapse's own `database.statement_timeout` (a key the installed engine reads, checked below)."""
ROOMS = 24
UNAVAILABLE = {502, 503, 504, "unreachable"}
"""What a send may meet while every Synapse process is stopped: the router's own answers, or no answer."""


def plan_for(loopback: Loopback, persisters: int, pusher: bool) -> Plan:
    """The guide's classes at 100 CCU behind PgBouncer; the pusher duty on its worker or (default at this
    size) on main."""
    workers: dict[str, Any] = {"event-persister": {"replicas": persisters}}
    if pusher:
        workers["pusher"] = {"replicas": 1}
    return build_plan(
        settings_for(
            ccu=100,
            serverName=SERVER_NAME,
            postgres={
                "host": loopback.services,
                "port": 5432,
                "maxConnections": MAX_CONNECTIONS,
                "pooler": {"enabled": True, "replicas": 1, "poolSize": 15},
            },
            redis={"host": loopback.services, "port": 6379},
            workers=workers,
        )
    )


def lowered_timeout(ini: str) -> str:
    old = "SET statement_timeout TO 600000"
    assert old in ini, "the pooler's connect_query no longer sets Synapse's statement timeout"
    return ini.replace(old, f"SET statement_timeout TO {STATEMENT_TIMEOUT_MS}")


@dataclass
class Current:
    """The homeserver as the last test left it: each test applies its change to this one."""

    hs: Homeserver
    extra: dict[str, Any]
    alice: Client | None = None
    bob: Client | None = None
    rooms: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def stub(loopback: Loopback) -> Iterator[Stub]:
    with serve_stub(loopback.services) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def current(
    postgres: Postgres, redis: tuple[str, int], loopback: Loopback, processes: Processes, workdir: Path
) -> Current:
    extra = {
        "ip_range_whitelist": ["127.0.0.0/8"],  # the push gateway stub is on loopback
        "database": {"statement_timeout": STATEMENT_TIMEOUT_MS},
    }
    plan = plan_for(loopback, persisters=2, pusher=False)
    hs = start_homeserver(plan, postgres, loopback, processes, workdir, extra, pgbouncer_edit=lowered_timeout)
    return Current(hs, extra)


def superuser(pg: Postgres) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(host=pg.host, port=pg.port, user="postgres", dbname="synapse")
    conn.autocommit = True
    return conn


class PoolSampler(Background):
    """Reads `statement_timeout` on PgBouncer's server connections, as any Synapse worker's next
    transaction would find it: short transactions through PgBouncer from several threads, so the samples
    spread over the pool's server connections."""

    def __init__(self, pg: Postgres, host: str, threads: int = 3) -> None:
        super().__init__([self._run] * threads, join_timeout=10)
        self.pg, self.host = pg, host
        self.seen: list[tuple[int, str]] = []

    def _run(self) -> None:
        while not self.stop.is_set():
            conn = psycopg2.connect(
                host=self.host, port=POOLER_PORT, user="synapse", password=self.pg.password, dbname="synapse"
            )
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT pg_backend_pid(), current_setting('statement_timeout')")
                    row = cur.fetchone()
                    assert row is not None
                    self.seen.append((int(row[0]), str(row[1])))
                conn.rollback()
            finally:
                conn.close()
            self.stop.wait(0.05)


INDEX_UPDATE = ("receipts_room_id_event_id_index", "receipts_linearized_event_id", "receipts_linearized")
"""One of Synapse's own background index updates: (update name, index, table)."""


def test_a_background_index_build_longer_than_the_timeout_completes_under_pgbouncer(
    current: Current, postgres: Postgres, loopback: Loopback, processes: Processes
) -> None:
    hs = current.hs
    update, index, table = INDEX_UPDATE
    source = inspect.getsource(receipts)
    assert f'update_name="{update}"' in source and f'index_name="{index}"' in source, "not in installed Synapse"
    assert re.search(r'database_config\.get\(\s*"statement_timeout"', inspect.getsource(PostgresEngine))
    main_db = yaml.safe_load(hs.procs[MAIN][2].read_text())["database"]
    worker = hs.names_of("generic-worker")[0]
    worker_db = yaml.safe_load(hs.procs[worker][2].read_text())["database"]
    assert (main_db["args"]["port"], worker_db["args"]["port"]) == (postgres.port, POOLER_PORT)

    admin = superuser(postgres)
    blocker = psycopg2.connect(host=postgres.host, port=postgres.port, user="postgres", dbname="synapse")
    with admin.cursor() as cur:
        cur.execute(f"DROP INDEX IF EXISTS {index}")
        cur.execute("INSERT INTO background_updates (update_name, progress_json) VALUES (%s, '{}')", (update,))
    # An open writer on the table: CREATE INDEX CONCURRENTLY waits for it, inside its own statement.
    with blocker.cursor() as cur:
        cur.execute(f"LOCK TABLE {table} IN ROW EXCLUSIVE MODE")
    longest = 0.0
    with PoolSampler(postgres, loopback.services) as sampler:
        processes.stop(MAIN)  # main runs background updates at start; it picks the queued one
        start_processes([MAIN], hs.procs, processes, postgres.password)
        deadline = time.monotonic() + 120
        hold = 2.5 * STATEMENT_TIMEOUT_MS / 1000
        while longest < hold:
            with admin.cursor() as cur:
                cur.execute(
                    "SELECT extract(epoch FROM now() - query_start) FROM pg_stat_activity "
                    "WHERE query LIKE %s AND state = 'active' AND pid <> pg_backend_pid()",
                    (f"%INDEX CONCURRENTLY {index}%",),
                )
                rows = cur.fetchall()
            longest = max([longest, *(float(r[0]) for r in rows)])
            assert time.monotonic() < deadline, "the index build never started:\n" + processes.current_log(MAIN)[-3000:]
            time.sleep(0.2)
        blocker.commit()
        eventually(
            "the background update finished",
            lambda: not db_query(postgres, "SELECT 1 FROM background_updates WHERE update_name = %s", update),
            timeout=60,
        )
    blocker.close()
    valid = db_query(postgres, "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", index)
    assert valid == [(True,)], valid
    assert longest >= hold, "the build must have outlasted the statement timeout"
    assert "statement timeout" not in processes.current_log(MAIN)
    # PgBouncer's pool never carried the build's zero timeout to anyone else.
    values = collections.Counter(value for _, value in sampler.seen)
    assert values and set(values) == {f"{STATEMENT_TIMEOUT_MS // 1000}s"}, values
    assert len({pid for pid, _ in sampler.seen}) >= 2, "the samples must have reached several server connections"
    admin.close()


class Sender(Background):
    """Alice sends to every room in turn through the router until stopped, recording each outcome."""

    def __init__(self, client: Client, rooms: list[str]) -> None:
        super().__init__([self._run], join_timeout=60)
        self.client, self.rooms = client, rooms
        self.results: list[tuple[str, int | str, str | None, float]] = []
        """(room, HTTP status or "unreachable", event ID where sent, when)."""
        self.txn = secrets.token_hex(6)

    def _run(self) -> None:
        n = 0
        while not self.stop.is_set():
            room = self.rooms[n % len(self.rooms)]
            n += 1
            # Transaction IDs unique across senders: Synapse answers a repeated one with the first event.
            path = f"/_matrix/client/v3/rooms/{quote(room, safe='')}/send/m.room.message/{self.txn}-{n}"
            try:
                response = self.client.call("PUT", path, {"msgtype": "m.text", "body": f"n{n}"}, ok=False)
                status: int | str = response.status_code
                event = str(response.json()["event_id"]) if status == 200 else None
            except requests.RequestException:
                status, event = "unreachable", None
            self.results.append((room, status, event, time.monotonic()))
            self.stop.wait(0.05)

    def sent(self, since: float = 0.0) -> list[tuple[str, str]]:
        return [(room, e) for room, s, e, t in list(self.results) if s == 200 and e is not None and t >= since]


def accounts(current: Current, loopback: Loopback, workdir: Path, stub: Stub) -> tuple[Client, Client, list[str]]:
    """Alice and Bob in ROOMS rooms; Bob's phone (the stub) is pushed every message Alice sends."""
    if current.alice is None or current.bob is None:
        base = f"http://{loopback.services}:{CLIENT_PORT}"
        secret = (workdir / "secrets" / SECRET_FILES["registrationSharedSecret"]).read_text()
        current.alice = Client(base, register(base, secret, "alice"))
        current.bob = Client(base, register(base, secret, "bob"))
        for _ in range(ROOMS):
            body = {"invite": [current.bob.user_id], "preset": "private_chat"}
            room_id = str(current.alice.call("POST", "/_matrix/client/v3/createRoom", body).json()["room_id"])
            current.bob.call("POST", f"/_matrix/client/v3/join/{quote(room_id, safe='')}", {})
            current.rooms.append(room_id)
        current.bob.set_pusher(stub)
    return current.alice, current.bob, current.rooms


def owners(hs: Homeserver, rooms: list[str]) -> dict[str, str]:
    """Each room's persister by Synapse's own sharding over the lists main has loaded (read before a
    change rewrites the config files)."""
    return {room: expected_persister(hs, room) for room in rooms}


@dataclass
class Change:
    sender: Sender
    done: float
    """When the last stage was up and the router served every backend again."""
    moved: set[str]
    """Rooms whose persister the change moved, by Synapse's sharding before and after."""


def change_under_load(
    current: Current,
    new: Plan,
    postgres: Postgres,
    loopback: Loopback,
    processes: Processes,
    workdir: Path,
    stub: Stub,
) -> Change:
    """Applies `new` as the program would while Alice keeps sending. Checks that no send failed with
    anything but unavailability, and that sends after the change went where the new lists put them."""
    alice, _, rooms = accounts(current, loopback, workdir, stub)
    before = owners(current.hs, rooms)
    with Sender(alice, rooms) as sender:
        eventually("sends before the change", lambda: len(sender.sent()) >= ROOMS, timeout=60)
        current.hs = quiesce(current.hs, new, loopback, workdir, processes, postgres.password, current.extra)
        wait_router(f"http://{loopback.services}:{CLIENT_PORT}", alice.token)
        done = time.monotonic()
        eventually("two rounds of sends after the change", lambda: len(sender.sent(done)) >= 2 * ROOMS, timeout=120)
    outcomes = collections.Counter(status for _, status, _, _ in sender.results)
    print(f"\nsends during the change: {dict(outcomes)}")
    failures = {status: count for status, count in outcomes.items() if status != 200 and status not in UNAVAILABLE}
    assert not failures, f"sends failed during the change: {failures} of {dict(outcomes)}"
    unavailable = sum(count for status, count in outcomes.items() if status in UNAVAILABLE)
    assert unavailable > 0, "a quiesce stops every process: the sender must have met that moment"
    after = owners(current.hs, rooms)
    for room, event in sender.sent(done):
        (row,) = db_query(postgres, "SELECT instance_name FROM events WHERE event_id = %s", event)
        assert row[0] == after[room], (room, row[0], after[room])
    moved = {room for room in rooms if before[room] != after[room]}
    assert moved & {room for room, _ in sender.sent(done)}, "rooms the change moved must have been sent to"
    return Change(sender, done, moved)


PUSH_BATCH = 20
"""Synapse's HTTP pusher takes at most this many notifications per pass and starts another pass only when
a new event arrives for the user (`get_unread_push_actions_for_user_in_range_for_http`, checked below):
a backlog left when the sender stops stays queued, in the database, until Bob's next message."""


def check_pushed_once(stub: Stub, sender: Sender) -> None:
    """Every message sent is pushed, and none twice. Alice's nudges (one message each, a pass apart) let
    the pusher drain a backlog deeper than one pass; they must not be pushed twice either."""
    source = inspect.getsource(EventPushActionsWorkerStore.get_unread_push_actions_for_user_in_range_for_http)
    assert f"limit: int = {PUSH_BATCH}" in source
    wanted = {event for _, event in sender.sent()}
    deadline = time.monotonic() + 180
    while not wanted <= set(stub.notified()):
        assert time.monotonic() < deadline, f"{len(wanted - set(stub.notified()))} of {len(wanted)} never pushed"
        sender.client.send(sender.rooms[0], "nudge")
        time.sleep(3)
    time.sleep(5)  # time for a second push from a process that should no longer push
    counts = collections.Counter(stub.notified())
    twice = {event: n for event, n in counts.items() if n > 1}
    assert not twice, f"{len(twice)} events pushed more than once, e.g. {list(twice.items())[:3]}"


def pushes_in(processes: Processes, name: str) -> int:
    return processes.current_log(name).count("/_matrix/push/v1/notify: 200")


def test_persisters_and_the_pusher_duty_move_to_workers_with_no_500_and_one_push_each(
    current: Current, postgres: Postgres, loopback: Loopback, processes: Processes, workdir: Path, stub: Stub
) -> None:
    new = plan_for(loopback, persisters=3, pusher=True)
    assert set(compare(current.hs.plan, new).reroutes) == {"instance_map", "pusher_instances", "stream_writers.events"}
    accounts(current, loopback, workdir, stub)
    change = change_under_load(current, new, postgres, loopback, processes, workdir, stub)
    check_pushed_once(stub, change.sender)
    (pusher,) = current.hs.names_of("pusher")
    assert pushes_in(processes, pusher) > 0 and pushes_in(processes, MAIN) == 0


def test_the_pusher_duty_returns_to_main_and_persisters_shrink_with_no_500_and_one_push_each(
    current: Current, postgres: Postgres, loopback: Loopback, processes: Processes, workdir: Path, stub: Stub
) -> None:
    new = plan_for(loopback, persisters=2, pusher=False)
    assert set(compare(current.hs.plan, new).reroutes) == {"instance_map", "pusher_instances", "stream_writers.events"}
    change = change_under_load(current, new, postgres, loopback, processes, workdir, stub)
    check_pushed_once(stub, change.sender)
    assert pushes_in(processes, MAIN) > 0 and "synapse-pusher-0" not in processes.running


def test_control_the_rolling_order_the_quiesce_replaced_fails_sends_in_the_moved_rooms(
    current: Current, postgres: Postgres, loopback: Loopback, processes: Processes, workdir: Path, stub: Stub
) -> None:
    """Persisters first on the new list, main and the readers still on the old one (the order before the
    quiesce): sends to a room whose owner moved fail with a 500, in exactly those rooms."""
    alice, _, rooms = accounts(current, loopback, workdir, stub)
    old, new = current.hs, plan_for(loopback, persisters=3, pusher=False)
    before = owners(old, rooms)
    procs = write_configs(new, loopback, workdir, current.extra)
    persisters = new.topology.stream_writers["events"]
    processes.stop_all([name for name in old.names_of("event-persister")])
    start_processes(list(persisters), procs, processes, postgres.password)
    mixed = Homeserver(new, procs, old.router)
    after = owners(mixed, rooms)
    moved = {room for room in rooms if before[room] != after[room]}
    assert moved and len(moved) < len(rooms), moved
    statuses = {}
    for room in rooms:
        path = f"/_matrix/client/v3/rooms/{quote(room, safe='')}/send/m.room.message/c{time.time_ns()}"
        statuses[room] = alice.call("PUT", path, {"msgtype": "m.text", "body": "control"}, ok=False).status_code
    failed = {room for room, status in statuses.items() if status == 500}
    assert failed == moved, (len(failed), len(moved), collections.Counter(statuses.values()))
    assert all(statuses[room] == 200 for room in set(rooms) - moved)
    # Finish the change the program's way, so the module leaves a consistent homeserver.
    current.hs = quiesce(mixed, new, loopback, workdir, processes, postgres.password, current.extra)
