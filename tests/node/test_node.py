"""A staging-like stack deployed by the real engine onto the real node: every pod Ready by its own probes.

The stack is the project's staging stack with what a 2-CPU node needs changed through the stack's own
settings: requests shrunk, the HPA classes held at their floor of 2, PgBouncer on (PostgreSQL allows 50
connections), and the namespace made here so that the external services the stack names (postgresql,
redis in matrix-staging) can be Services without selectors pointing at the node's PostgreSQL and Redis.

The database starts empty, as on a first `up`: the program's schema Job prepares it with the image's own
`update_synapse_database` before the stream writers start. (Before that Job existed, this tier found the
first `up` waiting on crash-looping writers: "Uninitialised database".)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import yaml
from pulumi import automation

from tests.engine.conftest import PASSPHRASE, TEST_SECRETS, scratch_stack, shipped_config
from tests.node.conftest import BIN

NAMESPACE = "matrix-staging"
SMALL = {"requests": {"cpu": "20m", "memory": "128Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}}
CLASSES = (
    "event-persister",
    "media-repository",
    "receipts-writer",
    "presence-writer",
    "typing-writer",
    "todevice-writer",
)
HPA_CLASSES = ("generic-worker", "synchrotron")
READY_TIMEOUT = 900


def overrides(env: dict[str, str]) -> dict[str, Any]:
    workers: dict[str, Any] = {name: {"resources": SMALL} for name in CLASSES}
    workers.update({name: {"minReplicas": 2, "maxReplicas": 2, "resources": SMALL} for name in HPA_CLASSES})
    return {
        "synapse:createNamespace": False,
        "synapse:main": {"resources": SMALL},
        "synapse:workers": workers,
        "synapse:router": {"replicas": 1},
        "synapse:postgres": {
            "host": f"postgresql.{NAMESPACE}.svc.cluster.local",
            "database": "synapse",
            "user": "synapse",
            "maxConnections": 50,
            "reservedConnections": 5,
            "pooler": {"enabled": True, "replicas": 1, "poolSize": 15},
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


def superuser(env: dict[str, str], dbname: str) -> Any:
    """A connection to the node's PostgreSQL as the role `make node` made for creating databases."""
    return psycopg2.connect(
        host=env["NODE_PG_HOST"],
        port=int(env["NODE_PG_PORT"]),
        user=env["NODE_PG_SUPERUSER"],
        password=env["NODE_PG_PASSWORD"],
        dbname=dbname,
    )


def ingress_status(kubectl: Any, stopped: threading.Event) -> None:
    """No ingress controller runs on the node: give the router's Ingress the router Service's ClusterIP as
    its address (pulumi-kubernetes waits for one), the address where the router answers on this node."""
    while not stopped.wait(1.0):
        try:
            ingresses = json.loads(kubectl("get", "ingress", "-n", NAMESPACE, "-o", "json"))["items"]
            for ingress in ingresses:
                if ingress.get("status", {}).get("loadBalancer", {}).get("ingress"):
                    continue
                ip = kubectl("get", "service", "synapse-router", "-n", NAMESPACE, "-o", "jsonpath={.spec.clusterIP}")
                status = {"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}
                kubectl(
                    "patch", "ingress", ingress["metadata"]["name"], "-n", NAMESPACE, "--subresource=status",
                    "--type=merge", "-p", json.dumps(status),
                )  # fmt: skip
        except (RuntimeError, json.JSONDecodeError):
            continue


def pods_not_ready(kubectl: Any) -> list[str]:
    pods = json.loads(kubectl("get", "pods", "-n", NAMESPACE, "-o", "json"))["items"]
    waiting = []
    for pod in pods:
        if pod["status"].get("phase") == "Succeeded":
            continue
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if conditions.get("Ready") != "True":
            waiting.append(f"{pod['metadata']['name']} ({pod['status'].get('phase')})")
    return waiting if pods else ["no pods yet"]


def test_a_staging_like_stack_becomes_ready_on_the_node(
    node_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    scratch = tmp_path_factory.mktemp("node")
    (scratch / "state").mkdir()
    (scratch / "home").mkdir()
    saved = dict(os.environ)
    os.environ.update(
        {
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "PULUMI_BACKEND_URL": (scratch / "state").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_HOME": str(scratch / "home"),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "KUBECONFIG": node_env["KUBECONFIG"],
        }
    )

    def kubectl(*args: str, stdin: str | None = None) -> str:
        done = subprocess.run([str(BIN / "kubectl"), *args], input=stdin, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    admin = superuser(node_env, "postgres")
    admin.autocommit = True
    stack: automation.Stack | None = None
    stopped = threading.Event()
    started = time.monotonic()
    try:
        with admin.cursor() as cur:
            cur.execute("CREATE ROLE synapse LOGIN PASSWORD %s", (TEST_SECRETS["postgresPassword"],))
            cur.execute("CREATE DATABASE synapse OWNER synapse ENCODING 'UTF8' LOCALE 'C' TEMPLATE template0")
        kubectl("create", "namespace", NAMESPACE)
        objects = external_service("postgresql", 5432, node_env["NODE_PG_HOST"], int(node_env["NODE_PG_PORT"]))
        objects += external_service("redis", 6379, node_env["NODE_REDIS_HOST"], int(node_env["NODE_REDIS_PORT"]))
        kubectl("apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))

        threading.Thread(target=ingress_status, args=(kubectl, stopped), daemon=True).start()
        config = {**shipped_config("staging"), **overrides(node_env)}
        stack = scratch_stack("staging", Path(scratch / "project"), config)
        lines: list[str] = []
        try:
            stack.up(on_output=lines.append, color="never")
        except automation.CommandError as error:
            raise AssertionError("\n".join(lines)[-6000:]) from error
        deadline = time.monotonic() + READY_TIMEOUT
        while waiting := pods_not_ready(kubectl):
            assert time.monotonic() < deadline, f"not Ready after {READY_TIMEOUT} s: {waiting}"
            time.sleep(2)
        print(f"node tier: every pod Ready {time.monotonic() - started:.0f} s after the start")
        jobs = json.loads(kubectl("get", "jobs", "-n", NAMESPACE, "-o", "json"))["items"]
        done = sorted(
            (j["metadata"]["labels"]["app.kubernetes.io/component"], j["status"].get("succeeded")) for j in jobs
        )
        assert done == [("config-check", 1), ("schema", 1)]
        with admin.cursor() as cur:
            cur.execute("SELECT datname FROM pg_database WHERE datname = 'synapse'")
            assert cur.fetchall() == [("synapse",)]
        schema = superuser(node_env, "synapse")
        with schema, schema.cursor() as cur:
            cur.execute("SELECT upgraded FROM schema_version")
            assert cur.fetchall() == [(True,)]
        schema.close()
        pods = json.loads(kubectl("get", "pods", "-n", NAMESPACE, "-o", "json"))["items"]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        images = {c["image"] for p in running for c in p["spec"]["containers"]}
        assert "ghcr.io/element-hq/synapse:v1.163.2" in images
        assert "docker.io/library/haproxy:3.2" in images
        assert "ghcr.io/cloudnative-pg/pgbouncer:1.24.1" in images
        # A client request through the router's Service (ClusterIPs answer from this machine: NODE_EXEC is
        # empty), routed by HAProxy to a Synapse process.
        assert node_env.get("NODE_EXEC", "") == ""
        router = kubectl("get", "service", "synapse-router", "-n", NAMESPACE, "-o", "jsonpath={.spec.clusterIP}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://{router}:8008/_matrix/client/versions", timeout=10) as answer:
            assert "v1.1" in json.loads(answer.read())["versions"]

        # A config change, then pods of the revision before it: they mount the earlier ConfigMap, which
        # the update kept (README, "Earlier configs are kept"), and start through their real probes.
        def generic_worker_config() -> str:
            found = kubectl("get", "deployment", "synapse-generic-worker", "-n", NAMESPACE, "-o", "json")
            volumes = json.loads(found)["spec"]["template"]["spec"]["volumes"]
            return str(next(v["configMap"]["name"] for v in volumes if v["name"] == "config-class"))

        earlier = generic_worker_config()
        stack_file = scratch / "project" / "Pulumi.staging.yaml"
        document = yaml.safe_load(stack_file.read_text())
        workers = document["config"]["synapse:workers"]
        workers["generic-worker"] = {**workers["generic-worker"], "database": {"cpMax": 4}}
        stack_file.write_text(yaml.safe_dump(document, sort_keys=True))
        stack.up(on_output=lines.append, color="never")
        assert generic_worker_config() != earlier
        kubectl("rollout", "undo", "deployment/synapse-generic-worker", "-n", NAMESPACE)
        kubectl("rollout", "status", "deployment/synapse-generic-worker", "-n", NAMESPACE, "--timeout=300s")
        assert generic_worker_config() == earlier
        deadline = time.monotonic() + READY_TIMEOUT
        while waiting := pods_not_ready(kubectl):
            assert time.monotonic() < deadline, f"not Ready after the rollback: {waiting}"
            time.sleep(2)
        print(f"node tier: a pod of the previous revision Ready {time.monotonic() - started:.0f} s after the start")
    finally:
        stopped.set()
        if stack is not None:
            with contextlib.suppress(automation.CommandError):
                stack.destroy(color="never")
        subprocess.run(
            [str(BIN / "kubectl"), "delete", "namespace", NAMESPACE, "--wait=true", "--timeout=180s"],
            capture_output=True,
            check=False,
        )
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS synapse WITH (FORCE)")
            cur.execute("DROP ROLE IF EXISTS synapse")
        admin.close()
        os.environ.clear()
        os.environ.update(saved)
