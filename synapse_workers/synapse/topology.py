"""Which Synapse processes exist and how they find each other: instance_map, stream_writers and friends.

This is the part of the config that every process must read identically (Synapse routes each write to
the writer it computes from these lists), so it is built in one place from the sized classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synapse_workers.model.sizing import ClassSize
from synapse_workers.model.worker_classes import MAIN

CLIENT_PORT = 8008
REPLICATION_PORT = 9093
METRICS_PORT = 9090
POOLER_PORT = 6432
"""PgBouncer's own default port, so a connection string says at a glance whether it goes through it."""
POOLER_NAME = "synapse-pgbouncer"


@dataclass(frozen=True)
class Instance:
    """One addressable Synapse process (a StatefulSet pod), by its pod name."""

    name: str
    class_name: str
    host: str


def pod_host(pod: str, service: str, namespace: str) -> str:
    return f"{pod}.{service}.{namespace}.svc.cluster.local"


def instances(size: ClassSize, namespace: str) -> tuple[Instance, ...]:
    """The pods of a StatefulSet class; a Deployment's pods have no stable names to address."""
    if size.spec.kind != "StatefulSet" or not size.deployed:
        return ()
    service = size.spec.workload_name
    return tuple(
        Instance(f"{service}-{i}", size.spec.name, pod_host(f"{service}-{i}", service, namespace))
        for i in range(size.replicas)
    )


@dataclass(frozen=True)
class Topology:
    """The shared topology, as Synapse config keys."""

    instance_map: dict[str, dict[str, Any]]
    stream_writers: dict[str, list[str]]
    members: dict[str, tuple[str, ...]]
    """Pod names per StatefulSet class, main included."""
    duties: dict[str, str | list[str]]
    """Work handed to named workers (`federation_sender_instances`, `pusher_instances`,
    `run_background_tasks_on`, …); a duty not named here stays on main."""

    def as_config(self) -> dict[str, Any]:
        return {"instance_map": self.instance_map, "stream_writers": self.stream_writers, **self.duties}


def build_topology(sizes: tuple[ClassSize, ...], namespace: str) -> Topology:
    main_host = pod_host(MAIN.pod, MAIN.workload_name, namespace)
    instance_map: dict[str, dict[str, Any]] = {MAIN.instance: {"host": main_host, "port": REPLICATION_PORT}}
    stream_writers: dict[str, list[str]] = {}
    members: dict[str, tuple[str, ...]] = {MAIN.name: (MAIN.pod,)}
    duties: dict[str, str | list[str]] = {}
    first_pod_writers: dict[str, str] = {}
    for size in sizes:
        pods = instances(size, namespace)
        spec = size.spec
        if spec.kind == "StatefulSet":
            members[spec.name] = tuple(p.name for p in pods)
        if spec.needs_instance_map:
            # Only the first pod of a first-pod writer: scaling that class leaves the shared file alone.
            for pod in pods[:1] if spec.first_pod_writes is not None else pods:
                instance_map[pod.name] = {"host": pod.host, "port": REPLICATION_PORT}
        if spec.stream is not None and pods:
            stream_writers[spec.stream] = [p.name for p in pods]
        if spec.first_pod_writes is not None and pods:
            first_pod_writers[spec.first_pod_writes] = pods[0].name
        if spec.duty is not None and spec.duty_on_every_pod and (pods or spec.duty_without_pods):
            duties[spec.duty] = [p.name for p in pods]
        elif spec.duty is not None and pods:
            duties[spec.duty] = pods[0].name
    # Main writes these streams too: it always runs the schema background updates (whatever
    # run_background_tasks_on says: synapse/app/homeserver.py), and the quarantined-media backfill
    # asserts that its process is a writer (synapse/storage/databases/main/room.py).
    for stream, writer in sorted(first_pod_writers.items()):
        stream_writers[stream] = [MAIN.writer, writer]
    return Topology(instance_map=instance_map, stream_writers=stream_writers, members=members, duties=duties)
