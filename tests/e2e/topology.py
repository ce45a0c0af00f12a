"""The e2e homeserver as plain code: the plan's configs moved onto loopback, and its processes started.

Shared by every e2e module (each starts its own homeserver through the `homeserver` fixture), so a
module that measures the homeserver (Prometheus, `recommend`) runs the same topology the client checks.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import requests
import yaml
from synapse.config.homeserver import HomeServerConfig

from synapse_workers.kube.haproxy import haproxy_config
from synapse_workers.kube.pooler import AUTH_DIR, AUTH_FILE_SCRIPT, CONFIG_DIR, pgbouncer_ini
from synapse_workers.kube.schema import MERGED_FILE, SCHEMA_TOOL
from synapse_workers.model.settings import SECRET_FILES
from synapse_workers.model.worker_classes import WORKER_CLASSES
from synapse_workers.plan import Plan, build_plan
from synapse_workers.synapse.topology import CLIENT_PORT, POOLER_PORT
from tests.conftest import settings_for
from tests.e2e.services import CHECK_APPLICATION, MAX_CONNECTIONS, Loopback, Postgres, Processes, wait_http

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
"""One PgBouncer (two during its rollout) x 15 = 30 server connections, plus main's 10, the background
worker's 5 and the schema Job's 1 direct ones (session state): the 46 that max_connections 56 less 10
reserved allows. A pool
of 15, as before main went direct: the driven load of the recommend e2e needs it."""


BEYOND_GUIDE = tuple(c.name for c in WORKER_CLASSES if c.beyond_guide)


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
            workers={
                "event-persister": {"replicas": persisters},
                "receipts-writer": {"replicas": 2},
                # One of each duty beyond the guide, though 100 CCU would leave them on main.
                **{name: {"replicas": 1} for name in BEYOND_GUIDE},
            },
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


def localise(
    text: str, name: str, loopback: Loopback, root: Path, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
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
    for key, value in (extra or {}).items():
        if key == "database":  # test-only database options beside the plan's (a lowered timeout)
            config["database"].update(value)
        else:
            config[key] = value
    return config


def write_configs(
    plan: Plan, loopback: Loopback, root: Path, extra: dict[str, Any] | None = None
) -> dict[str, tuple[str, str, Path]]:
    procs: dict[str, tuple[str, str, Path]] = {}
    for workload in plan.workloads:
        for file_name, text in workload.process_configs():
            name = file_name.removesuffix(".yaml")
            path = root / "config" / file_name
            path.write_text(yaml.safe_dump(localise(text, name, loopback, root, extra), sort_keys=True))
            procs[name] = (workload.part, loopback.of(name), path)
    return procs


def start_synapse(hs_procs: dict[str, tuple[str, str, Path]], processes: Processes, password: str) -> None:
    """Main first (it creates the schema), then every worker at once; the password as the pods get it."""
    start_processes([MAIN], hs_procs, processes, password, timeout=120)
    start_processes([n for n in hs_procs if n != MAIN], hs_procs, processes, password)


def stages(plan: Plan) -> list[list[str]]:
    """The Synapse process names of each rollout stage, in the program's order (`kube/rollout.py`:
    writers, main, readers), from the workloads' own rules."""
    by_stage: dict[int, list[str]] = {}
    for workload in plan.workloads:
        names = [file_name.removesuffix(".yaml") for file_name, _ in workload.process_configs()]
        by_stage.setdefault(workload.rules.stage, []).extend(names)
    return [sorted(by_stage[stage]) for stage in sorted(by_stage)]


def start_processes(
    names: list[str],
    procs: dict[str, tuple[str, str, Path]],
    processes: Processes,
    password: str,
    timeout: float = 180,
) -> None:
    """The named Synapse processes together, each healthy (within `timeout` seconds) before this returns."""
    env = {**os.environ, "PGPASSWORD": password}
    started = {}
    for name in names:
        app = "synapse.app.homeserver" if name == MAIN else "synapse.app.generic_worker"
        started[name] = processes.start(name, [sys.executable, "-m", app, "-c", str(procs[name][2])], env)
    for name in names:
        try:
            wait_http(f"http://{procs[name][1]}:{CLIENT_PORT}/health", timeout, started[name])
        except (RuntimeError, TimeoutError) as error:
            raise AssertionError(f"{name} did not start:\n{processes.log(name)[-3000:]}") from error


def start_in_stages(plan: Plan, procs: dict[str, tuple[str, str, Path]], processes: Processes, password: str) -> None:
    """Each stage's processes together, every one healthy before the next stage starts: what the
    program's dependencies do after a quiesce (the schema is already there)."""
    for names in stages(plan):
        start_processes(names, procs, processes, password)


def run_schema_job(plan: Plan, procs: dict[str, tuple[str, str, Path]], password: str) -> None:
    """The schema Job's command on main's config as this suite lays it out (one file: the Job merges
    main's two files into one first; `write_configs` already wrote them merged)."""
    script = plan.schema()["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert f"exec {SCHEMA_TOOL} --database-config {MERGED_FILE}" in script
    tool = Path(sys.executable).parent / SCHEMA_TOOL
    env = {**os.environ, "PGPASSWORD": password}
    argv = [str(tool), "--database-config", str(procs[MAIN][2])]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def quiesce(
    hs: Homeserver,
    new: Plan,
    loopback: Loopback,
    workdir: Path,
    processes: Processes,
    password: str,
    extra: dict[str, Any] | None = None,
) -> Homeserver:
    """A change that re-routes, applied as the program applies it (`kube/quiesce.py`): every Synapse
    process stopped, readers first and each stage gone before the next (the foreground deletes), then
    the schema Job's tool alone on main's new config (it waits for the new routing marker, so for the
    stop), then all started on the new configs in stage order. The router restarts only if its config
    changed."""
    for names in reversed(stages(hs.plan)):
        processes.stop_all(names)
    procs = write_configs(new, loopback, workdir, extra)
    run_schema_job(new, procs, password)
    start_in_stages(new, procs, processes, password)
    router = router_config(new, procs, loopback)
    if router != hs.router:
        processes.stop("haproxy")
        router = start_router(new, procs, loopback, workdir, processes)
    return Homeserver(new, procs, router)


def router_config(plan: Plan, hs_procs: dict[str, tuple[str, str, Path]], loopback: Loopback) -> str:
    """The plan's HAProxy config with each class's servers at its processes' loopback addresses."""
    servers: dict[str, list[str]] = {}
    for _, (class_name, address, _) in sorted(hs_procs.items()):
        servers.setdefault(class_name, []).append(f"{address}:{CLIENT_PORT}")
    return haproxy_config(plan, bind=loopback.services, servers=servers)


def start_router(
    plan: Plan, hs_procs: dict[str, tuple[str, str, Path]], loopback: Loopback, root: Path, processes: Processes
) -> str:
    text = router_config(plan, hs_procs, loopback)
    path = root / "haproxy.cfg"
    path.write_text(text)
    haproxy = shutil.which("haproxy")
    assert haproxy is not None
    check = subprocess.run([haproxy, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    proc = processes.start("haproxy", [haproxy, "-db", "-f", str(path)])
    wait_http(f"http://{loopback.services}:8404/healthz", 20, proc)
    return text


def start_pgbouncer(
    plan: Plan, pg: Postgres, loopback: Loopback, processes: Processes, edit: Callable[[str], str] | None = None
) -> None:
    """The plan's pgbouncer.ini and the pod's own start script, with paths moved out of /etc and /run;
    `edit` changes the ini for a test (a lowered statement timeout)."""
    root = processes.scratch_dir("e2e-pgbouncer-")
    ini = pgbouncer_ini(
        plan.settings, listen=loopback.services, auth_file=str(root / "userlist.txt"), server=(pg.host, pg.port)
    )
    ini = edit(ini) if edit else ini
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


def register(base: str, secret: str, user: str, admin: bool = False) -> dict[str, Any]:
    """Synapse's shared-secret registration, through the router (it must reach main). The answer (user_id,
    access_token, device_id) and the password, for logging in on more devices."""
    session = requests.Session()
    session.trust_env = False
    nonce = session.get(f"{base}/_synapse/admin/v1/register", timeout=30).json()["nonce"]
    password = secrets.token_hex(8)
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(b"\x00".join(x.encode() for x in (nonce, user, password, "admin" if admin else "notadmin")))
    body = {"nonce": nonce, "username": user, "password": password, "admin": admin, "mac": mac.hexdigest()}
    response = session.post(f"{base}/_synapse/admin/v1/register", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return {**response.json(), "password": password}


def make_workdir(root: Path) -> None:
    """Config, media and secret folders as the pods mount them; the signing key is generated later."""
    (root / "config").mkdir()
    (root / "media").mkdir()
    (root / "secrets").mkdir()
    for file_name in SECRET_FILES.values():
        (root / "secrets" / file_name).write_text(secrets.token_hex(24))
    (root / "secrets" / "signing.key").unlink()


def start_homeserver(
    plan: Plan,
    postgres: Postgres,
    loopback: Loopback,
    processes: Processes,
    workdir: Path,
    extra: dict[str, Any] | None = None,
    pgbouncer_edit: Callable[[str], str] | None = None,
) -> Homeserver:
    """PgBouncer, a signing key, every Synapse process of the plan, then the router. `extra` is test-only
    config a module needs on every process (an appservice registration, a push gateway on loopback)."""
    start_pgbouncer(plan, postgres, loopback, processes, pgbouncer_edit)
    procs = write_configs(plan, loopback, workdir, extra)
    keygen = [sys.executable, "-m", "synapse.app.homeserver", "-c", str(procs[MAIN][2]), "--generate-keys"]
    subprocess.run(keygen, check=True, capture_output=True, cwd=workdir)
    assert (workdir / "secrets" / "signing.key").exists()
    start_synapse(procs, processes, postgres.password)
    router = start_router(plan, procs, loopback, workdir, processes)
    return Homeserver(plan, procs, router)


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


ACCESS = re.compile(r"Processed request: .*?\"(GET|PUT|POST|DELETE|OPTIONS) (\S+) HTTP")


def served_requests(processes: Processes, hs: Homeserver) -> dict[str, list[str]]:
    """Per process: the requests its own access log says it processed, as 'METHOD path'."""
    return {name: [f"{m} {p}" for m, p in ACCESS.findall(processes.log(name))] for name in hs.procs}


def check_served_by(
    processes: Processes, hs: Homeserver, expectations: tuple[tuple[str, str], ...], source: str
) -> None:
    """Each (request pattern, class): the requests matching it were served by that class and no other."""
    served = served_requests(processes, hs)
    for pattern, expected in expectations:
        where = {hs.procs[name][0] for name, lines in served.items() if any(re.match(pattern, x) for x in lines)}
        assert where == {expected}, f"{pattern}: served by {where or 'nobody'}, {source} {expected}"


def db_query(pg: Postgres, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """A query as the synapse role, under an application name the connection sampler leaves out."""
    conn = psycopg2.connect(
        host=pg.host, port=pg.port, user="synapse", dbname="synapse", application_name=CHECK_APPLICATION
    )
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args)
            return list(cur.fetchall())
    finally:
        conn.close()
