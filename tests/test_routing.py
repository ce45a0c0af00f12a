"""The routing table and the router config, checked against Synapse's worker documentation.

Expected classes come from `docs/workers.md` in element-hq/synapse (the generic worker's endpoint lists,
the stream-writer sections, the media repository section), written out again here, not read from the
table under test. The HAProxy checks run Debian's `haproxy` binary: `-c` on the generated file, then a
live run against stand-in backends to see stickiness and first-match order as HAProxy applies them.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path

import pytest
import yaml
from synapse.handlers.auth import AuthHandler
from synapse.types import UserID

from synapse_workers.kube.haproxy import HEALTH_PATH, haproxy_config, template_slots
from synapse_workers.kube.router import nginx_size
from synapse_workers.model.settings import SYNAPSE_MAX_UPLOAD_SIZE
from synapse_workers.model.worker_classes import BY_NAME
from synapse_workers.plan import Plan, build_plan
from synapse_workers.synapse.routing import ROUTES, route_request, routes_for_plan
from tests.conftest import settings_for

ROOM = "!abcdef:example.org"
USER = "@alice:example.org"

# (method, path, class) from docs/workers.md, section by section.
DOCUMENTED: tuple[tuple[str, str, str], ...] = (
    # generic_worker "Sync requests"; load balancing: sync to the synchrotrons.
    ("GET", "/_matrix/client/v3/sync", "synchrotron"),
    ("GET", "/_matrix/client/r0/sync", "synchrotron"),
    ("GET", "/_matrix/client/v3/events", "synchrotron"),
    ("GET", "/_matrix/client/api/v1/initialSync", "synchrotron"),
    ("GET", f"/_matrix/client/v3/rooms/{ROOM}/initialSync", "synchrotron"),
    # Stream writers.
    ("PUT", f"/_matrix/client/v3/rooms/{ROOM}/typing/{USER}", "typing-writer"),
    ("PUT", "/_matrix/client/v3/sendToDevice/m.room.encrypted/txn1", "todevice-writer"),
    ("POST", f"/_matrix/client/v3/rooms/{ROOM}/receipt/m.read/$event1", "receipts-writer"),
    ("POST", f"/_matrix/client/v3/rooms/{ROOM}/read_markers", "receipts-writer"),
    ("PUT", f"/_matrix/client/v3/presence/{USER}/status", "presence-writer"),
    ("GET", f"/_matrix/client/v3/presence/{USER}/status", "presence-writer"),
    # synapse.app.media_repository.
    ("POST", "/_matrix/media/v3/upload", "media-repository"),
    ("GET", "/_matrix/media/v3/download/example.org/abc", "media-repository"),
    ("GET", "/_matrix/client/v1/media/download/example.org/abc", "media-repository"),
    ("GET", "/_matrix/client/v1/media/thumbnail/example.org/abc", "media-repository"),
    ("GET", "/_synapse/admin/v1/media/example.org/abc", "media-repository"),
    ("GET", f"/_synapse/admin/v1/users/{USER}/media", "media-repository"),
    ("POST", "/_synapse/admin/v1/purge_media_cache", "media-repository"),
    # generic_worker client API, event sending, registration/login, encryption.
    ("PUT", f"/_matrix/client/v3/rooms/{ROOM}/send/m.room.message/txn1", "generic-worker"),
    ("PUT", f"/_matrix/client/v3/rooms/{ROOM}/state/m.room.name/", "generic-worker"),
    ("POST", f"/_matrix/client/v3/rooms/{ROOM}/invite", "generic-worker"),
    ("POST", f"/_matrix/client/v3/rooms/{ROOM}/join", "generic-worker"),
    ("POST", f"/_matrix/client/v3/join/{ROOM}", "generic-worker"),
    ("GET", f"/_matrix/client/v3/rooms/{ROOM}/messages", "generic-worker"),
    ("GET", f"/_matrix/client/v3/rooms/{ROOM}/members", "generic-worker"),
    ("POST", "/_matrix/client/v3/createRoom", "generic-worker"),
    ("PUT", f"/_matrix/client/v3/profile/{USER}/displayname", "generic-worker"),
    ("GET", "/_matrix/client/versions", "generic-worker"),
    ("POST", "/_matrix/client/v3/login", "generic-worker"),
    ("POST", "/_matrix/client/v3/register", "generic-worker"),
    ("POST", "/_matrix/client/v3/keys/query", "generic-worker"),
    ("POST", "/_matrix/client/v3/keys/upload", "generic-worker"),
    ("GET", "/_matrix/client/v3/account/whoami", "generic-worker"),
    ("GET", "/_matrix/client/v3/joined_rooms", "generic-worker"),
    # GET-only on workers: reads go to a generic worker, writes to main (the stream's writer here).
    ("GET", f"/_matrix/client/v3/user/{USER}/account_data/m.direct", "generic-worker"),
    ("PUT", f"/_matrix/client/v3/user/{USER}/account_data/m.direct", "main"),
    ("GET", "/_matrix/client/v3/pushrules/", "generic-worker"),
    ("PUT", "/_matrix/client/v3/pushrules/global/override/rule1", "main"),
    # Not in any worker list: main.
    ("POST", "/_synapse/admin/v1/register", "main"),
    ("POST", "/_matrix/client/v3/logout", "main"),
    ("POST", f"/_matrix/client/v3/rooms/{ROOM}/upgrade", "main"),
    ("GET", "/health", "main"),
)

FEDERATION_DOCUMENTED: tuple[tuple[str, str, str], ...] = (
    ("PUT", "/_matrix/federation/v1/send/txn1", "generic-worker"),
    ("GET", "/_matrix/federation/v1/version", "generic-worker"),
    ("GET", f"/_matrix/federation/v1/make_join/{ROOM}/{USER}", "generic-worker"),
    ("PUT", f"/_matrix/federation/v2/send_join/{ROOM}/$ev", "generic-worker"),
    ("POST", "/_matrix/key/v2/query", "generic-worker"),
    ("GET", "/_matrix/federation/v1/media/download/abc", "media-repository"),
    # Not in the worker list: main serves federation too when it is enabled.
    ("GET", "/_matrix/key/v2/server", "main"),
)


# (method, path, class) for requests the installed Synapse serves on workers that docs/workers.md does not
# list as such (found by tests/e2e/test_route_audit.py; source in synapse/rest/...), and the docs' one
# media prefix Synapse 1.163 does not mount. Kept here too so the fast tier guards them.
SYNAPSE_ON_WORKERS: tuple[tuple[str, str, str], ...] = (
    ("PUT", "/_matrix/client/v3/createRoom/txn1", "generic-worker"),  # room.py RoomCreateRestServlet
    ("PUT", f"/_matrix/client/v3/rooms/{ROOM}/join/txn1", "generic-worker"),  # RoomMembershipRestServlet
    ("GET", "/_matrix/client/v3/events/$event1", "generic-worker"),  # events.py EventRestServlet
    ("GET", "/_matrix/client/unstable/sync", "synchrotron"),  # sync.py: client_patterns("/sync$")
    ("GET", f"/_matrix/client/v1/room_summary/{ROOM}", "generic-worker"),  # room.py RoomSummaryRestServlet
    ("POST", "/_matrix/client/v1/appservice/as1/ping", "generic-worker"),  # appservice_ping.py
    ("POST", "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/d1/restart", "generic-worker"),
    ("POST", "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/d1/cancel", "main"),  # main only
    ("GET", f"/_synapse/admin/v2/users/{USER}", "generic-worker"),  # admin/__init__.py UserRestServletV2Get
    ("PUT", f"/_synapse/admin/v2/users/{USER}", "main"),
    ("GET", "/_synapse/media/anything", "main"),  # nothing mounted there in Synapse 1.163
)


@pytest.mark.parametrize(("method", "path", "expected"), SYNAPSE_ON_WORKERS)
def test_paths_synapse_serves_on_workers(plan: Plan, method: str, path: str, expected: str) -> None:
    assert route_request(plan, method, path) == expected


@pytest.fixture(scope="module")
def plan() -> Plan:
    return build_plan(settings_for(ccu=1000))


@pytest.fixture(scope="module")
def federated_plan() -> Plan:
    return build_plan(settings_for(ccu=1000, federation={"enabled": True, "servers": 10}))


@pytest.mark.parametrize(("method", "path", "expected"), DOCUMENTED)
def test_documented_paths_reach_their_class(plan: Plan, method: str, path: str, expected: str) -> None:
    assert route_request(plan, method, path) == expected


@pytest.mark.parametrize(("method", "path", "expected"), FEDERATION_DOCUMENTED)
def test_federation_paths_routed_only_with_federation(
    plan: Plan, federated_plan: Plan, method: str, path: str, expected: str
) -> None:
    assert route_request(federated_plan, method, path) == expected
    assert route_request(plan, method, path) is None, "federation is off: the router refuses it"


OPENID_USERINFO = "/_matrix/federation/v1/openid/userinfo"


def test_openid_userinfo_reaches_main_with_federation_off(plan: Plan, federated_plan: Plan) -> None:
    """Main issues OpenID tokens; integration managers and widgets verify them at this federation path,
    which Synapse serves through the `openid` listener resource without federation."""
    assert route_request(plan, "GET", OPENID_USERINFO) == "main"
    assert route_request(plan, "GET", "/_matrix/federation/v1/version") is None
    assert route_request(plan, "GET", OPENID_USERINFO + "/more") is None
    assert route_request(federated_plan, "GET", OPENID_USERINFO) == "generic-worker"
    (listener,) = (
        entry for entry in yaml.safe_load(plan.workload("main").config.text)["listeners"] if entry["port"] == 8008
    )
    assert listener["resources"][0]["names"] == ["client", "openid"]


def test_the_openid_resource_is_synapses_userinfo_servlet() -> None:
    """What the router lets through must be what the `openid` resource serves in the installed Synapse."""
    root = Path(find_spec("synapse").origin).parent  # type: ignore[arg-type, union-attr]
    homeserver = (root / "app" / "homeserver.py").read_text()
    assert 'if name == "openid":' in homeserver and 'servlet_groups=["openid"]' in homeserver
    transport = (root / "federation" / "transport" / "server" / "__init__.py").read_text()
    assert '"openid": (OpenIdUserInfo,)' in transport
    assert 'PATH = "/openid/userinfo"' in transport
    assert 'FEDERATION_V1_PREFIX = FEDERATION_PREFIX + "/v1"' in (root / "api" / "urls.py").read_text()
    assert 'FEDERATION_PREFIX = "/_matrix/federation"' in (root / "api" / "urls.py").read_text()


def test_haproxy_lets_only_openid_userinfo_through_with_federation_off(live_router: str) -> None:
    assert _served_by(live_router, "GET", OPENID_USERINFO, token="syt_x", query_token=True) == "main/0"
    with pytest.raises(urllib.error.HTTPError) as refused:
        _served_by(live_router, "GET", "/_matrix/federation/v1/version")
    assert refused.value.code == 404


def test_federation_routes_exist_only_in_federated_plans(plan: Plan, federated_plan: Plan) -> None:
    assert not any(r.federation for r in routes_for_plan(plan))
    assert any(r.federation for r in routes_for_plan(federated_plan))
    assert "_matrix/federation" not in "".join(r.pattern for r in routes_for_plan(plan))
    text = haproxy_config(plan)
    assert "http-request deny deny_status 404 if federation_path !openid_path" in text
    assert "deny_status 404" not in haproxy_config(federated_plan)


def test_only_deployed_http_classes_are_targets(federated_plan: Plan) -> None:
    deployed = {w.part for w in federated_plan.workloads}
    targets = {r.target for r in routes_for_plan(federated_plan)}
    assert targets <= deployed
    for target in targets:
        assert {"client", "media"} & set(BY_NAME[target].http_resources), target
    # Event persisters and federation senders serve no client HTTP: no route, no backend.
    text = haproxy_config(federated_plan)
    assert "backend event-persister" not in text
    assert "backend federation-sender" not in text
    assert "federation-sender" in deployed


def test_table_targets_are_known_classes() -> None:
    for route in ROUTES:
        assert route.target in BY_NAME, route
        re.compile(route.pattern)


def test_config_is_deterministic() -> None:
    first = haproxy_config(build_plan(settings_for(ccu=1000)))
    second = haproxy_config(build_plan(settings_for(ccu=1000)))
    assert first == second


def test_autoscaled_classes_use_a_fixed_template_over_dns() -> None:
    """The server-template count follows the HPA maximum, never the replicas running now."""
    small = haproxy_config(build_plan(settings_for(ccu=1000)))
    pinned = haproxy_config(build_plan(settings_for(ccu=1000, workers={"synchrotron": {"minReplicas": 3}})))
    line = "server-template synchrotron- 64 synapse-synchrotron-pods.matrix.svc.cluster.local:8008"
    assert line in small
    assert line in pinned
    assert "server synapse-synchrotron" not in small
    assert template_slots(1) == 64
    assert template_slots(65) == 128
    assert template_slots(200) == 256


def test_statefulset_pods_by_stable_dns_names() -> None:
    text = haproxy_config(build_plan(settings_for(ccu=1000, workers={"receipts-writer": {"replicas": 3}})))
    for i in range(3):
        pod = f"synapse-receipts-writer-{i}"
        assert f"server {pod} {pod}.synapse-receipts-writer.matrix.svc.cluster.local:8008" in text
    assert "synapse-receipts-writer-3" not in text


def test_server_override_changes_only_server_lines(plan: Plan) -> None:
    addresses = {b: ["127.0.0.1:8008"] for b in ("main", *{r.target for r in routes_for_plan(plan)})}
    real = haproxy_config(plan).splitlines()
    local = haproxy_config(plan, servers=addresses).splitlines()

    def routing(lines: list[str]) -> list[str]:
        kept, in_resolvers = [], False
        for line in lines:
            if line.startswith("resolvers "):
                in_resolvers = True
            if in_resolvers:
                in_resolvers = line != ""  # the section ends at its blank line, which goes with it
                continue
            if not line.strip().startswith(("server ", "server-template ")):
                kept.append(line)
        return kept

    assert routing(real) == routing(local)
    assert "resolvers" not in "\n".join(local)


def _haproxy() -> str | None:
    found = shutil.which("haproxy")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("haproxy is not installed (apt-get install -y haproxy)")
        pytest.skip("haproxy is not installed")
    return found


@pytest.mark.parametrize("federation", [False, True])
def test_haproxy_accepts_generated_config(federation: bool, tmp_path: Path) -> None:
    haproxy = _haproxy()
    assert haproxy is not None
    extra = {"federation": {"enabled": True, "servers": 10}} if federation else {}
    path = tmp_path / "haproxy.cfg"
    path.write_text(haproxy_config(build_plan(settings_for(ccu=5000, **extra))))
    result = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ALERT" not in result.stdout + result.stderr


# --- HAProxy live: stand-in backends that answer with their own name ------------------------------------


class _Named(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = _answer  # noqa: N815 (http.server looks these names up)

    def log_message(self, format: str, *args: object) -> None:
        pass


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_router(plan: Plan) -> Iterator[str]:
    with _live_router(plan) as base:
        yield base


@pytest.fixture
def live_federated_router(federated_plan: Plan) -> Iterator[str]:
    with _live_router(federated_plan) as base:
        yield base


@contextlib.contextmanager
def _live_router(plan: Plan) -> Iterator[str]:
    """HAProxy with this plan's routing, four synchrotrons, three generic workers, two receipts writers."""
    haproxy = _haproxy()
    assert haproxy is not None
    host = "127.0.0.1"
    counts = {"synchrotron": 4, "generic-worker": 3, "receipts-writer": 2}
    backends = ("main", *{r.target for r in routes_for_plan(plan)})
    servers: dict[str, list[str]] = {}
    httpds: list[http.server.ThreadingHTTPServer] = []
    for backend in sorted(backends):
        servers[backend] = []
        for i in range(counts.get(backend, 1)):
            httpd = http.server.ThreadingHTTPServer((host, 0), _Named)
            httpd.name = f"{backend}/{i}"  # type: ignore[attr-defined]
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            httpds.append(httpd)
            servers[backend].append(f"{host}:{httpd.server_address[1]}")
    text = haproxy_config(plan, bind=host, servers=servers)
    port, health = _free_port(host), _free_port(host)
    text = text.replace(f"bind {host}:8008", f"bind {host}:{port}").replace(
        f"bind {host}:8404", f"bind {host}:{health}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "haproxy.cfg"
        cfg.write_text(text)
        proc = subprocess.Popen(
            [haproxy, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            base = f"http://{host}:{port}"
            deadline = time.monotonic() + 10
            while True:
                try:
                    with urllib.request.urlopen(f"http://{host}:{health}{HEALTH_PATH}", timeout=1):
                        break
                except (urllib.error.URLError, OSError):
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise
                    time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            for httpd in httpds:
                httpd.shutdown()
                httpd.server_close()


def _served_by(
    base: str,
    method: str,
    path: str,
    token: str | None = None,
    query_token: bool = False,
    authorization: str | None = None,
) -> str:
    url = base + path + (f"?access_token={token}" if query_token and token else "")
    request = urllib.request.Request(url, method=method, data=b"{}" if method != "GET" else None)
    if token and not query_token:
        request.add_header("Authorization", f"Bearer {token}")
    if authorization:
        request.add_header("Authorization", authorization)
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.read().decode())


def test_haproxy_routes_like_the_table(live_router: str, plan: Plan) -> None:
    for method, path, expected in DOCUMENTED:
        for token in ("syt_x", None):  # unauthenticated requests (login, versions) must route too
            served = _served_by(live_router, method, path, token=token)
            assert served.split("/")[0] == expected, (method, path, served)
        assert expected == route_request(plan, method, path)


def synapse_token(localpart: str) -> str:
    """An access token as the installed Synapse makes one (`syt_<base64 localpart>_<random>_<crc>`)."""
    return str(AuthHandler.generate_access_token(None, UserID(localpart, "example.org")))  # type: ignore[arg-type]


def test_sync_sticks_to_one_synchrotron_per_user(live_router: str) -> None:
    """Three logins of one user (three tokens Synapse made) land on one synchrotron, whose caches hold
    that user's state; different users spread."""
    chosen = set()
    for user in range(12):
        tokens = [synapse_token(f"user{user}") for _ in range(3)]
        assert len(set(tokens)) == 3
        served = {_served_by(live_router, "GET", "/_matrix/client/v3/sync", token) for token in tokens}
        assert len(served) == 1, (user, served)
        chosen |= served
    assert len(chosen) > 1, "12 users all hashed onto one synchrotron"


def test_inbound_federation_hashes_on_the_origin_server(live_federated_router: str) -> None:
    """Behind an Ingress every transaction comes from the Ingress pods: the origin in the X-Matrix header,
    not the TCP source, decides the generic worker, so one remote server's transactions stay together."""
    chosen = set()
    for server in range(12):
        served = {
            _served_by(
                live_federated_router,
                "PUT",
                f"/_matrix/federation/v1/send/txn{n}",
                authorization=f'X-Matrix origin="remote{server}.example",destination="example.org",'
                f'key="ed25519:a{n}",sig="sig{n}"',
            )
            for n in range(4)
        }
        assert len(served) == 1, (server, served)
        chosen |= served
    assert len(chosen) > 1, "12 origins all hashed onto one generic worker"


def test_sync_sticks_to_one_synchrotron_per_token(live_router: str) -> None:
    """Header or query parameter, the same token lands on the same synchrotron; many tokens spread."""
    chosen = set()
    for user in range(24):
        token = synapse_token(f"someone{user}")
        by_header = {_served_by(live_router, "GET", "/_matrix/client/v3/sync", token) for _ in range(4)}
        by_query = {
            _served_by(live_router, "GET", "/_matrix/client/v3/sync", token, query_token=True) for _ in range(4)
        }
        assert len(by_header) == 1, by_header
        assert by_header == by_query
        chosen |= by_header
    assert len(chosen) > 1, "24 users all hashed onto one synchrotron"


def test_room_writes_stick_to_one_worker_per_room(live_router: str) -> None:
    """Event sending hashes on the room id, whoever sends; different rooms spread over the workers."""
    chosen = set()
    for room in range(18):
        room_id = f"!room{room}:example.org"
        served = {
            _served_by(live_router, "PUT", f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/t{n}", f"tok{n}")
            for n in range(5)
        }
        assert len(served) == 1, served
        chosen |= served
    assert len(chosen) > 1
    assert all(s.startswith("generic-worker/") for s in chosen)


def test_ingress_takes_the_server_name_host_when_federation_is_on() -> None:
    """Delegation answers <serverName>:443, so the Ingress must take that host as well as the public one."""
    tls = {"host": "matrix.example.org", "tlsSecret": "matrix-tls"}
    plan = build_plan(settings_for(serverName="example.org", router=tls, federation={"enabled": True, "servers": 5}))
    ingress = next(m for m in plan.router_manifests if m["kind"] == "Ingress")
    assert [r["host"] for r in ingress["spec"]["rules"]] == ["matrix.example.org", "example.org"]
    assert ingress["spec"]["tls"] == [{"hosts": ["matrix.example.org", "example.org"], "secretName": "matrix-tls"}]
    closed = build_plan(settings_for(serverName="example.org", router=tls))
    assert [r["host"] for r in next(m for m in closed.router_manifests if m["kind"] == "Ingress")["spec"]["rules"]] == [
        "matrix.example.org"
    ]


def test_the_ingress_lets_uploads_as_large_as_synapse_accepts() -> None:
    """ingress-nginx refuses bodies over 1 MiB unless told; Synapse's limit is 50M unless set."""
    default = build_plan(settings_for(ccu=1000))
    (ingress,) = (m for m in default.router_manifests if m["kind"] == "Ingress")
    assert ingress["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/proxy-body-size": "50m"}
    assert "max_upload_size" not in yaml.safe_load(default.shared.text)

    bigger = build_plan(
        settings_for(
            ccu=1000,
            media={"maxUploadSize": "2G"},
            router={"ingressAnnotations": {"example.com/extra": "yes"}},
        )
    )
    (ingress,) = (m for m in bigger.router_manifests if m["kind"] == "Ingress")
    assert ingress["metadata"]["annotations"] == {
        "example.com/extra": "yes",
        "nginx.ingress.kubernetes.io/proxy-body-size": "2g",
    }
    assert yaml.safe_load(bigger.shared.text)["max_upload_size"] == "2G"
    chosen = build_plan(
        settings_for(ccu=1000, router={"ingressAnnotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "0"}})
    )
    (ingress,) = (m for m in chosen.router_manifests if m["kind"] == "Ingress")
    assert ingress["metadata"]["annotations"] == {"nginx.ingress.kubernetes.io/proxy-body-size": "0"}


@pytest.mark.parametrize("size", ["50M", "2G", "1T", "700K", "12345"])
def test_the_ingress_size_is_the_size_synapse_reads(size: str) -> None:
    """Both sides 1024-based: Synapse's parse_size and nginx's k/m/g suffixes (no t)."""
    from synapse.config._base import Config  # noqa: PLC0415

    text = nginx_size(size)
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    nginx_bytes = int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    assert nginx_bytes == Config.parse_size(size)


def test_synapse_defaults_max_upload_size_to_what_the_settings_assume() -> None:
    root = Path(find_spec("synapse").origin).parent  # type: ignore[arg-type, union-attr]
    source = (root / "config" / "repository.py").read_text()
    assert f'config.get("max_upload_size", "{SYNAPSE_MAX_UPLOAD_SIZE}")' in source
