"""Who may talk to a Synapse pod: NetworkPolicies, default deny plus three narrow openings.

Replication (9093) only from Synapse pods of the same stack, metrics (9090) only from the monitoring
namespace, client HTTP (8008) only from the router; PgBouncer (6432), when deployed, only from Synapse
pods of the same stack. Egress is left open: Synapse needs PostgreSQL,
Redis, DNS and (with federation) the internet, none of which this program owns.
"""

from __future__ import annotations

from typing import Any

from synapse_workers.kube.manifests import Manifest, labels, selector
from synapse_workers.model.settings import Settings
from synapse_workers.synapse.topology import CLIENT_PORT, METRICS_PORT, POOLER_PORT, REPLICATION_PORT

ROUTER_COMPONENT = "router"
POOLER_COMPONENT = "pgbouncer"
NOT_SYNAPSE = (POOLER_COMPONENT, ROUTER_COMPONENT)
"""Components of ours that carry the Synapse labels but run no Synapse."""


def synapse_pods(settings: Settings) -> dict[str, Any]:
    return {
        "matchLabels": {
            "app.kubernetes.io/name": "synapse",
            "app.kubernetes.io/instance": settings.stack,
        },
        "matchExpressions": [{"key": "app.kubernetes.io/component", "operator": "NotIn", "values": list(NOT_SYNAPSE)}],
    }


def _policy(
    settings: Settings, name: str, ingress: list[dict[str, Any]], pods: dict[str, Any] | None = None
) -> Manifest:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels(settings, "network-policy")},
        "spec": {"podSelector": pods or synapse_pods(settings), "policyTypes": ["Ingress"], "ingress": ingress},
    }


def _port(port: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port}]


def network_policies(settings: Settings) -> tuple[Manifest, ...]:
    router = {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "synapse",
                "app.kubernetes.io/instance": settings.stack,
                "app.kubernetes.io/component": ROUTER_COMPONENT,
            }
        }
    }
    monitoring = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": settings.monitoring.namespace}}}
    pooler = (
        _policy(
            settings,
            "synapse-allow-pgbouncer-from-synapse",
            [{"from": [{"podSelector": synapse_pods(settings)}], "ports": _port(POOLER_PORT)}],
            {"matchLabels": selector(settings, POOLER_COMPONENT)},
        ),
    )
    return (
        # Policies are additive: selecting the pods with no rule denies all ingress the others do not allow.
        _policy(settings, "synapse-default-deny", []),
        _policy(
            settings,
            "synapse-allow-replication",
            [{"from": [{"podSelector": synapse_pods(settings)}], "ports": _port(REPLICATION_PORT)}],
        ),
        _policy(settings, "synapse-allow-metrics", [{"from": [monitoring], "ports": _port(METRICS_PORT)}]),
        _policy(settings, "synapse-allow-client-from-router", [{"from": [router], "ports": _port(CLIENT_PORT)}]),
        *(pooler if settings.postgres.pooler.enabled else ()),
    )
