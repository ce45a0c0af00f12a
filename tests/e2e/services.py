"""The end-to-end suite's services as plain code: loopback addresses, process groups, PostgreSQL.

Everything binds to one private loopback /24 (127.A.B.0, chosen per run and checked free), so runs by
other developers on this machine, and Synapse's fixed ports, never collide. Every process is started
in its own process group and killed with it in a finalizer, whatever the test did.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_MARKER = "=== e2e: starting"
APT_PACKAGES = ("postgresql-15", "redis-server", "haproxy", "pgbouncer", "prometheus")
MAX_CONNECTIONS = 56
"""The server's max_connections: far fewer than the e2e topology's pools would open without PgBouncer."""
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def missing_prerequisites() -> list[str]:
    wanted = [PG_BIN / "initdb", PG_BIN / "pg_ctl"]
    missing = [str(p) for p in wanted if not p.exists()]
    missing += [b for b in ("redis-server", "haproxy", "pgbouncer", "prometheus") if shutil.which(b) is None]
    return missing


def port_free(host: str, port: int) -> bool:
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
    scratch: list[Path] = field(default_factory=list)
    """Folders outside pytest's own (a service user must reach them): removed by `remove_scratch`."""
    peak_kib: int = 0
    sampling_stopped: threading.Event = field(default_factory=threading.Event)

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        log.write(f"{START_MARKER} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        self.running[name] = proc
        return proc

    def scratch_dir(self, prefix: str) -> Path:
        """A folder under the system's temporary directory, removed when the module's processes are."""
        path = Path(tempfile.mkdtemp(prefix=prefix))
        self.scratch.append(path)
        return path

    def remove_scratch(self) -> None:
        for path in self.scratch:
            shutil.rmtree(path, ignore_errors=True)
        self.scratch.clear()

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
        while not self.sampling_stopped.wait(0.5):
            roots = {os.getpid(), *self.extra_roots}
            self.peak_kib = max(self.peak_kib, _tree_rss_kib(roots))


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


def tempfile_dir(prefix: str) -> str:
    return tempfile.mkdtemp(prefix=prefix)


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
