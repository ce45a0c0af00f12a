"""A Grafana dashboard with a row per Synapse workload, as a ConfigMap Grafana's sidecar picks up.

Emitted with the other monitoring objects (synapse:monitoring.enabled). Panels show what the guide says
to watch for each class: CPU against requests, HTTP latency where the class serves clients, the
class's own scaling metric, and replicas (HPA current and maximum for autoscaled classes).
"""

from __future__ import annotations

import json
from typing import Any

from synapse_workers.kube import manifests as k8s
from synapse_workers.kube.alerts import watch_for
from synapse_workers.kube.workload import Deployed, Workload

DASHBOARD_LABEL = "grafana_dashboard"
"""The label kube-prometheus-stack's Grafana sidecar watches for by default."""


def _panel(panel_id: int, title: str, expr: str, unit: str, y: int, x: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": "A", "expr": expr, "legendFormat": "{{pod}}"}],
    }


def _panels_for(workload: Workload, namespace: str, first_id: int, y: int) -> list[dict[str, Any]]:
    name = workload.name
    pods = f'namespace="{namespace}", pod=~"{name}-.*"'
    job = f'namespace="{namespace}", job="{name}"'
    cpu = (
        f'sum by (pod) (rate(container_cpu_usage_seconds_total{{{pods}, container="synapse"}}[5m])) '
        f'/ sum by (pod) (kube_pod_container_resource_requests{{{pods}, container="synapse", resource="cpu"}})'
    )
    latency = (
        "histogram_quantile(0.95, sum by (le, pod) "
        f"(rate(synapse_http_server_response_time_seconds_bucket{{{job}}}[5m])))"
    )
    watch = watch_for(workload.spec)
    metric = watch.metric
    selector = f"{{{job}}}" if "{" not in metric else metric[metric.index("{") : -1] + f", {job}}}"
    base = metric.split("{", 1)[0]
    scaling = (
        f"sum by (pod) (rate({base}{selector}[5m]))" if base.endswith(("_total", "_bucket")) else f"{base}{selector}"
    )
    if workload.spec.kind == "Deployment":
        hpa = f'namespace="{namespace}", horizontalpodautoscaler="{name}"'
        replicas = (
            f"kube_horizontalpodautoscaler_status_current_replicas{{{hpa}}} "
            f"or kube_horizontalpodautoscaler_spec_max_replicas{{{hpa}}}"
        )
    else:
        replicas = f'kube_statefulset_status_replicas_ready{{namespace="{namespace}", statefulset="{name}"}}'
    # Where the class's own signal is its CPU (main, media, typing), the CPU panel already shows it.
    third = replicas if base == "container_cpu_usage_seconds_total" else f"{scaling}\nor\n{replicas}"
    title = "replicas" if third == replicas else f"{base} / replicas"
    return [
        {
            "id": first_id,
            "type": "row",
            "title": f"{workload.part} ({watch.alert})",
            "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "panels": [],
        },
        _panel(first_id + 1, "CPU / requests", cpu, "percentunit", y + 1, 0),
        _panel(first_id + 2, "p95 HTTP latency", latency, "s", y + 1, 8),
        _panel(first_id + 3, title, third, "short", y + 1, 16),
    ]


def dashboard(plan: Deployed) -> dict[str, Any]:
    namespace = plan.settings.namespace
    panels: list[dict[str, Any]] = []
    for index, workload in enumerate(plan.workloads):
        panels += _panels_for(workload, namespace, index * 10 + 1, index * 9)
    return {
        "uid": f"synapse-{plan.settings.stack}"[:40],
        "title": f"Synapse workers ({plan.settings.stack})",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
        },
        "panels": panels,
    }


def dashboard_configmap(plan: Deployed) -> k8s.Manifest:
    settings = plan.settings
    metadata = k8s.metadata(settings, "synapse-dashboard", "monitoring")
    metadata["labels"] = dict(
        sorted({**metadata["labels"], **settings.monitoring.labels, DASHBOARD_LABEL: "1"}.items())
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {"synapse-workers.json": json.dumps(dashboard(plan), indent=2, sort_keys=True) + "\n"},
    }
