"""The Grafana dashboard: a row per workload, every query valid PromQL scoped to the stack's namespace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from synapse_workers.kube.dashboard import DASHBOARD_LABEL, dashboard_configmap
from synapse_workers.plan import Plan, build_plan
from tests.conftest import settings_for


@pytest.fixture(scope="module")
def plan() -> Plan:
    return build_plan(
        settings_for(
            ccu="8000",
            namespace="chat",
            federation={"enabled": True, "servers": 80},
            monitoring={"enabled": True, "labels": {"release": "prom"}},
        )
    )


def _board(plan: Plan) -> dict[str, Any]:
    manifest = dashboard_configmap(plan)
    loaded: dict[str, Any] = json.loads(manifest["data"]["synapse-workers.json"])
    return loaded


def test_a_row_per_workload_with_its_panels(plan: Plan) -> None:
    panels = _board(plan)["panels"]
    rows = [p for p in panels if p["type"] == "row"]
    assert [r["title"].split(" ")[0] for r in rows] == [w.part for w in plan.workloads]
    assert len(panels) == 4 * len(plan.workloads)
    assert len({p["id"] for p in panels}) == len(panels)


def test_sidecar_label_and_operator_labels(plan: Plan) -> None:
    labels = dashboard_configmap(plan)["metadata"]["labels"]
    assert labels[DASHBOARD_LABEL] == "1"
    assert labels["release"] == "prom"


def test_every_query_is_scoped_to_the_namespace(plan: Plan) -> None:
    for panel in _board(plan)["panels"]:
        for target in panel.get("targets", []):
            assert 'namespace="chat"' in target["expr"], panel["title"]


def test_configmap_is_schema_valid_and_deterministic(plan: Plan) -> None:
    manifest = dashboard_configmap(plan)
    kubernetes_validate.validate(manifest, "1.37.0", strict=True)
    assert json.dumps(manifest, sort_keys=True) == json.dumps(dashboard_configmap(plan), sort_keys=True)


def test_every_query_parses_as_promql(plan: Plan, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is missing in CI (apt-get install prometheus)")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    exprs = [t["expr"] for p in _board(plan)["panels"] for t in p.get("targets", [])]
    rules = {
        "groups": [{"name": "dashboard", "rules": [{"record": f"panel:q{i}", "expr": e} for i, e in enumerate(exprs)]}]
    }
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "a:b", "expr": "rate(x[5m]"}]}]}))
    broken = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert broken.returncode != 0
