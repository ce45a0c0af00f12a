"""Real Synapse workers behind the generated HAProxy router, driven by a real Matrix client (matrix-nio).

What it shows: the plan's per-process configs start as a working multi-process homeserver; every request
the client makes reaches the class Synapse's docs name for it (seen in each process's own access log,
and in the database, which records which writer persisted each event, receipt, to-device message and
presence update); and a topology change (one more event persister) keeps rooms from before and after
working once every process has restarted on the new lists.

Only the server addresses of the router config are rewritten (cluster DNS names to loopback); every
routing rule is the generated one. Select alone with `-m e2e`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
import yaml
from nio import (
    AsyncClient,
    PresenceEvent,
    ReceiptEvent,
    RoomCreateResponse,
    RoomSendResponse,
    SyncResponse,
    ToDeviceMessage,
    TypingNoticeEvent,
    UploadResponse,
)
from synapse.config.homeserver import HomeServerConfig

from synapse_workers.kube.haproxy import haproxy_config
from synapse_workers.kube.pooler import AUTH_DIR, AUTH_FILE_SCRIPT, CONFIG_DIR, pgbouncer_ini
from synapse_workers.model.errors import ConfigError
from synapse_workers.model.settings import SECRET_FILES
from synapse_workers.plan import Plan, build_plan
from synapse_workers.synapse.topology import CLIENT_PORT, POOLER_PORT
from tests.conftest import settings_for
from tests.e2e.conftest import CHECK_APPLICATION, MAX_CONNECTIONS, Loopback, Postgres, Processes, wait_http

pytestmark = pytest.mark.e2e

SERVER_NAME = "e2e.example.org"
MAIN = "synapse-main-0"
TEST_ONLY: dict[str, Any] = {
    # SYNAPSE-FACTS, "for tests only": no crawling background updates, no 429s for a scripted client.
    "background_updates": {"sleep_enabled": False},
    "rc_message": {"per_second": 1000, "burst_count": 1000},
    "rc_room_creation": {"per_second": 1000, "burst_count": 1000},
    "rc_joins": {"local": {"per_second": 1000, "burst_count": 1000}},
    "rc_login": {"address": {"per_second": 1000, "burst_count": 1000}},
    "rc_registration": {"per_second": 1000, "burst_count": 1000},
    "rc_presence": {"per_user": {"per_second": 1000, "burst_count": 1000}},
    # Nothing here may leave loopback: no key servers, no remote homeservers.
    "trusted_key_servers": [],
    "suppress_key_server_warning": True,
    "federation_domain_whitelist": [SERVER_NAME],
}


POOLER = {"enabled": True, "replicas": 1, "poolSize": 15}
"""One PgBouncer (two during its rollout) x 15 = 30 server connections: max_connections 40 less 10 reserved."""


def topology_settings(loopback: Loopback, persisters: int, pooler: dict[str, Any] = POOLER) -> Plan:
    """At least one of every class (federation on, so federation senders exist), two receipts writers,
    behind PgBouncer, on a PostgreSQL whose max_connections the unpooled pools would exceed."""
    return build_plan(
        settings_for(
            ccu=100,
            serverName=SERVER_NAME,
            postgres={"host": loopback.services, "port": 5432, "maxConnections": MAX_CONNECTIONS, "pooler": pooler},
            redis={"host": loopback.services, "port": 6379},
            federation={"enabled": True, "servers": 1},
            workers={"event-persister": {"replicas": persisters}, "receipts-writer": {"replicas": 2}},
        )
    )


@dataclass
class Homeserver:
    """The running processes of one plan: process name -> (class, loopback address, config file)."""

    plan: Plan
    procs: dict[str, tuple[str, str, Path]]
    router: str

    def names_of(self, class_name: str) -> list[str]:
        return sorted(n for n, (c, _, _) in self.procs.items() if c == class_name)


def localise(text: str, name: str, loopback: Loopback, root: Path) -> dict[str, Any]:
    """One process's merged config, moved onto loopback: each pod its own 127.A.B.N, ports kept."""
    config: dict[str, Any] = yaml.safe_load(text)
    for instance, entry in config.get("instance_map", {}).items():
        entry["host"] = loopback.of(MAIN if instance == "main" else instance)
    for key in ("listeners", "worker_listeners"):
        for listener in config.get(key, []):
            listener["bind_addresses"] = [loopback.of(name)]
    for key, value in list(config.items()):
        if key.endswith("_path") and isinstance(value, str) and value.startswith("/secrets/"):
            config[key] = str(root / "secrets" / Path(value).name)
    config["database"]["args"]["host"] = loopback.services  # PgBouncer's Service name, in a cluster
    config["media_store_path"] = str(root / "media")
    config["public_baseurl"] = f"http://{loopback.services}:{CLIENT_PORT}/"
    config.update(TEST_ONLY)
    return config


def write_configs(plan: Plan, loopback: Loopback, root: Path) -> dict[str, tuple[str, str, Path]]:
    procs: dict[str, tuple[str, str, Path]] = {}
    for workload in plan.workloads:
        for file_name, text in workload.process_configs():
            name = file_name.removesuffix(".yaml")
            path = root / "config" / file_name
            path.write_text(yaml.safe_dump(localise(text, name, loopback, root), sort_keys=True))
            procs[name] = (workload.part, loopback.of(name), path)
    return procs


def start_synapse(hs_procs: dict[str, tuple[str, str, Path]], processes: Processes, password: str) -> None:
    """Main first (it creates the schema), then every worker at once; the password as the pods get it."""
    python = sys.executable
    env = {**os.environ, "PGPASSWORD": password}
    _, address, config = hs_procs[MAIN]
    main = processes.start(MAIN, [python, "-m", "synapse.app.homeserver", "-c", str(config)], env)
    wait_http(f"http://{address}:{CLIENT_PORT}/health", 120, main)
    workers = {n: v for n, v in hs_procs.items() if n != MAIN}
    started = {
        n: processes.start(n, [python, "-m", "synapse.app.generic_worker", "-c", str(c)], env)
        for n, (_, _, c) in workers.items()
    }
    for name, (_, address, _) in workers.items():
        try:
            wait_http(f"http://{address}:{CLIENT_PORT}/health", 180, started[name])
        except (RuntimeError, TimeoutError) as error:
            raise AssertionError(f"{name} did not start:\n{processes.log(name)[-3000:]}") from error


def start_router(
    plan: Plan, hs_procs: dict[str, tuple[str, str, Path]], loopback: Loopback, root: Path, processes: Processes
) -> str:
    servers: dict[str, list[str]] = {}
    for _, (class_name, address, _) in sorted(hs_procs.items()):
        servers.setdefault(class_name, []).append(f"{address}:{CLIENT_PORT}")
    text = haproxy_config(plan, bind=loopback.services, servers=servers)
    path = root / "haproxy.cfg"
    path.write_text(text)
    haproxy = shutil.which("haproxy")
    assert haproxy is not None
    check = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = processes.start("haproxy", [haproxy, "-db", "-f", str(path)])
    wait_http(f"http://{loopback.services}:8404/healthz", 20, proc)
    return text


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("synapse")
    (root / "config").mkdir()
    (root / "media").mkdir()
    (root / "secrets").mkdir()
    for file_name in SECRET_FILES.values():
        (root / "secrets" / file_name).write_text(secrets.token_hex(24))
    (root / "secrets" / "signing.key").unlink()
    yield root
    shutil.rmtree(root, ignore_errors=True)


def start_pgbouncer(plan: Plan, pg: Postgres, loopback: Loopback, processes: Processes) -> None:
    """The plan's pgbouncer.ini and the pod's own start script, with paths moved out of /etc and /run."""
    root = Path(tempfile.mkdtemp(prefix="e2e-pgbouncer-"))
    ini = pgbouncer_ini(
        plan.settings, listen=loopback.services, auth_file=str(root / "userlist.txt"), server=(pg.host, pg.port)
    )
    (root / "pgbouncer.ini").write_text(ini)
    script = AUTH_FILE_SCRIPT.replace(AUTH_DIR, str(root)).replace(CONFIG_DIR, str(root))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    env = {**os.environ, "PGUSER": plan.settings.postgres.user, "PGPASSWORD": pg.password}
    proc = processes.start("pgbouncer", [*as_user, "/bin/sh", "-c", script], env)
    deadline = time.monotonic() + 20
    while True:
        try:
            psycopg2.connect(
                host=loopback.services, port=POOLER_PORT, user="synapse", password=pg.password, dbname="synapse"
            ).close()
            return
        except psycopg2.OperationalError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("pgbouncer did not start:\n" + processes.log("pgbouncer")) from None
            time.sleep(0.2)


@pytest.fixture(scope="module")
def homeserver(
    postgres: Postgres, redis: tuple[str, int], loopback: Loopback, processes: Processes, workdir: Path
) -> Homeserver:
    plan = topology_settings(loopback, persisters=2)
    start_pgbouncer(plan, postgres, loopback, processes)
    procs = write_configs(plan, loopback, workdir)
    keygen = [sys.executable, "-m", "synapse.app.homeserver", "-c", str(procs[MAIN][2]), "--generate-keys"]
    subprocess.run(keygen, check=True, capture_output=True, cwd=workdir)
    assert (workdir / "secrets" / "signing.key").exists()
    start_synapse(procs, processes, postgres.password)
    router = start_router(plan, procs, loopback, workdir, processes)
    return Homeserver(plan, procs, router)


ROUTER_PROBES = (
    ("GET", "/_matrix/client/v3/sync?timeout=0"),
    ("GET", "/_matrix/client/versions"),
    ("GET", "/_matrix/client/v3/rooms/!probe:e2e.example.org/typing/@probe:e2e.example.org"),
    ("GET", "/_matrix/client/v3/sendToDevice/m.probe/1"),
    ("GET", "/_matrix/client/v3/rooms/!probe:e2e.example.org/receipt/m.read/$probe"),
    ("GET", "/_matrix/client/v3/presence/@probe:e2e.example.org/status"),
    ("GET", "/_matrix/client/v1/media/config"),
    ("GET", "/_matrix/client/v3/account/whoami"),
)


def wait_router(base: str, token: str, timeout: float = 60) -> None:
    """After a restart, HAProxy marks servers up only after `rise` good health checks: until every
    backend answers (anything but the router's own 5xx) twice in a row, a client would see 503s."""
    session = requests.Session()
    session.trust_env = False
    deadline, good_rounds = time.monotonic() + timeout, 0
    while good_rounds < 2:
        statuses = [
            session.request(m, base + p, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code
            for m, p in ROUTER_PROBES
        ]
        good_rounds = good_rounds + 1 if all(s < 500 for s in statuses) else 0
        if time.monotonic() > deadline:
            raise TimeoutError(f"router not serving every backend: {statuses}")
        time.sleep(0.5)


# --- client side --------------------------------------------------------------------------------------


def register(base: str, secret: str, user: str) -> dict[str, Any]:
    """Synapse's shared-secret registration, through the router (it must reach main)."""
    session = requests.Session()
    session.trust_env = False
    nonce = session.get(f"{base}/_synapse/admin/v1/register", timeout=30).json()["nonce"]
    password = secrets.token_hex(8)
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(b"\x00".join(x.encode() for x in (nonce, user, password, "notadmin")))
    body = {"nonce": nonce, "username": user, "password": password, "admin": False, "mac": mac.hexdigest()}
    response = session.post(f"{base}/_synapse/admin/v1/register", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


async def sync_until(client: AsyncClient, what: str, found: Any, timeout: float = 30) -> SyncResponse:
    """Sync until `found(response)` is true; fail naming what never arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await client.sync(timeout=2000)
        assert isinstance(response, SyncResponse), response
        if found(response):
            return response
    raise AssertionError(f"{client.user_id} never saw {what}")


def texts(response: SyncResponse, room_id: str) -> set[str]:
    room = response.rooms.join.get(room_id)
    return set() if room is None else {e.source.get("content", {}).get("body", "") for e in room.timeline.events}


def ephemeral(response: SyncResponse, room_id: str) -> list[Any]:
    room = response.rooms.join.get(room_id)
    return [] if room is None else list(room.ephemeral)


async def client_for(base: str, account: dict[str, Any]) -> AsyncClient:
    client = AsyncClient(base, account["user_id"])
    client.restore_login(account["user_id"], account["device_id"], account["access_token"])
    await sync_until(client, "an initial sync", lambda r: True)
    return client


async def converse(alice: AsyncClient, bob: AsyncClient, room_id: str, text: str) -> None:
    """Alice says something, Bob sees it; Bob answers, Alice sees it."""
    sent = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})
    assert isinstance(sent, RoomSendResponse), sent
    await sync_until(bob, f"'{text}'", lambda r: text in texts(r, room_id))
    reply = f"re: {text}"
    sent = await bob.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": reply})
    assert isinstance(sent, RoomSendResponse), sent
    await sync_until(alice, f"'{reply}'", lambda r: reply in texts(r, room_id))


async def new_room(alice: AsyncClient, bob: AsyncClient, name: str) -> str:
    created = await alice.room_create(name=name, invite=[bob.user_id])
    assert isinstance(created, RoomCreateResponse), created
    joined = await bob.join(created.room_id)
    assert getattr(joined, "room_id", None) == created.room_id, joined
    return str(created.room_id)


async def full_exchange(base: str, alice_account: dict[str, Any], bob_account: dict[str, Any]) -> dict[str, Any]:
    alice = await client_for(base, alice_account)
    bob = await client_for(base, bob_account)
    try:
        room_id = await new_room(alice, bob, "before")
        await converse(alice, bob, room_id, "hello bob")

        assert (await alice.room_typing(room_id, True, timeout=20000)).__class__.__name__ == "RoomTypingResponse"
        await sync_until(
            bob,
            "alice typing",
            lambda r: any(isinstance(e, TypingNoticeEvent) and alice.user_id in e.users for e in ephemeral(r, room_id)),
        )

        last = await alice.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": "read me"})
        assert isinstance(last, RoomSendResponse), last
        receipt = await bob.update_receipt_marker(room_id, last.event_id)
        assert receipt.__class__.__name__ == "UpdateReceiptMarkerResponse", receipt
        await sync_until(
            alice,
            "bob's read receipt",
            lambda r: any(
                isinstance(e, ReceiptEvent)
                and any(x.user_id == bob.user_id and x.event_id == last.event_id for x in e.receipts)
                for e in ephemeral(r, room_id)
            ),
        )

        ping = {"nonce": secrets.token_hex(8)}
        message = ToDeviceMessage("org.example.e2e.ping", bob.user_id, bob.device_id, ping)
        assert (await alice.to_device(message)).__class__.__name__ == "ToDeviceResponse"
        await sync_until(
            bob, "alice's to-device message", lambda r: any(e.source.get("content") == ping for e in r.to_device_events)
        )

        status = f"busy {secrets.token_hex(4)}"
        assert (await alice.set_presence("online", status)).__class__.__name__ == "PresenceSetResponse"
        await sync_until(
            bob,
            "alice's presence",
            lambda r: any(
                isinstance(e, PresenceEvent) and e.user_id == alice.user_id and e.status_msg == status
                for e in r.presence_events
            ),
        )
        presence = await bob.get_presence(alice.user_id)
        assert getattr(presence, "status_msg", None) == status, presence

        payload = secrets.token_bytes(64 * 1024)
        uploaded, _ = await alice.upload(
            lambda *_: payload, "application/octet-stream", "blob.bin", filesize=len(payload)
        )
        assert isinstance(uploaded, UploadResponse), uploaded
        downloaded = await bob.download(uploaded.content_uri)
        assert getattr(downloaded, "body", None) == payload, "media came back different"
        return {"room_id": room_id, "last_event": last.event_id}
    finally:
        await alice.close()
        await bob.close()


# --- evidence -----------------------------------------------------------------------------------------

# (request path pattern, the class Synapse's docs/workers.md names for it), written from the docs.
DOCUMENTED_SERVERS: tuple[tuple[str, str], ...] = (
    (r"GET /_matrix/client/(r0|v3)/sync", "synchrotron"),
    (r"POST /_matrix/client/(r0|v3)/createRoom", "generic-worker"),
    (r"POST /_matrix/client/(r0|v3)/join/", "generic-worker"),
    (r"PUT /_matrix/client/(r0|v3)/rooms/[^/]+/send/", "generic-worker"),
    (r"PUT /_matrix/client/(r0|v3)/rooms/[^/]+/typing/", "typing-writer"),
    (r"POST /_matrix/client/(r0|v3)/rooms/[^/]+/receipt/", "receipts-writer"),
    (r"PUT /_matrix/client/(r0|v3)/sendToDevice/", "todevice-writer"),
    (r"PUT /_matrix/client/(r0|v3)/presence/", "presence-writer"),
    (r"GET /_matrix/client/(r0|v3)/presence/", "presence-writer"),
    (r"POST /_matrix/media/(r0|v3)/upload", "media-repository"),
    (r"GET /_matrix/(client/v1|media/v3)/(media/)?download/", "media-repository"),
    (r"POST /_synapse/admin/v1/register", "main"),
)

ACCESS = re.compile(r"Processed request: .*?\"(GET|PUT|POST|DELETE|OPTIONS) (\S+) HTTP")


def served_requests(processes: Processes, hs: Homeserver) -> dict[str, list[str]]:
    """Per process: the requests its own access log says it processed, as 'METHOD path'."""
    return {name: [f"{m} {p}" for m, p in ACCESS.findall(processes.log(name))] for name in hs.procs}


def check_served_by_documented_class(processes: Processes, hs: Homeserver) -> None:
    served = served_requests(processes, hs)
    for pattern, expected in DOCUMENTED_SERVERS:
        where = {hs.procs[name][0] for name, lines in served.items() if any(re.match(pattern, x) for x in lines)}
        assert where == {expected}, f"{pattern}: served by {where or 'nobody'}, docs say {expected}"


def db_query(pg: Postgres, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(
        host=pg.host, port=pg.port, user="synapse", dbname="synapse", application_name=CHECK_APPLICATION
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()


@functools.cache
def _worker_config(config_path: str, text: str) -> Any:
    """Main's config as Synapse loads it (cached per content: a topology change rewrites the file); its
    `worker` section carries Synapse's own event sharding."""
    return HomeServerConfig.load_config("e2e", ["-c", config_path]).worker


def expected_persister(hs: Homeserver, room_id: str) -> str:
    """The persister Synapse itself shards this room to: its own algorithm over the list main loaded."""
    path = hs.procs[MAIN][2]
    worker = _worker_config(str(path), path.read_text())
    assert list(worker.writers.events) == list(hs.plan.topology.stream_writers["events"])
    return str(worker.events_shard_config.get_instance(room_id))


def check_writers_in_database(pg: Postgres, hs: Homeserver, room_id: str, receipts_sent: bool = True) -> None:
    writers = {row[0] for row in db_query(pg, "SELECT DISTINCT instance_name FROM events WHERE room_id = %s", room_id)}
    assert writers == {expected_persister(hs, room_id)}, writers
    receipts = {
        r[0] for r in db_query(pg, "SELECT DISTINCT instance_name FROM receipts_linearized WHERE room_id = %s", room_id)
    }
    assert bool(receipts) == receipts_sent and receipts <= set(hs.names_of("receipts-writer")), receipts
    presence = {r[0] for r in db_query(pg, "SELECT DISTINCT instance_name FROM presence_stream")}
    assert presence <= set(hs.names_of("presence-writer")) and presence, presence
    streams = dict(
        (
            stream,
            {
                r[1]
                for r in db_query(
                    pg, "SELECT stream_name, instance_name FROM stream_positions WHERE stream_name = %s", stream
                )
            },
        )
        for stream in ("events", "receipts", "to_device", "presence_stream")
    )
    assert streams["events"] <= set(hs.names_of("event-persister")), streams
    # Delivered to-device messages leave device_inbox once acknowledged; the stream position stays.
    assert streams["to_device"] == set(hs.names_of("todevice-writer")), streams
    assert streams["receipts"] and streams["receipts"] <= set(hs.names_of("receipts-writer")), streams


def test_client_through_router_then_topology_change(
    homeserver: Homeserver,
    postgres: Postgres,
    loopback: Loopback,
    processes: Processes,
    workdir: Path,
    record_property: Any,
) -> None:
    started = time.monotonic()
    hs = homeserver
    base = f"http://{loopback.services}:{CLIENT_PORT}"
    secret = (workdir / "secrets" / SECRET_FILES["registrationSharedSecret"]).read_text()
    alice_account = register(base, secret, "alice")
    bob_account = register(base, secret, "bob")

    before = asyncio.run(full_exchange(base, alice_account, bob_account))
    # Federation is on: main answers the delegation remote servers ask for, through the router.
    well_known = requests.get(f"{base}/.well-known/matrix/server", timeout=10)
    assert well_known.status_code == 200 and well_known.json() == {"m.server": f"{SERVER_NAME}:443"}
    check_served_by_documented_class(processes, hs)
    check_writers_in_database(postgres, hs, before["room_id"])
    addresses = re.findall(r"^ +server \S+ (\S+)", hs.router, re.MULTILINE)
    assert addresses and all(a.startswith(loopback.prefix + ".") for a in addresses), addresses

    # Topology change: one more event persister. The shared lists change, so every Synapse process
    # restarts (persisters stopped together, never old and new side by side); the router does not route
    # to persisters, so its config must not change.
    bigger = topology_settings(loopback, persisters=3)
    assert len(bigger.topology.stream_writers["events"]) == 3
    synapse_names = list(hs.procs)
    processes.stop_all(synapse_names)
    new_procs = write_configs(bigger, loopback, workdir)
    start_synapse(new_procs, processes, postgres.password)
    servers: dict[str, list[str]] = {}
    for _, (class_name, address, _) in sorted(new_procs.items()):
        servers.setdefault(class_name, []).append(f"{address}:{CLIENT_PORT}")
    assert haproxy_config(bigger, bind=loopback.services, servers=servers) == hs.router
    hs2 = Homeserver(bigger, new_procs, hs.router)
    wait_router(base, alice_account["access_token"])

    async def after() -> None:
        alice = await client_for(base, alice_account)
        bob = await client_for(base, bob_account)
        try:
            await converse(alice, bob, before["room_id"], "still there after the change")
            # New rooms until one lands on the new persister by Synapse's own sharding.
            new_persister = "synapse-event-persister-2"
            for attempt in range(20):
                room_id = await new_room(alice, bob, f"after {attempt}")
                await converse(alice, bob, room_id, f"new room {attempt}")
                check_writers_in_database(postgres, hs2, room_id, receipts_sent=False)
                if expected_persister(hs2, room_id) == new_persister:
                    break
            else:
                raise AssertionError("20 new rooms and none sharded to the new persister")
        finally:
            await alice.close()
            await bob.close()

    asyncio.run(after())
    old_room_writers = {
        r[0]
        for r in db_query(postgres, "SELECT DISTINCT instance_name FROM events WHERE room_id = %s", before["room_id"])
    }
    assert old_room_writers <= set(hs2.names_of("event-persister"))
    check_served_by_documented_class(processes, hs2)

    for name in new_procs:
        errors = [
            line
            for line in processes.current_log(name).splitlines()
            if " - ERROR - " in line and "Lost connection" not in line
        ]
        assert not errors, f"{name}: {errors[:3]}"
    # PostgreSQL never served more connections than the plan's budget, though Synapse opened more.
    budget = hs2.plan.budget
    assert 0 < postgres.peak_synapse_connections <= budget.postgres_connections.at_maximum
    assert postgres.peak_synapse_connections <= hs2.plan.settings.postgres.pooler.pool_size  # one PgBouncer here
    clients = sum(yaml.safe_load(c.read_text())["database"]["args"]["cp_max"] for _, _, c in new_procs.values())
    assert clients > MAX_CONNECTIONS, "the processes' own pools must be more than the server could take"
    record_property("peak_postgres_connections", postgres.peak_synapse_connections)
    duration = time.monotonic() - started
    record_property("client_and_change_seconds", round(duration, 1))
    record_property("peak_rss_mib", processes.peak_kib // 1024)
    report = {
        "client_and_change_seconds": round(duration, 1),
        "peak_rss_mib": processes.peak_kib // 1024,
        "peak_postgres_connections": postgres.peak_synapse_connections,
    }
    print(f"\nE2E {json.dumps(report)}")
    if os.environ.get("E2E_REPORT"):
        Path(os.environ["E2E_REPORT"]).write_text(json.dumps(report))


def test_the_same_topology_without_pgbouncer_is_refused(loopback: Loopback) -> None:
    """What the suite runs through PgBouncer could not run without it: the plan says so before anything."""
    with pytest.raises(ConfigError) as caught:
        topology_settings(loopback, persisters=2, pooler={"enabled": False})
    assert caught.value.key == "synapse:postgres.maxConnections"
    assert f"synapse:postgres.maxConnections = {MAX_CONNECTIONS} is not allowed" in str(caught.value)
    assert "over the limit of 30" in str(caught.value)
