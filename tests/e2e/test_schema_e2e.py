"""The schema Job's own script, run here with real Synapse on real PostgreSQL: after it, a stream writer
starts before main ever has (the rollout's stage order); without it, the writer refuses to start.

The Job's mounts are laid out under a scratch folder and its script is pointed there (the one change to
what the pod runs); main's class file names a fresh database, as a first `pulumi up` meets it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import yaml

from synapse_workers.kube.schema import MERGED_FILE, SCHEMA_CONNECTIONS, SCHEMA_TOOL
from synapse_workers.model.worker_classes import MAIN
from synapse_workers.plan import Plan, build_plan
from synapse_workers.synapse.topology import CLIENT_PORT
from tests.conftest import secrets_folder, settings_for
from tests.e2e.services import Loopback, Postgres, Processes, wait_http
from tests.e2e.topology import SERVER_NAME, localise

pytestmark = pytest.mark.e2e


def superuser(pg: Postgres) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(host=pg.host, port=pg.port, user="postgres", dbname="postgres")
    conn.autocommit = True
    return conn


@pytest.fixture(scope="module")
def plan(loopback: Loopback) -> Plan:
    """Without PgBouncer (this module starts none; main connects directly in any case), and a limit the
    plan accepts: only the Job and one writer connect here."""
    return build_plan(
        settings_for(
            ccu=100,
            serverName=SERVER_NAME,
            postgres={"host": loopback.services, "port": 5432, "maxConnections": 1000},
            redis={"host": loopback.services, "port": 6379},
        )
    )


@pytest.fixture()
def fresh_database(postgres: Postgres) -> Iterator[str]:
    name = f"fresh_{int(time.time() * 1000)}"
    conn = superuser(postgres)
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE DATABASE {name} OWNER synapse ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0"
        )
    yield name
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    conn.close()


def mounts(plan: Plan, root: Path, database: str) -> str:
    """The schema Job's volumes under `root`, main's database renamed; returns the Job's script for there."""
    secrets = secrets_folder(root)
    for folder in ("tmp", "media", "config/shared", "config/class"):
        (root / folder).mkdir(parents=True)
    shared = plan.shared.text.replace("/secrets/", f"{secrets}/").replace("/media", str(root / "media"))
    (root / "config" / "shared" / "shared.yaml").write_text(shared)
    own = yaml.safe_load(plan.workload(MAIN.name).config.text)
    own["database"]["args"]["database"] = database
    (root / "config" / "class" / "class.yaml").write_text(yaml.safe_dump(own))
    job = plan.schema()
    script: str = job["spec"]["template"]["spec"]["containers"][0]["command"][2]
    return script.replace("/config/", f"{root}/config/").replace(MERGED_FILE, str(root / "tmp" / "merged.yaml"))


def run_job(script: str, pg: Postgres) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PGPASSWORD": pg.password}
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env=env, timeout=600, check=False)


def schema_state(pg: Postgres, database: str) -> tuple[object, ...]:
    conn = psycopg2.connect(host=pg.host, port=pg.port, user="postgres", dbname=database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT version, upgraded FROM schema_version")
            version = cur.fetchone()
            cur.execute("SELECT count(*) FROM applied_schema_deltas")
            deltas = cur.fetchone()
        return (version, deltas)
    finally:
        conn.close()


def start_writer(
    plan: Plan, loopback: Loopback, processes: Processes, pg: Postgres, root: Path, database: str
) -> tuple[str, subprocess.Popen[bytes]]:
    """The event persister alone, as the writers stage starts it: main has never run."""
    workload = plan.workload("event-persister")
    file_name, text = workload.process_configs()[0]
    name = f"{file_name.removesuffix('.yaml')}-{database}"
    config = localise(text, file_name.removesuffix(".yaml"), loopback, root)
    config["database"]["args"]["database"] = database
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PGPASSWORD": pg.password}
    return name, processes.start(name, [sys.executable, "-m", "synapse.app.generic_worker", "-c", str(path)], env)


def test_the_job_connects_as_main_does_directly_to_postgres(plan: Plan) -> None:
    script = plan.schema()["spec"]["template"]["spec"]["containers"][0]["command"][2]
    assert f"exec {SCHEMA_TOOL} --database-config" in script
    main_db = yaml.safe_load(plan.workload(MAIN.name).config.text)["database"]["args"]
    assert main_db["host"] == plan.settings.postgres.host


def test_a_writer_starts_before_main_once_the_job_ran(
    plan: Plan,
    postgres: Postgres,
    redis: tuple[str, int],
    loopback: Loopback,
    processes: Processes,
    tmp_path: Path,
    fresh_database: str,
) -> None:
    script = mounts(plan, tmp_path, fresh_database)
    seen: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        conn = superuser(postgres)
        with conn.cursor() as cur:
            while not stop.wait(0.02):
                cur.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (fresh_database,))
                row = cur.fetchone()
                seen.append(int(row[0]) if row else 0)
        conn.close()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        done = run_job(script, postgres)
    finally:
        stop.set()
        sampler.join(timeout=5)
    assert done.returncode == 0, done.stderr[-3000:]
    assert max(seen) == SCHEMA_CONNECTIONS, "the budget counts the Job's connections"
    prepared = schema_state(postgres, fresh_database)

    again = run_job(script, postgres)
    assert again.returncode == 0, again.stderr[-3000:]
    assert schema_state(postgres, fresh_database) == prepared, "a second run changes nothing"

    name, writer = start_writer(plan, loopback, processes, postgres, tmp_path, fresh_database)
    try:
        address = loopback.of(plan.workload("event-persister").process_configs()[0][0].removesuffix(".yaml"))
        wait_http(f"http://{address}:{CLIENT_PORT}/health", 120, writer)
    finally:
        processes.stop(name)


def test_without_the_job_the_writer_refuses_an_empty_database(
    plan: Plan,
    postgres: Postgres,
    redis: tuple[str, int],
    loopback: Loopback,
    processes: Processes,
    tmp_path: Path,
    fresh_database: str,
) -> None:
    """The control: what the first `pulumi up` met before the Job existed."""
    secrets_folder(tmp_path)
    (tmp_path / "media").mkdir()
    name, writer = start_writer(plan, loopback, processes, postgres, tmp_path, fresh_database)
    try:
        writer.wait(timeout=120)
    finally:
        processes.stop(name)
    assert writer.returncode != 0
    assert "Uninitialised database" in processes.log(name)
