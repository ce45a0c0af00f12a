"""Fixtures for the end-to-end suite: PostgreSQL, Redis, Synapse processes and HAProxy on loopback.

Everything binds to one private loopback /24 (127.A.B.0, chosen per run and checked free), so runs by
other developers on this machine, and Synapse's fixed ports, never collide. Every process is started
in its own process group and killed with it in a finalizer, whatever the test did. The plain code
behind these fixtures is in `services.py` (the services) and `topology.py` (the homeserver).
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest

from tests.e2e.services import (
    APT_PACKAGES,
    MAX_CONNECTIONS,
    PG_BIN,
    Loopback,
    Postgres,
    Processes,
    answers,
    missing_prerequisites,
    port_free,
    tempfile_dir,
)
from tests.e2e.topology import Homeserver, make_workdir, start_homeserver, topology_settings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: real Synapse, PostgreSQL, Redis and HAProxy on loopback (slow)")


@pytest.fixture(scope="session")
def system_packages() -> None:
    """Debian's PostgreSQL 15, Redis, HAProxy and PgBouncer; installed when missing. In CI, missing fails."""
    if missing_prerequisites() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *APT_PACKAGES]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=False)
    missing = missing_prerequisites()
    if missing:
        message = f"end-to-end prerequisites missing: {', '.join(missing)} (apt-get install {' '.join(APT_PACKAGES)})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def loopback() -> Loopback:
    rng = random.Random()
    for _ in range(50):
        prefix = f"127.{rng.randint(64, 250)}.{rng.randint(1, 250)}"
        if all(port_free(f"{prefix}.{n}", p) for n in (1, 10, 11) for p in (5432, 6379, 6432, 8008, 9093)):
            return Loopback(prefix)
    raise RuntimeError("no free loopback /24 found")


@pytest.fixture(scope="module")
def processes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Processes]:
    procs = Processes(tmp_path_factory.mktemp("logs"))
    sampler = threading.Thread(target=procs.sample_memory, daemon=True)
    sampler.start()
    try:
        yield procs
    finally:
        procs.sampling_stopped.set()
        sampler.join(timeout=5)
        procs.stop_all()
        procs.remove_scratch()


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


@pytest.fixture(scope="module")
def redis(system_packages: None, loopback: Loopback, processes: Processes) -> Iterator[tuple[str, int]]:
    host, port = loopback.services, 6379
    root = Path(tempfile_dir("e2e-redis-"))
    argv = ["redis-server", "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no", "--dir", str(root)]
    proc = processes.start("redis", argv)
    try:
        deadline = time.monotonic() + 20
        while not answers(host, port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis did not start:\n" + processes.log("redis"))
            time.sleep(0.1)
        yield host, port
    finally:
        processes.stop("redis")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("synapse")
    make_workdir(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def homeserver(
    postgres: Postgres, redis: tuple[str, int], loopback: Loopback, processes: Processes, workdir: Path
) -> Homeserver:
    return start_homeserver(topology_settings(loopback, persisters=2), postgres, loopback, processes, workdir)
