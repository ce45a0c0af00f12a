"""The router's Kubernetes objects: HAProxy with the generated routing table, its Service and Ingress,
and the ready-pods headless Services it resolves autoscaled classes through.

The config lives in a content-addressed ConfigMap, so the router rolls when its table changes and only
then (a new event persister, for instance, leaves it untouched: persisters serve no client HTTP).
"""

from __future__ import annotations

from typing import Any

from synapse_workers.kube import manifests as k8s
from synapse_workers.kube.haproxy import HEALTH_PATH, HEALTH_PORT, ROUTER_PORT, pods_service
from synapse_workers.kube.network_policy import ROUTER_COMPONENT
from synapse_workers.model.settings import Settings
from synapse_workers.synapse.config_files import content_hash

ROUTER_NAME = "synapse-router"
HAPROXY_UID = 99
"""The official image's `haproxy` user; numeric, so the kubelet can verify runAsNonRoot."""
CONFIG_DIR = "/usr/local/etc/haproxy"


def pods_services(settings: Settings, classes: list[str]) -> tuple[k8s.Manifest, ...]:
    """Headless, ready pods only: each DNS answer is a pod the router may send traffic to."""
    return tuple(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": k8s.metadata(settings, pods_service(name), name),
            "spec": {
                "clusterIP": "None",
                "selector": k8s.selector(settings, name),
                "ports": [{"name": "http", "port": ROUTER_PORT, "targetPort": "http", "protocol": "TCP"}],
            },
        }
        for name in classes
    )


def _template(settings: Settings, configmap: str, digest: str) -> dict[str, Any]:
    probe = {"httpGet": {"path": HEALTH_PATH, "port": "health"}, "periodSeconds": 10, "failureThreshold": 3}
    return {
        "metadata": {
            "labels": k8s.labels(settings, ROUTER_COMPONENT),
            "annotations": {k8s.CONFIG_DIGEST_ANNOTATION: digest},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": k8s.restricted_pod(HAPROXY_UID),
            "topologySpreadConstraints": [k8s.spread_over_nodes(settings, ROUTER_COMPONENT)],
            "containers": [
                {
                    "name": "haproxy",
                    "image": settings.router.image,
                    "ports": [
                        {"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"},
                        {"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"},
                    ],
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "128Mi"},
                        "limits": {"cpu": "2", "memory": "512Mi"},
                    },
                    "readinessProbe": probe,
                    "livenessProbe": {**probe, "failureThreshold": 6},
                    "securityContext": k8s.restricted_container(),
                    "volumeMounts": [
                        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                        {"name": "tmp", "mountPath": "/tmp"},
                    ],
                }
            ],
            "volumes": [
                {"name": "config", "configMap": {"name": configmap}},
                {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
            ],
        },
    }


def router_manifests(settings: Settings, config_text: str) -> tuple[k8s.Manifest, ...]:
    digest = content_hash("router", config_text)
    configmap = f"{ROUTER_NAME}-{digest}"
    objects: list[k8s.Manifest] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": k8s.metadata(settings, configmap, ROUTER_COMPONENT),
            "immutable": True,
            "data": {"haproxy.cfg": config_text},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": k8s.metadata(settings, ROUTER_NAME, ROUTER_COMPONENT),
            "spec": {
                "replicas": settings.router.replicas,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "selector": {"matchLabels": k8s.selector(settings, ROUTER_COMPONENT)},
                "template": _template(settings, configmap, digest),
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": k8s.metadata(settings, ROUTER_NAME, ROUTER_COMPONENT),
            "spec": {
                "type": "ClusterIP",
                "selector": k8s.selector(settings, ROUTER_COMPONENT),
                "ports": [{"name": "http", "port": ROUTER_PORT, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        ingress(settings),
    ]
    if settings.router.replicas >= 2:
        objects.append(k8s.disruption_budget(settings, ROUTER_NAME, ROUTER_COMPONENT))
    return tuple(objects)


def ingress(settings: Settings) -> k8s.Manifest:
    host = settings.router.host or settings.server_name.split(":", 1)[0]
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": ROUTER_NAME, "port": {"name": "http"}}},
                        }
                    ]
                },
            }
        ]
    }
    if settings.router.ingress_class_name is not None:
        spec["ingressClassName"] = settings.router.ingress_class_name
    if settings.router.tls_secret is not None:
        spec["tls"] = [{"hosts": [host], "secretName": settings.router.tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": k8s.metadata(settings, ROUTER_NAME, ROUTER_COMPONENT),
        "spec": spec,
    }
