"""Kubernetes objects as plain manifests (camelCase dicts, exactly as `kubectl apply` would take them).

Pure builders: the Pulumi components hand these to pulumi-kubernetes unchanged, and tests and the
schema check read them directly. Nothing here knows about Pulumi.
"""

from __future__ import annotations

from typing import Any

from synapse_workers.model.settings import SECRET_FILES, Settings
from synapse_workers.model.worker_classes import MAIN, MEDIA_CLASS, Resources
from synapse_workers.synapse.config_files import (
    CLASS_FILE,
    MEDIA_DIR,
    SECRETS_DIR,
    SHARED_FILE,
    WORKER_APP,
    WORKER_NAME_DIR,
    WORKER_NAME_FILE,
    ConfigFile,
)
from synapse_workers.synapse.topology import CLIENT_PORT, METRICS_PORT, REPLICATION_PORT

Manifest = dict[str, Any]

SYNAPSE_UID = 991
"""The uid and gid of the `synapse` user in the official image."""
CONFIG_DIGEST_ANNOTATION = "synapse-workers/config-digest"


def labels(settings: Settings, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "synapse",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/instance": settings.stack,
        "app.kubernetes.io/managed-by": "pulumi",
    }


def selector(settings: Settings, component: str) -> dict[str, str]:
    full = labels(settings, component)
    return {k: full[k] for k in ("app.kubernetes.io/name", "app.kubernetes.io/component", "app.kubernetes.io/instance")}


def metadata(settings: Settings, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": settings.namespace, "labels": labels(settings, component)}


def restricted_pod(uid: int) -> dict[str, Any]:
    """Pod-level half of the restricted profile; a numeric uid lets the kubelet verify runAsNonRoot."""
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "seccompProfile": {"type": "RuntimeDefault"}}


def restricted_container() -> dict[str, Any]:
    """Container-level half: no escalation, no capabilities, nothing written outside its volumes."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _secret_items(settings: Settings) -> list[dict[str, str]]:
    keys = [k for k in SECRET_FILES if k not in ("postgresPassword", "redisPassword")]
    if settings.redis.auth:
        keys.append("redisPassword")
    return [{"key": SECRET_FILES[k], "path": SECRET_FILES[k]} for k in keys]


def _command(is_main: bool) -> list[str]:
    if is_main:
        return ["python", "-m", "synapse.app.homeserver", "-c", SHARED_FILE, "-c", CLASS_FILE]
    # Synapse has no env substitution in config, and a scaled workload needs a unique worker_name per
    # pod (element-hq/synapse#9345): write it from the pod name, then hand PID 1 to Synapse.
    return [
        "/bin/sh",
        "-c",
        f"printf 'worker_name: %s\\n' \"$POD_NAME\" > {WORKER_NAME_FILE} && "
        f"exec python -m {WORKER_APP} -c {SHARED_FILE} -c {CLASS_FILE} -c {WORKER_NAME_FILE}",
    ]


def _probe(failure_threshold: int, period: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/health", "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failure_threshold,
    }


def drain_before_stop(template: dict[str, Any], seconds: int) -> None:
    """Keep the pod serving for `seconds` after it is told to stop (synapse:router.drainSeconds, 45 by
    default), before Synapse gets SIGTERM: the router finds autoscaled pods through cluster DNS and stops
    sending a stopped pod new requests only within 15 s (a DNS TTL of 5 s, a new resolution every 5 s, a
    vanished record dropped after 5 s: kube/haproxy.py), and a `/sync` long-poll already under way ends
    within a client's usual 30 s. Without it, an HPA scale-down or a rollout drops the requests in flight
    on the pod it stops. Within terminationGracePeriodSeconds (60). An exec of the image's `sleep`, which
    any Kubernetes version runs, where the newer `preStop.sleep` action needs 1.30 or later."""
    for container in template["spec"]["containers"]:
        container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(seconds)]}}}


def pod_template(
    settings: Settings,
    component: str,
    shared: ConfigFile,
    own: ConfigFile,
    resources: Resources,
    replication: bool,
    media: bool,
) -> dict[str, Any]:
    is_main = component == MAIN.name
    ports = [{"name": "http", "containerPort": CLIENT_PORT, "protocol": "TCP"}]
    if replication:
        ports.append({"name": "replication", "containerPort": REPLICATION_PORT, "protocol": "TCP"})
    ports.append({"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"})
    mounts = [
        {"name": "config-shared", "mountPath": f"{SHARED_FILE.rsplit('/', 1)[0]}", "readOnly": True},
        {"name": "config-class", "mountPath": f"{CLASS_FILE.rsplit('/', 1)[0]}", "readOnly": True},
        {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
        {"name": "run", "mountPath": WORKER_NAME_DIR},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {
            "name": "config-shared",
            "configMap": {"name": shared.configmap_name, "items": [{"key": "shared.yaml", "path": "shared.yaml"}]},
        },
        {
            "name": "config-class",
            "configMap": {"name": own.configmap_name, "items": [{"key": "class.yaml", "path": "class.yaml"}]},
        },
        {
            "name": "secrets",
            "secret": {"secretName": settings.secret_name, "defaultMode": 0o440, "items": _secret_items(settings)},
        },
        {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    if media:
        mounts.append({"name": "media", "mountPath": MEDIA_DIR})
        volumes.append({"name": "media", "persistentVolumeClaim": {"claimName": settings.media.claim_name}})
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "PGPASSWORD",
            "valueFrom": {"secretKeyRef": {"name": settings.secret_name, "key": SECRET_FILES["postgresPassword"]}},
        },
    ]
    container = {
        "name": "synapse",
        "image": settings.image,
        "command": _command(is_main),
        "env": env,
        "ports": ports,
        "resources": {
            "requests": {"cpu": resources.cpu_request, "memory": resources.memory_request},
            "limits": {"cpu": resources.cpu_limit, "memory": resources.memory_limit},
        },
        "startupProbe": _probe(failure_threshold=60, period=5),
        "readinessProbe": _probe(failure_threshold=3, period=10),
        "livenessProbe": _probe(failure_threshold=6, period=10),
        "securityContext": restricted_container(),
        "volumeMounts": mounts,
    }
    return {
        "metadata": {
            "labels": labels(settings, component),
            "annotations": {CONFIG_DIGEST_ANNOTATION: f"{shared.digest}-{own.digest}"},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 60,
            "securityContext": {**restricted_pod(SYNAPSE_UID), "fsGroup": SYNAPSE_UID},
            "containers": [container],
            "volumes": volumes,
        },
    }


def service(settings: Settings, name: str, component: str, replication: bool, headless: bool) -> Manifest:
    ports = [{"name": "http", "port": CLIENT_PORT, "targetPort": "http", "protocol": "TCP"}]
    if replication:
        ports.append({"name": "replication", "port": REPLICATION_PORT, "targetPort": "replication", "protocol": "TCP"})
    ports.append({"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"})
    spec: dict[str, Any] = {"selector": selector(settings, component), "ports": ports}
    if headless:
        # Peers address StatefulSet pods by name, also while they start (replication needs that).
        spec.update({"clusterIP": "None", "publishNotReadyAddresses": True})
    else:
        spec["type"] = "ClusterIP"
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata(settings, name, component), "spec": spec}


def statefulset(settings: Settings, name: str, component: str, replicas: int, template: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": metadata(settings, name, component),
        "spec": {
            "serviceName": name,
            "replicas": replicas,
            "podManagementPolicy": "OrderedReady" if component == MAIN.name else "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            "selector": {"matchLabels": selector(settings, component)},
            "template": template,
        },
    }


def deployment(settings: Settings, name: str, component: str, replicas: int, template: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(settings, name, component),
        "spec": {
            # The HPA owns this field after creation; the Pulumi layer ignores later changes to it.
            "replicas": replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "revisionHistoryLimit": REVISION_HISTORY,
            "selector": {"matchLabels": selector(settings, component)},
            "template": template,
        },
    }


def spread_over_nodes(settings: Settings, component: str) -> dict[str, Any]:
    """Replicas of a class on different nodes while there are nodes enough, evenly after that.

    A hard anti-affinity would leave prod's 80 synchrotrons unschedulable on a 20-node cluster;
    maxSkew 1 puts a second replica on a node only when every node already has one.
    """
    return {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule",
        "labelSelector": {"matchLabels": selector(settings, component)},
    }


def disruption_budget(settings: Settings, name: str, component: str) -> Manifest:
    """Voluntary evictions (node drains, upgrades) take one replica of a class at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(settings, name, component),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(settings, component)}},
    }


def hpa(settings: Settings, name: str, component: str, minimum: int, maximum: int) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(settings, name, component),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": settings.hpa.target_cpu_utilization},
                    },
                }
            ],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": settings.hpa.scale_up_window_seconds},
                "scaleDown": {"stabilizationWindowSeconds": settings.hpa.scale_down_window_seconds},
            },
        },
    }


def namespace(settings: Settings) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": settings.namespace, "labels": {"app.kubernetes.io/managed-by": "pulumi"}},
    }


KEPT_GENERATIONS = 3
"""Contents kept of each content-named ConfigMap: the current one and the two before it (collected by
the program after that: ops/generations.py)."""
REVISION_HISTORY = KEPT_GENERATIONS - 1
"""Old ReplicaSets a Deployment keeps (Kubernetes keeps 10): no more than there are earlier config
contents kept, so any revision `kubectl rollout undo` can bring back finds its ConfigMaps. Not set on
StatefulSets: pulumi-kubernetes replaces a StatefulSet when that field changes, which would stop every
writer of a deployed stack once; their controller only ever starts the current and the update revision
(both kept), and `rollout undo` of a StatefulSet reaches back two revisions safely."""


def configmap(settings: Settings, config: ConfigFile) -> Manifest:
    key = "shared.yaml" if config.part == "shared" else "class.yaml"
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(settings, config.configmap_name, "config"),
        # Content-addressed: a new content is a new ConfigMap, so the old one is never edited under a
        # running pod, and every pod template that mounts it changes (which is what rolls those pods).
        "immutable": True,
        "data": {key: config.text},
    }


def secret_shell(settings: Settings) -> Manifest:
    """The managed Secret without its data: the Pulumi layer adds the values as Pulumi secrets."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata(settings, settings.secret_name, "secrets"),
        "type": "Opaque",
    }


def media_claim(settings: Settings) -> Manifest:
    spec: dict[str, Any] = {
        # Every media worker must see the same media store.
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": settings.media.size}},
    }
    if settings.media.storage_class is not None:
        spec["storageClassName"] = settings.media.storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(settings, settings.media.claim_name, MEDIA_CLASS.name),
        "spec": spec,
    }
