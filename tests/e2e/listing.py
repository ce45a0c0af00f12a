"""What each process of the e2e homeserver serves: Synapse's own registrations, and the live process.

Two sources, cross-checked, so neither can quietly be wrong:
- the registrations `servlets.py` records while Synapse builds the process's listeners (which servlet
  takes which method and path, in Synapse's matching order, on which mounted resource);
- a request to the running process itself (bypassing the router), without credentials: Synapse answers
  404 `M_UNRECOGNIZED` when no servlet pattern matches (`JsonResource._get_handler_for_request` in
  `synapse/http/server.py`), 405 when a pattern matches but not the method, a plain 404 page for a prefix
  nothing is mounted on, and 500 for a servlet that refuses the request on this worker (push rules off
  their writer, `rest/client/push_rule.py`); anything else (401, 400, 403, 200) means a servlet took it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from synapse_workers.synapse.topology import CLIENT_PORT

REPLICATION_PREFIX = "/_synapse/replication"
"""Served on the replication listener only (port 9093), never through the router."""
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Registration:
    method: str
    pattern: str
    servlet: str
    workers_denied: bool


@dataclass(frozen=True)
class Verdict:
    served: bool
    why: str
    """The servlet that takes the request, or why none does."""
    decided_at_request_time: bool = False
    """The servlet is there but refuses some methods on workers unless this process is the stream's
    writer (`WORKERS_DENIED_METHODS`): only the live process can say."""


@dataclass
class Listing:
    """The client-facing HTTP listener of one process (the one the router sends to), as Synapse built it."""

    process: str
    is_worker: bool
    mounts: dict[str, str]
    """Mount prefix -> resource type, for every resource on the listener."""
    routes: dict[str, dict[str, dict[str, Registration]]] = field(default_factory=dict)
    """Mount prefix -> pattern -> method -> registration, in Synapse's registration (matching) order."""

    def registrations(self) -> list[tuple[str, Registration]]:
        """(mount prefix, registration) for every registration reachable through this listener."""
        return [
            (prefix, r) for prefix, by_pattern in self.routes.items() for m in by_pattern.values() for r in m.values()
        ]

    def mount_for(self, path: str) -> str | None:
        """The resource twisted hands the path to: the longest mount prefix, whole segments only."""
        fitting = [p for p in self.mounts if path == p or path.startswith(p.rstrip("/") + "/")]
        return max(fitting, key=len) if fitting else None

    def dispatch(self, method: str, path: str) -> Verdict:
        """What Synapse does with the request on this listener, from the recorded registrations: the first
        pattern of the mounted resource that matches decides (`JsonResource._get_handler_for_request`)."""
        prefix = self.mount_for(path)
        if prefix is None:
            return Verdict(False, "404: nothing mounted")
        if prefix not in self.routes:
            return Verdict(True, f"non-servlet resource {self.mounts[prefix]}")
        for pattern, methods in self.routes[prefix].items():
            if re.match(pattern, path):
                registration = methods.get("GET" if method == "HEAD" else method)
                if registration is None:
                    return Verdict(False, f"405: {pattern} takes {sorted(methods)}")
                if registration.workers_denied and self.is_worker:
                    return Verdict(False, f"{registration.servlet} refuses {method} on workers", True)
                return Verdict(True, registration.servlet)
        return Verdict(False, "404: no servlet pattern matches")


def parse_listing(process: str, is_worker: bool, listed: dict[str, Any]) -> Listing:
    """The listener the router reaches: not the replication one, and more than the `/health` and
    (empty) `/_synapse/admin` resources a worker mounts on every listener (`generic_worker.py`)."""
    client = [
        tree
        for tree in listed["listeners"]
        if all(m["prefix"] != REPLICATION_PREFIX for m in tree)
        and any(m["prefix"] not in ("/health", "/_synapse/admin") for m in tree)
    ]
    assert len(client) == 1, f"{process}: expected one client-facing HTTP listener, found {len(client)}"
    by_id: dict[int, list[dict[str, Any]]] = {}
    for entry in listed["registrations"]:
        by_id.setdefault(entry["resource_id"], []).append(entry)
    listing = Listing(process, is_worker, {m["prefix"]: m["resource"] for m in client[0]})
    for mount in client[0]:
        if mount["resource_id"] not in by_id:
            continue
        table: dict[str, dict[str, Registration]] = {}
        for entry in by_id[mount["resource_id"]]:
            table.setdefault(entry["pattern"], {})[entry["method"]] = Registration(
                entry["method"], entry["pattern"], entry["servlet"], entry["workers_denied"]
            )
        listing.routes[mount["prefix"]] = table
    return listing


def list_processes(configs: dict[str, Path], password: str, out: Path) -> dict[str, dict[str, Any]]:
    """Run `servlets.py` for each process (name -> config file), all at once; their raw listings."""
    env = {**os.environ, "PGPASSWORD": password, "PYTHONPATH": str(REPO_ROOT)}
    started: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}
    for name, config in configs.items():
        result, log = out / f"{name}.json", out / f"{name}.log"
        with log.open("wb") as sink:
            argv = [sys.executable, "-m", "tests.e2e.servlets", "--config", str(config), "--out", str(result)]
            started[name] = (
                subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT),
                result,
                log,
            )
    listings: dict[str, dict[str, Any]] = {}
    for name, (proc, result, log) in started.items():
        try:
            code = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = -1
        assert code == 0, f"listing {name} failed ({code}):\n{log.read_text(errors='replace')[-3000:]}"
        listings[name] = json.loads(result.read_text())
    return listings


def live_verdict(response: requests.Response) -> Verdict:
    try:
        errcode = response.json().get("errcode")
    except ValueError:
        errcode = None
    status = response.status_code
    if status == 404 and errcode in (None, "M_UNRECOGNIZED"):
        return Verdict(False, f"404 {errcode or 'no resource'}")
    if status == 405:
        return Verdict(False, "405")
    if status >= 500:
        return Verdict(False, f"{status} {errcode}")
    return Verdict(True, f"{status} {errcode or ''}".strip())


def probe_all(requests_to_make: set[tuple[str, str, str]]) -> dict[tuple[str, str, str], Verdict]:
    """(address, method, path) -> what the live process answered, without credentials."""
    session = requests.Session()
    session.trust_env = False

    def probe(item: tuple[str, str, str]) -> Verdict:
        address, method, path = item
        body = None if method in ("GET", "HEAD", "DELETE") else b"{}"
        response = session.request(method, f"http://{address}:{CLIENT_PORT}{path}", data=body, timeout=30)
        return live_verdict(response)

    items = sorted(requests_to_make)
    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(zip(items, pool.map(probe, items), strict=True))
