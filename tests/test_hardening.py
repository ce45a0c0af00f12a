"""What a platform team checks before production: pod security, resources, probes, network policy,
determinism and secrets. Each test fails when its rule breaks."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pulumi
import pytest

from synapse_workers.cli.render import render_stack
from synapse_workers.cli.report import plan_json, plan_table
from synapse_workers.model.errors import ConfigError
from synapse_workers.model.settings import load_settings
from synapse_workers.model.stack_config import PROJECT_DIR
from synapse_workers.plan import build_plan
from tests.conftest import SECRET_KEYS, base_values, secret_values, settings_for
from tests.mocks import run

WRITABLE_MOUNTS = {"/tmp", "/run/synapse", "/media"}


def workloads(**overrides: Any) -> list[dict[str, Any]]:
    plan = build_plan(settings_for(**overrides))
    return [m for m in plan.manifests() if m["kind"] in ("StatefulSet", "Deployment")]


@pytest.fixture(scope="module")
def prod_workloads() -> list[dict[str, Any]]:
    return workloads(ccu="20000", federation={"enabled": True, "servers": 100})


def test_pods_run_restricted(prod_workloads: list[dict[str, Any]]) -> None:
    # main, the eight guide classes prod deploys (no federation senders), PgBouncer, the router, and
    # the seven duties beyond the guide on at 20,000 CCU (thread subscriptions are off)
    assert len(prod_workloads) == 1 + 8 + 2 + 7
    for workload in prod_workloads:
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name


def test_writable_volumes_only_where_synapse_writes(prod_workloads: list[dict[str, Any]]) -> None:
    for workload in prod_workloads:
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in pod["containers"][0]["volumeMounts"]:
            volume = volumes[mount["name"]]
            writable = not mount.get("readOnly", False)
            if "configMap" in volume or "secret" in volume:
                assert not writable, (workload["metadata"]["name"], mount)
            if writable:
                assert mount["mountPath"] in WRITABLE_MOUNTS, (workload["metadata"]["name"], mount)
        has_media = any(m["mountPath"] == "/media" for m in pod["containers"][0]["volumeMounts"])
        assert has_media == (workload["metadata"]["name"] == "synapse-media-repository")


def test_every_container_has_requests_limits_and_health_probes(prod_workloads: list[dict[str, Any]]) -> None:
    for workload in prod_workloads:
        container = workload["spec"]["template"]["spec"]["containers"][0]
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory"}, workload["metadata"]["name"]
        if workload["metadata"]["name"] == "synapse-router":
            assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
            continue
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}


def test_resources_come_from_stack_config() -> None:
    found = workloads(
        workers={"synchrotron": {"resources": {"requests": {"cpu": "750m"}, "limits": {"memory": "3Gi"}}}},
        main={"resources": {"requests": {"memory": "2Gi"}}},
    )
    by_name = {w["metadata"]["name"]: w["spec"]["template"]["spec"]["containers"][0]["resources"] for w in found}
    assert by_name["synapse-synchrotron"]["requests"]["cpu"] == "750m"
    assert by_name["synapse-synchrotron"]["limits"]["memory"] == "3Gi"
    assert by_name["synapse-main"]["requests"]["memory"] == "2Gi"
    assert by_name["synapse-generic-worker"]["requests"]["cpu"] != "750m"


def test_request_above_limit_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        build_plan(settings_for(workers={"event-persister": {"resources": {"requests": {"cpu": "3"}}}}))
    assert caught.value.key == "synapse:workers.event-persister.resources.requests.cpu"


# -- NetworkPolicy, evaluated the way Kubernetes does: a pod selected by any policy accepts only what some
# -- policy selecting it allows.


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        present = labels.get(expr["key"])
        if expr["operator"] == "NotIn" and present in expr["values"]:
            return False
        if expr["operator"] == "In" and present not in expr["values"]:
            return False
    return True


def _allowed(
    policies: list[dict[str, Any]],
    dest: dict[str, str],
    source: dict[str, str],
    source_namespace: str,
    port: int,
    namespace: str,
) -> bool:
    selecting = [p for p in policies if _matches(p["spec"]["podSelector"], dest)]
    assert selecting, "every Synapse pod must be selected by a policy"
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            if not any(p["port"] == port for p in rule.get("ports", [])):
                continue
            for peer in rule["from"]:
                if "namespaceSelector" in peer:
                    ns_labels = {"kubernetes.io/metadata.name": source_namespace}
                    if _matches(peer["namespaceSelector"], ns_labels):
                        return True
                elif source_namespace == namespace and _matches(peer["podSelector"], source):
                    return True
    return False


def _pod(component: str, stack: str = "test") -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "synapse",
        "app.kubernetes.io/instance": stack,
        "app.kubernetes.io/component": component,
    }


@pytest.mark.parametrize(
    ("dest", "source", "source_namespace", "port", "allowed"),
    [
        ("main", _pod("event-persister"), "matrix", 9093, True),
        ("event-persister", _pod("synchrotron"), "matrix", 9093, True),
        ("main", {"app": "something-else"}, "matrix", 9093, False),
        ("main", _pod("synchrotron", stack="other-stack"), "matrix", 9093, False),
        ("main", _pod("router"), "matrix", 9093, False),
        ("synchrotron", _pod("router"), "matrix", 8008, True),
        ("main", _pod("router"), "matrix", 8008, True),
        ("synchrotron", _pod("generic-worker"), "matrix", 8008, False),
        ("synchrotron", {"app": "ingress-nginx"}, "ingress", 8008, False),
        ("typing-writer", {"app": "prometheus"}, "observability", 9090, True),
        ("typing-writer", {"app": "prometheus"}, "default", 9090, False),
        ("typing-writer", _pod("main"), "matrix", 9090, False),
        ("media-repository", _pod("router"), "matrix", 5432, False),
        ("pgbouncer", _pod("synchrotron"), "matrix", 6432, True),
        ("pgbouncer", _pod("main"), "matrix", 6432, True),
        ("pgbouncer", _pod("router"), "matrix", 6432, False),
        ("pgbouncer", _pod("pgbouncer"), "matrix", 6432, False),
        ("pgbouncer", _pod("main", stack="other-stack"), "matrix", 6432, False),
        ("pgbouncer", {"app": "psql"}, "matrix", 6432, False),
        ("pgbouncer", _pod("main"), "matrix", 8008, False),
        ("main", _pod("pgbouncer"), "matrix", 9093, False),
    ],
)
def test_network_policy(dest: str, source: dict[str, str], source_namespace: str, port: int, allowed: bool) -> None:
    pooler = {"enabled": True, "replicas": 2, "poolSize": 20}
    plan = build_plan(
        settings_for(
            monitoring={"namespace": "observability"},
            postgres={"host": "pg.example.org", "maxConnections": 1000, "pooler": pooler},
        )
    )
    policies = [m for m in plan.manifests() if m["kind"] == "NetworkPolicy"]
    assert _allowed(policies, _pod(dest), source, source_namespace, port, plan.settings.namespace) is allowed


# -- Determinism


def _registered_json(values: dict[str, str]) -> str:
    result = run("prod", values, frozenset())
    return json.dumps(sorted((r.type, r.name, r.inputs) for r in result.registered), sort_keys=True)


def test_two_runs_under_mocks_register_identical_inputs() -> None:
    values = base_values(ccu="12000", federation={"enabled": True, "servers": 300})
    assert _registered_json(values) == _registered_json(values)


def test_render_does_not_depend_on_hash_seed_clock_or_locale(tmp_path: Path) -> None:
    outputs = []
    for seed, tz, lang in (("1", "UTC", "C"), ("4242", "Asia/Tokyo", "C.UTF-8")):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed, "TZ": tz, "LANG": lang, "PYTHONPATH": str(PROJECT_DIR)}
        done = subprocess.run(
            [sys.executable, "-m", "synapse_workers", "render", "--stack", "prod", "--out", str(out)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append({str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.yaml"))})
    assert outputs[0] == outputs[1]


# -- Secrets


def test_no_secret_value_in_manifests_configs_outputs_or_logs(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    values = {**base_values(existingSecret=None, ccu="3000"), **secret_values()}
    exported: dict[str, Any] = {}
    monkeypatch.setattr(pulumi, "export", exported.__setitem__)
    caplog.set_level(logging.DEBUG)
    rendered = render_stack("prod", values, SECRET_KEYS)
    plan = build_plan(load_settings("prod", values, SECRET_KEYS))
    texts = [*rendered.manifests.values(), *rendered.processes.values(), json.dumps(exported, default=str)]
    texts += [plan_table(plan), json.dumps(plan_json(plan)), *(m.config.text for m in plan.workloads)]
    texts += [caplog.text, *capsys.readouterr()]
    assert "replicas" in exported and "secret-synapse-secrets.yaml" in rendered.manifests
    for value in secret_values().values():
        assert all(value not in text for text in texts), value
    assert rendered.manifests["secret-synapse-secrets.yaml"].count("<redacted>") == len(SECRET_KEYS)


def test_disruption_budgets_for_every_class_with_two_or_more_replicas() -> None:
    plan = build_plan(settings_for(ccu="20000", federation={"enabled": True, "servers": 100}))
    budgets = {m["metadata"]["name"]: m for m in plan.manifests() if m["kind"] == "PodDisruptionBudget"}
    expected = {w.name for w in plan.workloads if w.size is not None and w.size.replicas >= 2}
    assert expected | {"synapse-router"} == set(budgets)  # the router runs two replicas by default
    assert {"synapse-main", "synapse-typing-writer"}.isdisjoint(budgets)
    for name, budget in budgets.items():
        if name == "synapse-router":
            continue
        workload = next(w for w in plan.workloads if w.name == name).manifests[0]
        assert budget["spec"]["selector"] == workload["spec"]["selector"]
        assert budget["spec"]["maxUnavailable"] == 1


def test_replicas_of_a_class_spread_over_nodes(prod_workloads: list[dict[str, Any]]) -> None:
    for workload in prod_workloads:
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        if workload["spec"]["replicas"] < 2:
            continue
        (spread,) = pod["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname", name
        assert spread["maxSkew"] == 1
        assert spread["labelSelector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]
