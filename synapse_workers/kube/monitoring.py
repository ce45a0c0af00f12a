"""Prometheus Operator objects for one stack (ServiceMonitors, the PrometheusRule), and the same scrape
jobs for a Prometheus without the Operator.

Pure data over the plan, like manifests.py, so the same objects reach Pulumi, `render` and the tests.
The rule's alerts come from `alerts.py`; the `job` every query selects on is the ServiceMonitors' here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from synapse_workers.kube.alerts import alerts, replication_lag_record
from synapse_workers.kube.manifests import Manifest, labels, selector
from synapse_workers.kube.queries import METRICS_PATH, scrape_job
from synapse_workers.kube.workload import Deployed, Workload
from synapse_workers.model.settings import Settings

API_VERSION = "monitoring.coreos.com/v1"
METRICS_PORT_NAME = "metrics"
"""The Service port every Synapse workload exposes (kube/manifests.py `service()`)."""
RULE_NAME = "synapse-scaling"


def _metadata(settings: Settings, name: str, component: str) -> dict[str, Any]:
    """The stack's usual labels plus the operator's, which win: they are what Prometheus selects on."""
    merged = {**labels(settings, component), **settings.monitoring.labels}
    return {"name": name, "namespace": settings.namespace, "labels": dict(sorted(merged.items()))}


def service_monitor(settings: Settings, workload: Workload) -> Manifest:
    return {
        "apiVersion": API_VERSION,
        "kind": "ServiceMonitor",
        "metadata": _metadata(settings, scrape_job(workload), workload.part),
        "spec": {
            "selector": {"matchLabels": selector(settings, workload.part)},
            "namespaceSelector": {"matchNames": [settings.namespace]},
            "endpoints": [{"port": METRICS_PORT_NAME, "path": METRICS_PATH}],
        },
    }


def prometheus_rule(plan: Deployed) -> Manifest:
    settings = plan.settings
    return {
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": _metadata(settings, RULE_NAME, "monitoring"),
        "spec": {
            "groups": [
                {
                    "name": f"synapse-{settings.stack}.scaling",
                    # Recording rules first: a group evaluates in order, so the alerts read this cycle's values.
                    "rules": [replication_lag_record(plan), *(a.rule() for a in alerts(plan))],
                }
            ]
        },
    }


def monitoring_manifests(plan: Deployed) -> tuple[Manifest, ...]:
    """ServiceMonitors for every deployed workload and one PrometheusRule; nothing when monitoring is off,
    since without the Prometheus Operator's CRDs the cluster would refuse these kinds."""
    if not plan.settings.monitoring.enabled:
        return ()
    return (*(service_monitor(plan.settings, w) for w in plan.workloads), prometheus_rule(plan))


def static_scrape_configs(
    plan: Deployed, addresses: Mapping[str, Sequence[tuple[str, str]]], interval: str
) -> list[dict[str, Any]]:
    """Prometheus `scrape_configs` for a Prometheus without the Operator: one job per workload, named
    and labelled as the ServiceMonitors' targets are (`job`, `namespace`, `pod`), so every query here
    reads the same. `addresses` maps a workload's part to its (pod, host:port) pairs."""
    return [
        {
            "job_name": scrape_job(workload),
            "metrics_path": METRICS_PATH,
            "scrape_interval": interval,
            "static_configs": [
                {"targets": [address], "labels": {"namespace": plan.settings.namespace, "pod": pod}}
                for pod, address in addresses[workload.part]
            ],
        }
        for workload in plan.workloads
        if workload.part in addresses
    ]
