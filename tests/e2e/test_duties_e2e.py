"""Main's duties on their own workers, proven with real Synapse behind the generated router.

The e2e plan runs one of each class beyond the guide. A client (plain HTTP through the router) does the
work each duty owns, and the evidence comes from Synapse itself: each process's access log (who served
the request), its own outgoing-request log (who pushed, who notified the appservice), the database
(which instance advanced each stream), and a push gateway and appservice stub on loopback that must
receive what Synapse sends. Main must show none of it.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from synapse_workers.model.settings import SECRET_FILES
from synapse_workers.synapse.topology import CLIENT_PORT
from tests.e2e.client import NOTIFY_PATH, Client, Stub, eventually, serve_stub
from tests.e2e.services import Loopback, Postgres, Processes
from tests.e2e.topology import (
    MAIN,
    SERVER_NAME,
    Homeserver,
    check_served_by,
    db_query,
    register,
    served_requests,
    start_homeserver,
    topology_settings,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stub(loopback: Loopback) -> Iterator[Stub]:
    with serve_stub(loopback.services) as gateway:
        yield gateway


APPSERVICE_SENDER = "e2ebridge"


@pytest.fixture(scope="module")
def homeserver(
    postgres: Postgres,
    redis: tuple[str, int],
    loopback: Loopback,
    processes: Processes,
    workdir: Path,
    stub: Stub,
) -> Homeserver:
    """The e2e plan with two test-only additions on every process: an appservice registration pointing
    at the stub, and loopback allowed as a push-gateway destination."""
    registration = workdir / "appservice.yaml"
    registration.write_text(
        yaml.safe_dump(
            {
                "id": "e2e-bridge",
                "url": stub.base,
                "as_token": secrets.token_hex(16),
                "hs_token": secrets.token_hex(16),
                "sender_localpart": APPSERVICE_SENDER,
                "rate_limited": False,
                "namespaces": {
                    "users": [{"exclusive": True, "regex": "@_e2e_.*"}],
                    "rooms": [{"exclusive": False, "regex": ".*"}],
                    "aliases": [],
                },
            }
        )
    )
    extra = {
        "app_service_config_files": [str(registration)],
        "ip_range_whitelist": ["127.0.0.0/8"],
    }
    plan = topology_settings(loopback, persisters=2)
    return start_homeserver(plan, postgres, loopback, processes, workdir, extra)


# (request pattern, the class that must serve it, from Synapse's worker docs and this plan's table)
DUTY_SERVERS: tuple[tuple[str, str], ...] = (
    (r"PUT /_matrix/client/v3/user/[^/]+/account_data/", "account-data-writer"),
    (r"PUT /_matrix/client/v3/user/[^/]+/rooms/[^/]+/tags/", "account-data-writer"),
    (r"PUT /_matrix/client/v3/pushrules/global/override/", "push-rules-writer"),
    (r"POST /_matrix/client/v3/user_directory/search", "user-directory"),
    (r"PUT /_matrix/client/v3/devices/", "device-lists-writer"),
    (r"PUT /_matrix/client/unstable/io.element.msc4306/rooms/", "thread-subscriptions-writer"),
    (r"POST /_synapse/admin/v1/media/quarantine/", "media-repository"),
)

STREAM_WRITERS = {
    "account_data": "account-data-writer",
    "push_rules_stream": "push-rules-writer",
    "device_lists_stream": "device-lists-writer",
    "thread_subscriptions": "thread-subscriptions-writer",
}
"""The stream_positions name of each new writer's stream (Synapse's ID generators, as in monitoring)."""


def test_each_duty_runs_on_its_worker_and_not_on_main(
    homeserver: Homeserver, postgres: Postgres, loopback: Loopback, processes: Processes, workdir: Path, stub: Stub
) -> None:
    hs = homeserver
    base = f"http://{loopback.services}:{CLIENT_PORT}"
    secret = (workdir / "secrets" / SECRET_FILES["registrationSharedSecret"]).read_text()
    alice = Client(base, register(base, secret, "alice"))
    bob = Client(base, register(base, secret, "bob"))
    root = Client(base, register(base, secret, "root", admin=True))

    room_id = str(alice.call("POST", "/_matrix/client/v3/createRoom", {"invite": [bob.user_id]}).json()["room_id"])
    bob.call("POST", f"/_matrix/client/v3/join/{quote(room_id)}", {})

    # Pusher: Bob's HTTP pusher at the stub's push gateway; Alice's message must reach it.
    bob.set_pusher(stub)
    time.sleep(1)  # the pusher worker learns of the new pusher over replication
    event_id = alice.send(room_id, "ping for bob's phone")
    stub.wait_for(
        "the push notification",
        lambda m, p, b: p == NOTIFY_PATH and b.get("notification", {}).get("event_id") == event_id,
    )
    # Appservice: interested in every room, so Alice's message reaches it in a transaction.
    stub.wait_for(
        "the appservice transaction",
        lambda m, p, b: (
            m == "PUT"
            and p.startswith("/_matrix/app/v1/transactions/")
            and any(e.get("event_id") == event_id for e in b.get("events", []))
        ),
    )

    # User directory: only the user-directory worker updates it, so finding Bob proves it did.
    def finds_bob() -> bool:
        found = alice.call("POST", "/_matrix/client/v3/user_directory/search", {"search_term": "bob"}).json()
        return any(r["user_id"] == bob.user_id for r in found["results"])

    eventually("the user directory lists bob", finds_bob)

    nonce = secrets.token_hex(8)
    user = quote(alice.user_id)
    alice.call("PUT", f"/_matrix/client/v3/user/{user}/account_data/org.example.e2e", {"nonce": nonce})
    got = alice.call("GET", f"/_matrix/client/v3/user/{user}/account_data/org.example.e2e").json()
    assert got == {"nonce": nonce}
    alice.call("PUT", f"/_matrix/client/v3/user/{user}/rooms/{quote(room_id)}/tags/u.work", {"order": 0.5})

    rule = {
        "actions": ["dont_notify"],
        "conditions": [{"kind": "event_match", "key": "content.body", "pattern": nonce}],
    }
    alice.call("PUT", "/_matrix/client/v3/pushrules/global/override/org.example.e2e", rule)
    got_rule = alice.call("GET", "/_matrix/client/v3/pushrules/global/override/org.example.e2e").json()
    assert got_rule["conditions"][0]["pattern"] == nonce

    alice.call("PUT", f"/_matrix/client/v3/devices/{alice.device_id}", {"display_name": f"renamed {nonce}"})

    root_event = alice.send(room_id, "a thread root")
    thread = (
        f"/_matrix/client/unstable/io.element.msc4306/rooms/{quote(room_id)}/thread/{quote(root_event)}/subscription"
    )
    alice.call("PUT", thread, {})

    # Quarantine: an admin quarantines Alice's upload; the first media pod writes the change.
    upload = alice.call(
        "POST",
        "/_matrix/media/v3/upload",
        None,
        data=secrets.token_bytes(1024),
        headers={"Content-Type": "application/octet-stream"},
    )
    media_id = str(upload.json()["content_uri"]).rsplit("/", 1)[1]
    root.call("POST", f"/_synapse/admin/v1/media/quarantine/{SERVER_NAME}/{media_id}", {})
    download = bob.call("GET", f"/_matrix/client/v1/media/download/{SERVER_NAME}/{media_id}", ok=False)
    assert download.status_code == 404, download.text  # quarantined media is never served
    quarantined = db_query(
        postgres, "SELECT instance_name FROM quarantined_media_changes WHERE media_id = %s", media_id
    )
    assert quarantined == [("synapse-media-repository-0",)], quarantined

    # Background tasks: Bob logs out with a to-device message still queued for his device, which
    # schedules the deletion of those messages as a task (synapse/handlers/device.py); only the
    # background-task runner runs scheduled tasks.
    queued = {"messages": {bob.user_id: {bob.device_id: {"nonce": nonce}}}}
    alice.call("PUT", f"/_matrix/client/v3/sendToDevice/org.example.e2e/{secrets.token_hex(8)}", queued)
    bob.call("POST", "/_matrix/client/v3/logout", {})
    (background,) = hs.names_of("background-worker")
    eventually("the background worker runs the task", lambda: "Task complete: " in processes.current_log(background))

    # Who served what, by each process's own access log.
    check_served_by(processes, hs, DUTY_SERVERS, "expected")
    served = served_requests(processes, hs)
    quarantine_pods = {n for n, lines in served.items() if any("/admin/v1/media/quarantine/" in x for x in lines)}
    assert quarantine_pods == {"synapse-media-repository-0"}

    # Which instance advanced each new stream, by the database.
    for stream, class_name in STREAM_WRITERS.items():
        writers = {
            r[0]
            for r in db_query(postgres, "SELECT instance_name FROM stream_positions WHERE stream_name = %s", stream)
        }
        assert writers and writers <= set(hs.names_of(class_name)), (stream, writers)

    # Who sent the push and the appservice transaction, and who runs background tasks, by their logs.
    def log_of(class_name: str) -> str:
        (name,) = hs.names_of(class_name)
        return processes.current_log(name)

    main_log = processes.current_log(MAIN)
    assert re.search(r"Received response to POST \S+/_matrix/push/v1/notify: 200", log_of("pusher"))
    assert re.search(r"Received response to PUT \S+/_matrix/app/v1/transactions/\S+: 200", log_of("appservice-sender"))
    for duty in ("/_matrix/push/v1/notify", "/_matrix/app/v1/transactions/", "Task complete: "):
        assert duty not in main_log, f"main did {duty}"

    for name in hs.procs:
        errors = [line for line in processes.current_log(name).splitlines() if " - ERROR - " in line]
        assert not errors, f"{name}: {errors[:3]}"
