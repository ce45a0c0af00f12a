"""The router's Kubernetes objects: HAProxy with the generated routing table, its Service and Ingress,
and the ready-pods headless Services it resolves autoscaled classes through.

The config lives in a content-addressed ConfigMap, so the router rolls when its table changes and only
then (a new event persister, for instance, leaves it untouched: persisters serve no client HTTP).
"""

from __future__ import annotations

from typing import Any

from synapse_workers.kube import manifests as k8s
from synapse_workers.kube.configured_service import ConfiguredService, configured_service
from synapse_workers.kube.haproxy import HEALTH_PATH, HEALTH_PORT, ROUTER_PORT, pods_service
from synapse_workers.kube.network_policy import ROUTER_COMPONENT
from synapse_workers.model.settings import Settings

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


def router_manifests(settings: Settings, config_text: str) -> tuple[k8s.Manifest, ...]:
    probe = {"httpGet": {"path": HEALTH_PATH, "port": "health"}, "periodSeconds": 10, "failureThreshold": 3}
    container = {
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
    service = ConfiguredService(
        name=ROUTER_NAME,
        component=ROUTER_COMPONENT,
        uid=HAPROXY_UID,
        replicas=settings.router.replicas,
        config_file="haproxy.cfg",
        config_text=config_text,
        port_name="http",
        port=ROUTER_PORT,
    )
    configmap, deployment, svc, *budget = configured_service(
        settings, service, container, [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]
    )
    return (configmap, deployment, svc, ingress(settings), *budget)


def ingress_hosts(settings: Settings) -> list[str]:
    """The public host; with federation on, the server name's host too: remote servers ask it for
    /.well-known/matrix/server and are sent to its port 443, which is this Ingress."""
    server_host = settings.server_name.split(":", 1)[0]
    hosts = [settings.router.host or server_host]
    if settings.federation.enabled and server_host not in hosts:
        hosts.append(server_host)
    return hosts


BODY_SIZE_ANNOTATIONS = ("nginx.ingress.kubernetes.io/proxy-body-size",)
"""Ingress controllers that cap request bodies by default: ingress-nginx at 1 MiB, far below Synapse's
upload limit. HAProxy's, Traefik's and Contour's controllers set no cap by default."""


def nginx_size(size: str) -> str:
    """Synapse's size (1024-based K, M, G, T) in nginx's units (k, m, g, also 1024-based; no t)."""
    if size.endswith("T"):
        return f"{int(size[:-1]) * 1024}g"
    return size.lower()


def ingress_annotations(settings: Settings) -> dict[str, str]:
    """Uploads as large as Synapse accepts pass the Ingress; the operator's annotations win."""
    defaults = {key: nginx_size(settings.media.max_upload_size) for key in BODY_SIZE_ANNOTATIONS}
    return dict(sorted({**defaults, **settings.router.ingress_annotations}.items()))


def ingress(settings: Settings) -> k8s.Manifest:
    hosts = ingress_hosts(settings)
    backend = {"service": {"name": ROUTER_NAME, "port": {"name": "http"}}}
    spec: dict[str, Any] = {
        "rules": [
            {"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
            for host in hosts
        ]
    }
    if settings.router.ingress_class_name is not None:
        spec["ingressClassName"] = settings.router.ingress_class_name
    if settings.router.tls_secret is not None:
        spec["tls"] = [{"hosts": hosts, "secretName": settings.router.tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            **k8s.metadata(settings, ROUTER_NAME, ROUTER_COMPONENT),
            "annotations": ingress_annotations(settings),
        },
        "spec": spec,
    }
