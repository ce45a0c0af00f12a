"""A small stateless service of ours beside Synapse (the router, PgBouncer): one container reading one
generated config file, behind a ClusterIP Service.

Both share the same shape: the config in an immutable ConfigMap named after its content (a new config
is a new ConfigMap, so the pods roll and a rollback finds the old one), a Deployment that surges one pod
and never goes below its replicas, restricted pods spread over nodes, and a PodDisruptionBudget once
there are two replicas. Each caller brings only its container.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from synapse_workers.kube import manifests as k8s
from synapse_workers.model.settings import Settings
from synapse_workers.synapse.config_files import content_hash


@dataclass(frozen=True)
class ConfiguredService:
    name: str
    component: str
    uid: int
    """The image's user, numeric so the kubelet can verify runAsNonRoot."""
    replicas: int
    config_file: str
    config_text: str
    port_name: str
    port: int

    @property
    def digest(self) -> str:
        return content_hash(self.component, self.config_text)

    @property
    def configmap(self) -> str:
        return f"{self.name}-{self.digest}"


def configured_service(
    settings: Settings, service: ConfiguredService, container: dict[str, Any], volumes: list[dict[str, Any]]
) -> tuple[k8s.Manifest, ...]:
    """ConfigMap, Deployment, Service and (from two replicas) PDB; `volumes` beside the config's own,
    which is named `config` for the container to mount."""
    component = service.component
    template = {
        "metadata": {
            "labels": k8s.labels(settings, component),
            "annotations": {k8s.CONFIG_DIGEST_ANNOTATION: service.digest},
        },
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": k8s.restricted_pod(service.uid),
            "topologySpreadConstraints": [k8s.spread_over_nodes(settings, component)],
            "containers": [container],
            "volumes": [{"name": "config", "configMap": {"name": service.configmap}}, *volumes],
        },
    }
    objects: list[k8s.Manifest] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": k8s.metadata(settings, service.configmap, component),
            "immutable": True,
            "data": {service.config_file: service.config_text},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": k8s.metadata(settings, service.name, component),
            "spec": {
                "replicas": service.replicas,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "revisionHistoryLimit": k8s.REVISION_HISTORY,
                "selector": {"matchLabels": k8s.selector(settings, component)},
                "template": template,
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": k8s.metadata(settings, service.name, component),
            "spec": {
                "type": "ClusterIP",
                "selector": k8s.selector(settings, component),
                "ports": [
                    {
                        "name": service.port_name,
                        "port": service.port,
                        "targetPort": service.port_name,
                        "protocol": "TCP",
                    }
                ],
            },
        },
    ]
    if service.replicas >= 2:
        objects.append(k8s.disruption_budget(settings, service.name, component))
    return tuple(objects)
