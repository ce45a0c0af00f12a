"""A Job that brings the database schema up to the image's Synapse before any Synapse process starts.

Only main prepares the schema when it starts; a worker finding an empty or older schema refuses to start
("Uninitialised database: run the main synapse process to prepare the database schema", and the
outdated-schema error after an image upgrade). The rollout starts the stream writers before main, so
without this step the first `pulumi up` onto an empty database, and the first one with a newer image,
would wait on crash-looping writers until it timed out.

The Job runs Synapse's own `update_synapse_database` (the console script the image installs) with main's
config, so it connects the way main does: directly to PostgreSQL, never through PgBouncer (schema changes
need session state). The script reads one file; Synapse reads several by replacing top-level keys in
order, and the Job merges main's two files the same way before handing them over. It holds one
connection while it works (the budget counts it), and on an up-to-date schema it only checks and exits.

It runs after the config check (a config Synapse refuses never touches the database) and the routing
marker, and before the first stage. In a plain roll the processes of the previous revision still run
meanwhile: Synapse keeps each schema usable by the releases its `SCHEMA_COMPAT_VERSION` names, which is
how main itself upgrades in place. In a quiesce (kube/quiesce.py) the marker is created only once every
old Synapse pod is gone, so the Job runs alone, and that matters for one more thing it does: loading
the stores, every Synapse process deletes the stream positions of writers its lists no longer name
(`MultiWriterIdGenerator._load_current_ids`, in a repeatable-read transaction). Writers started
together on a shrunk list race on that delete, and the losers die at start with "could not serialize
access due to concurrent delete" (seen in the transitions e2e); the Job, alone, deletes them first.
"""

from __future__ import annotations

from synapse_workers.kube import manifests as k8s
from synapse_workers.kube.jobs import job, one_shot
from synapse_workers.model.settings import Settings
from synapse_workers.model.worker_classes import MAIN, Resources
from synapse_workers.synapse.config_files import CLASS_FILE, SHARED_FILE, ConfigFile

SCHEMA_COMPONENT = "schema"
SCHEMA_TOOL = "update_synapse_database"
"""The console script matrix-synapse installs; its module is private to Synapse, the command is not."""
MERGED_FILE = "/tmp/schema-config.yaml"
SCHEMA_DEADLINE = 3600
"""Seconds: an upgrade's schema deltas on a large database take minutes, not hours."""
SCHEMA_CONNECTIONS = 1
"""Synapse prepares the schema on one connection; the script starts no connection pool."""

MERGE = (
    "import sys, yaml\n"
    "merged = {}\n"
    "for path in sys.argv[1:]:\n"
    "    with open(path) as f:\n"
    "        merged.update(yaml.safe_load(f) or {})\n"
    "yaml.safe_dump(merged, sys.stdout)\n"
)


def schema_script(files: tuple[str, ...], merged: str) -> str:
    merge = f"python -c '{MERGE}' {' '.join(files)} > {merged}"
    return f"set -eu\n{merge}\nexec {SCHEMA_TOOL} --database-config {merged}\n"


def schema_job(settings: Settings, shared: ConfigFile, main: ConfigFile) -> k8s.Manifest:
    template = k8s.pod_template(
        settings, SCHEMA_COMPONENT, shared, main, Resources("100m", "256Mi", "1", "1Gi"), replication=False, media=False
    )
    assert main.part == MAIN.name
    one_shot(template, schema_script((SHARED_FILE, CLASS_FILE), MERGED_FILE))
    return job(settings, "synapse-schema", SCHEMA_COMPONENT, template, deadline=SCHEMA_DEADLINE)
