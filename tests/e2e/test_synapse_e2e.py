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
import json
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from synapse_workers.model.errors import ConfigError
from synapse_workers.model.settings import SECRET_FILES
from synapse_workers.synapse.topology import CLIENT_PORT
from tests.e2e.exchange import client_for, converse, full_exchange, new_room
from tests.e2e.services import MAX_CONNECTIONS, Loopback, Postgres, Processes
from tests.e2e.topology import (
    SERVER_NAME,
    Homeserver,
    check_served_by,
    db_query,
    expected_persister,
    register,
    router_config,
    start_synapse,
    topology_settings,
    wait_router,
    write_configs,
)

pytestmark = pytest.mark.e2e


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


def check_served_by_documented_class(processes: Processes, hs: Homeserver) -> None:
    check_served_by(processes, hs, DOCUMENTED_SERVERS, "docs say")


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
    assert router_config(bigger, new_procs, loopback) == hs.router
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
    # One PgBouncer here, and the processes that keep session state beside it.
    direct = int(budget.direct_connections.at_maximum)
    assert direct == 16, "main's 10, the background worker's 5, the schema Job's 1"
    assert postgres.peak_synapse_connections <= hs2.plan.settings.postgres.pooler.pool_size + direct
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
    assert "over the limit of 46" in str(caught.value)
