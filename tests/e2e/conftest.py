"""Services for the end-to-end test: PostgreSQL, Redis, Synapse processes and HAProxy on loopback.

Everything binds to one private loopback /24 (127.A.B.0, chosen per run and checked free), so runs by
other developers on this machine, and Synapse's fixed ports, never collide. Every process is started
in its own process group and killed with it in a finalizer, whatever the test did.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_MARKER = "=== e2e: starting"
APT_PACKAGES = ("postgresql-15", "redis-server", "haproxy", "pgbouncer")
MAX_CONNECTIONS = 40
"""The server's max_connections: far fewer than the e2e topology's pools would open without PgBouncer."""
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: real Synapse, PostgreSQL, Redis and HAProxy on loopback (slow)")


def _missing() -> list[str]:
    wanted = [PG_BIN / "initdb", PG_BIN / "pg_ctl"]
    missing = [str(p) for p in wanted if not p.exists()]
    missing += [b for b in ("redis-server", "haproxy", "pgbouncer") if shutil.which(b) is None]
    return missing


@pytest.fixture(scope="session")
def system_packages() -> None:
    """Debian's PostgreSQL 15, Redis, HAProxy and PgBouncer; installed when missing. In CI, missing fails."""
    if _missing() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
    missing = _missing()
    if missing:
        message = f"end-to-end prerequisites missing: {', '.join(missing)} (apt-get install {' '.join(APT_PACKAGES)})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Loopback:
    """Hands out 127.A.B.N addresses: .1 for the shared services, .10 upwards one per Synapse process."""

    prefix: str
    assigned: dict[str, str] = field(default_factory=dict)

    @property
    def services(self) -> str:
        return f"{self.prefix}.1"

    def of(self, name: str) -> str:
        if name not in self.assigned:
            self.assigned[name] = f"{self.prefix}.{10 + len(self.assigned)}"
        return self.assigned[name]


@pytest.fixture(scope="session")
def loopback() -> Loopback:
    rng = random.Random()
    for _ in range(50):
        prefix = f"127.{rng.randint(64, 250)}.{rng.randint(1, 250)}"
        if all(_port_free(f"{prefix}.{n}", p) for n in (1, 10, 11) for p in (5432, 6379, 6432, 8008, 9093)):
            return Loopback(prefix)
    raise RuntimeError("no free loopback /24 found")


def _memory_kib(pid: str, status: str) -> int:
    """Proportional set size (shared pages split between their users), so the sum over a process tree is
    not inflated by the pages every Synapse process shares; resident size where PSS is unavailable."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        return next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    except (OSError, StopIteration):
        return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)


def _tree_rss_kib(roots: set[int]) -> int:
    """Memory (PSS) of the given processes and all their descendants, from /proc."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        parent[int(entry)] = int(fields[1])
        rss[int(entry)] = _memory_kib(entry, status)
    total, seen, todo = 0, set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in rss:
            continue
        seen.add(pid)
        total += rss[pid]
        todo.extend(child for child, ppid in parent.items() if ppid == pid)
    return total


@dataclass
class Processes:
    """Processes started by the test, each in its own group; `stop` kills a group, `stop_all` every one."""

    logs: Path
    running: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    extra_roots: set[int] = field(default_factory=set)
    peak_kib: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        log.write(f"{START_MARKER} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self.running[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def current_log(self, name: str) -> str:
        """The log of the latest start only (a restart appends to the same file)."""
        return self.log(name).rsplit(START_MARKER, 1)[-1]

    def stop(self, name: str, timeout: float = 15) -> None:
        proc = self.running.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=timeout)

    def stop_all(self, names: list[str] | None = None) -> None:
        targets = list(self.running) if names is None else names
        for name in targets:  # signal all first: they stop in parallel
            proc = self.running[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for name in targets:
            self.stop(name)

    def sample_memory(self) -> None:
        while not self._stop.wait(0.5):
            roots = {os.getpid(), *self.extra_roots}
            self.peak_kib = max(self.peak_kib, _tree_rss_kib(roots))


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    procs = Processes(tmp_path_factory.mktemp("logs"))
    sampler = threading.Thread(target=procs.sample_memory, daemon=True)
    sampler.start()
    try:
        yield procs
    finally:
        procs._stop.set()
        sampler.join(timeout=5)
        procs.stop_all()


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with _NO_PROXY.open(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not answering 200 after {timeout} s")
        time.sleep(0.2)


@dataclass
class Postgres:
    host: str
    port: int
    password: str
    """The synapse role's; with a double quote in it, as PgBouncer's auth file must escape."""
    max_connections: int
    peak_synapse_connections: int = 0
    """The most server connections the synapse role held at once (pg_stat_activity), sampled every 0.1 s."""
    stopped: threading.Event = field(default_factory=threading.Event)

    def sample_connections(self) -> None:
        conn = psycopg2.connect(host=self.host, port=self.port, user="postgres", dbname="postgres")
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                while not self.stopped.wait(0.1):
                    cur.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE usename = 'synapse' "
                        "AND backend_type = 'client backend' AND application_name <> %s",
                        (CHECK_APPLICATION,),
                    )
                    row = cur.fetchone()
                    assert row is not None
                    self.peak_synapse_connections = max(self.peak_synapse_connections, int(row[0]))
        finally:
            conn.close()


CHECK_APPLICATION = "e2e-check"
"""The application_name of the test's own queries as the synapse role, left out of the count."""


@pytest.fixture(scope="module")
def postgres(system_packages: None, loopback: Loopback, processes: Processes) -> Iterator[Postgres]:
    """PostgreSQL 15 in a folder its user owns (initdb refuses root), trusting loopback only."""
    root = Path(tempfile_dir("e2e-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, host, port = root / "data", loopback.services, 5432
    subprocess.run(
        [
            *as_user,
            str(PG_BIN / "initdb"),
            "-D",
            str(data),
            "-E",
            "UTF8",
            "--locale=C",
            "--auth=trust",
            "-U",
            "postgres",
        ],
        check=True,
        capture_output=True,
    )
    (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.0/8 trust\n")
    options = (
        f"-k {root} -c listen_addresses={host} -p {port} -c fsync=off -c full_page_writes=off "
        f"-c max_connections={MAX_CONNECTIONS}"
    )
    password = 'e2e"pw-' + secrets.token_hex(8)
    pg_ctl = [*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run([*pg_ctl, "-l", str(root / "postgres.log"), "-w", "-o", options, "start"], check=True)
        processes.extra_roots.add(int((data / "postmaster.pid").read_text().split()[0]))
        conn = psycopg2.connect(host=host, port=port, user="postgres", dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE ROLE synapse LOGIN PASSWORD %s", (password,))
            cur.execute(
                "CREATE DATABASE synapse OWNER synapse ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0"
            )
        conn.close()
        pg = Postgres(host, port, password, MAX_CONNECTIONS)
        sampler = threading.Thread(target=pg.sample_connections, daemon=True)
        sampler.start()
        yield pg
        pg.stopped.set()
        sampler.join(timeout=5)
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def tempfile_dir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix)


@pytest.fixture(scope="module")
def redis(system_packages: None, loopback: Loopback, processes: Processes) -> Iterator[tuple[str, int]]:
    host, port = loopback.services, 6379
    root = Path(tempfile_dir("e2e-redis-"))
    argv = ["redis-server", "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no", "--dir", str(root)]
    proc = processes.start("redis", argv)
    try:
        deadline = time.monotonic() + 20
        while not _answers(host, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis did not start:\n" + processes.log("redis"))
            time.sleep(0.1)
        yield host, port
    finally:
        processes.stop("redis")
        shutil.rmtree(root, ignore_errors=True)


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
