"""A plain-HTTP Matrix client and a push gateway/appservice stub, shared by the e2e modules that watch what
Synapse sends out (duties, transitions)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote

import requests

NOTIFY_PATH = "/_matrix/push/v1/notify"


@dataclass
class Stub:
    """A push gateway and an appservice in one loopback HTTP server: records every request it gets."""

    base: str
    received: list[tuple[str, str, Any]] = field(default_factory=list)

    def wait_for(self, what: str, found: Callable[[str, str, Any], bool], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(found(m, p, b) for m, p, b in list(self.received)):
                return
            time.sleep(0.2)
        raise AssertionError(f"the stub never received {what}: {[(m, p) for m, p, _ in self.received]}")

    def notified(self) -> list[str]:
        """The event ID of every push notification received, repeats kept."""
        return [
            str(b["notification"]["event_id"])
            for _, p, b in list(self.received)
            if p == NOTIFY_PATH and "event_id" in b.get("notification", {})
        ]


@contextmanager
def serve_stub(host: str) -> Iterator[Stub]:
    received: list[tuple[str, str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            received.append((self.command, self.path, body))
            reply = b'{"rejected": []}' if self.path.startswith("/_matrix/push/") else b"{}"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        do_GET = do_POST = do_PUT = _answer  # noqa: N815 (http.server dispatches on these names)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Stub(f"http://{host}:{server.server_address[1]}", received)
    finally:
        server.shutdown()
        server.server_close()


class Client:
    """Plain HTTP through the router, as one user."""

    def __init__(self, base: str, account: dict[str, Any]) -> None:
        self.base, self.user_id, self.device_id = base, account["user_id"], account["device_id"]
        self.token = str(account["access_token"])
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Bearer {account['access_token']}"

    def call(self, method: str, path: str, body: Any = None, ok: bool = True, **kwargs: Any) -> requests.Response:
        response = self.session.request(method, self.base + path, json=body, timeout=30, **kwargs)
        if ok:
            assert response.status_code == 200, (method, path, response.status_code, response.text)
        return response

    def send(self, room_id: str, text: str) -> str:
        txn = secrets.token_hex(8)
        path = f"/_matrix/client/v3/rooms/{quote(room_id)}/send/m.room.message/{txn}"
        return str(self.call("PUT", path, {"msgtype": "m.text", "body": text}).json()["event_id"])

    def set_pusher(self, gateway: Stub) -> None:
        """An HTTP pusher for this user's device, at the stub's push gateway."""
        pusher = {
            "kind": "http",
            "app_id": "org.example.e2e",
            "pushkey": secrets.token_hex(8),
            "app_display_name": "e2e",
            "device_display_name": "e2e",
            "lang": "en",
            "data": {"url": gateway.base + NOTIFY_PATH},
        }
        self.call("POST", "/_matrix/client/v3/pushers/set", pusher)


def eventually(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.3)
