"""A stack deployed by the real engine onto the real node, and what the node tier reads back from it.

The stack is the project's staging stack with what a 2-CPU node needs changed through the stack's own
settings: requests shrunk (20m CPU, 128Mi), every class on (the duties pinned to one replica, federation
on), the synchrotrons autoscaled between 2 and 4 on a 100m request so real `/sync` load moves them, the
HPA's windows shortened from the guide's five minutes, the drain before an autoscaled pod stops cut
to 20 s, PgBouncer on (pool 12: PostgreSQL allows 50 connections, and main, the background worker and
the schema Job connect directly), and the namespace
made here so the external services the stack names (postgresql, redis in matrix-staging) can be
Services without selectors pointing at the node's PostgreSQL and Redis. No ingress controller runs on
the node: the engine tier's stand-in gives the router's Ingress the router Service's address
(`router_address`), which pulumi-kubernetes waits for.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import psycopg2
from pulumi import automation

from synapse_workers.model.settings import load_settings
from synapse_workers.model.stack_config import read_stack_file
from synapse_workers.plan import Plan, build_plan
from synapse_workers.synapse.topology import CLIENT_PORT
from tests.conftest import DUTIES_FROM_PHASE_3
from tests.engine.conftest import Engine
from tests.engine.executor import kubectl
from tests.engine.operations import ready, shared_config
from tests.node.conftest import BIN

NAMESPACE = "matrix-staging"
SMALL = {"requests": {"cpu": "20m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
SYNC_CPU = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
"""The synchrotrons' request: idle Synapse stays well under the HPA's target of it, driven /sync goes over."""
MANUAL = (
    "event-persister",
    "federation-sender",
    "media-repository",
    "receipts-writer",
    "presence-writer",
    "typing-writer",
    "todevice-writer",
)
DUTIES = tuple(DUTIES_FROM_PHASE_3)
"""Main's duties as worker classes, on here from the start (the guide turns them on at phase 3)."""
SYNC_MAX = 4
DRAIN_SECONDS = 20
"""The router's 15 s and 5 more: the tier's clients sync with `timeout=0`, so nothing in flight needs the
default 45 s, and every quiesce, scale-down and `destroy` waits that much less."""


def overrides() -> dict[str, Any]:
    workers: dict[str, Any] = {name: {"resources": SMALL} for name in MANUAL}
    workers.update({name: {"replicas": 1, "resources": SMALL} for name in DUTIES})
    workers["generic-worker"] = {"minReplicas": 2, "maxReplicas": 2, "resources": SMALL}
    workers["synchrotron"] = {"minReplicas": 2, "maxReplicas": SYNC_MAX, "resources": SYNC_CPU}
    return {
        "synapse:createNamespace": False,
        "synapse:federation": {"enabled": True, "servers": 10},
        "synapse:hpa": {"scaleUpWindowSeconds": 0, "scaleDownWindowSeconds": 30},
        "synapse:main": {"resources": SMALL},
        "synapse:workers": workers,
        "synapse:router": {"replicas": 1, "drainSeconds": DRAIN_SECONDS},
        "synapse:postgres": {
            "host": f"postgresql.{NAMESPACE}.svc.cluster.local",
            "database": "synapse",
            "user": "synapse",
            "maxConnections": 50,
            "reservedConnections": 5,
            "pooler": {"enabled": True, "replicas": 1, "poolSize": 12},
        },
        "synapse:redis": {"host": f"redis.{NAMESPACE}.svc.cluster.local"},
        "synapse:media": {"claimName": "synapse-media", "size": "1Gi"},
    }


def external_service(name: str, port: int, host: str, target: int) -> list[dict[str, Any]]:
    """A Service without a selector and its EndpointSlice: the stack's external service at host:target."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"ports": [{"name": name, "port": port, "targetPort": target, "protocol": "TCP"}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{name}-node",
                "namespace": NAMESPACE,
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [host]}],
            "ports": [{"name": name, "port": target, "protocol": "TCP"}],
        },
    ]


def connect(env: dict[str, str], dbname: str, user: str | None = None, password: str | None = None) -> Any:
    """A connection to the node's PostgreSQL: as the role `make node` made for creating databases, or as
    `user` with `password`."""
    return psycopg2.connect(
        host=env["NODE_PG_HOST"],
        port=int(env["NODE_PG_PORT"]),
        user=user or env["NODE_PG_SUPERUSER"],
        password=password or env["NODE_PG_PASSWORD"],
        dbname=dbname,
    )


ACCESS = re.compile(r"synapse\.access\.http\.(\d+) .*Processed request: .*?\"([A-Z]+) (\S+) HTTP")
"""Synapse's access log line (its default logging, to stderr): the listener's port, the method, the path."""


def router_address(ingress: dict[str, Any]) -> str:
    """What an ingress controller would report for the router's Ingress on the node: the router Service's
    ClusterIP, where the router answers from this machine."""
    return kubectl(
        str(BIN / "kubectl"), "get", "service", "synapse-router", "-n", ingress["metadata"]["namespace"],
        "-o", "jsonpath={.spec.clusterIP}",
    )  # fmt: skip


@dataclass
class Node:
    """The engine's helpers (kubectl, the stack file) on the node, the node's env and the deployed stack."""

    engine: Engine
    env: dict[str, str]
    stack: automation.Stack

    def json(self, *args: str) -> Any:
        return json.loads(self.engine.kubectl(*args, "-o", "json"))

    def pods(self, selector: str = "app.kubernetes.io/name=synapse") -> list[dict[str, Any]]:
        """The Synapse processes' pods (matching `selector`): those that mount the shared Synapse config
        and belong to no Job (the router, PgBouncer and the check and schema Jobs left out)."""
        return [
            pod
            for pod in self.json("get", "pods", "-n", NAMESPACE, "-l", selector)["items"]
            if shared_config(pod) is not None
            and not any(o["kind"] == "Job" for o in pod["metadata"].get("ownerReferences", []))
        ]

    def not_ready(self) -> list[str]:
        """Pods of the namespace not Ready (finished Job pods aside); every pod gone counts as not ready."""
        pods = self.json("get", "pods", "-n", NAMESPACE)["items"]
        waiting = []
        for pod in pods:
            if pod["status"].get("phase") == "Succeeded":
                continue
            if not ready(pod):
                waiting.append(f"{pod['metadata']['name']} ({pod['status'].get('phase')})")
        return waiting if pods else ["no pods yet"]

    def router(self) -> str:
        """The router Service's address: ClusterIPs answer from this machine (NODE_EXEC is empty)."""
        service = self.json("get", "service", "synapse-router", "-n", NAMESPACE)
        return f"http://{service['spec']['clusterIP']}:{CLIENT_PORT}"

    def plan(self) -> Plan:
        """The capacity plan of the stack file as it stands: what the routing table says."""
        values, secret_keys = read_stack_file(self.stack.name, self.engine.stack_file(self.stack))
        return build_plan(load_settings(self.stack.name, values, secret_keys))

    def served(self) -> dict[str, list[tuple[str, str, str]]]:
        """Per Synapse pod: (class, method, path) of every client-listener request its own access log
        shows, the kubelet's and HAProxy's health checks left out."""
        found: dict[str, list[tuple[str, str, str]]] = {}
        for pod in self.pods():
            name, component = pod["metadata"]["name"], pod["metadata"]["labels"]["app.kubernetes.io/component"]
            if pod["status"].get("phase") != "Running":
                continue
            log = self.engine.kubectl("logs", name, "-n", NAMESPACE, "--all-containers")
            requests = []
            for port, method, target in ACCESS.findall(log):
                path = target.split("?", 1)[0]
                if int(port) == CLIENT_PORT and path != "/health":
                    requests.append((component, method, path))
            found[name] = requests
        return found
