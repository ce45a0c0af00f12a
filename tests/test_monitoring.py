"""ServiceMonitors and alerts for the scaling guide's targets.

The pure tests hold the objects to the plan they come from (the Services, the workloads, the settings
the program accepts) and to the installed Synapse's source, which is where the metric names must exist.
promtool then checks that Prometheus accepts the rules and that the key alerts fire just above their
threshold and stay quiet just below it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml

from synapse_workers.kube import alerts, monitoring, queries
from synapse_workers.model.errors import ConfigError
from synapse_workers.model.settings import TOP_LEVEL_KEYS, load_settings
from synapse_workers.model.worker_classes import BY_NAME, CLASS_NAMES, WORKER_CLASSES
from synapse_workers.plan import Plan, build_plan
from synapse_workers.synapse.topology import METRICS_PORT
from tests.conftest import base_values, settings_for

PROMTOOL_DIR = Path(__file__).parent / "promtool"
UNIT_TEST_FILES = sorted(PROMTOOL_DIR.glob("*.test.yaml"))

STAGING: dict[str, Any] = {"ccu": 500, "namespace": "matrix-staging"}
PROD: dict[str, Any] = {"ccu": 20000, "namespace": "matrix", "messagesPerSecond": 800}
FEDERATION: dict[str, Any] = {"federation": {"enabled": True, "servers": 100}}
PLANS: dict[str, dict[str, Any]] = {
    "staging": STAGING,
    "staging+federation": {**STAGING, **FEDERATION},
    "prod": PROD,
    "prod+federation": {**PROD, **FEDERATION},
}
UNIT_TEST_PLAN = "prod+federation"
"""The promtool cases are written for this plan: namespace `matrix`, every class deployed."""

METRIC_PREFIXES = ("synapse_", "kube_", "container_")
SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def plan_for(name: str, **extra: Any) -> Plan:
    monitoring_settings = extra.pop("monitoring", {"enabled": True})
    return build_plan(settings_for(monitoring=monitoring_settings, **PLANS[name], **extra))


@pytest.fixture(scope="module")
def plans() -> dict[str, Plan]:
    return {name: plan_for(name) for name in PLANS}


def rule_spec(plan: Plan) -> dict[str, Any]:
    rules = [m for m in monitoring.monitoring_manifests(plan) if m["kind"] == "PrometheusRule"]
    assert len(rules) == 1
    return rules[0]["spec"]  # type: ignore[no-any-return]


def all_rules(plan: Plan) -> list[dict[str, Any]]:
    return [rule for group in rule_spec(plan)["groups"] for rule in group["rules"]]


def alert_rules(plan: Plan) -> list[dict[str, Any]]:
    return [rule for rule in all_rules(plan) if "alert" in rule]


def matchers(body: str) -> dict[str, tuple[str, str]]:
    return {label: (op, value) for label, op, value in MATCHER.findall(body)}


def selectors(expr: str) -> Iterator[tuple[str, dict[str, tuple[str, str]]]]:
    for metric, body in SELECTOR.findall(expr):
        yield metric, matchers(body)


def endpoint_port(spec: dict[str, Any]) -> str:
    (endpoint,) = spec["endpoints"]
    return str(endpoint["port"])


def deployed_parts(plan: Plan) -> set[str]:
    return {w.part for w in plan.workloads}


# --- what gets emitted ---------------------------------------------------------------------------------


@pytest.mark.parametrize("given", [None, {"enabled": False, "labels": {"release": "prometheus"}}])
def test_nothing_without_monitoring_enabled(given: dict[str, Any] | None) -> None:
    """Without the Operator's CRDs the cluster would refuse these kinds, so off must mean none at all."""
    settings = settings_for(ccu=20000) if given is None else settings_for(ccu=20000, monitoring=given)
    assert monitoring.monitoring_manifests(build_plan(settings)) == ()


@pytest.mark.parametrize("name", list(PLANS))
def test_one_service_monitor_per_synapse_service(plans: dict[str, Plan], name: str) -> None:
    """Each ServiceMonitor must select exactly one of the plan's Services, through its metrics port."""
    plan = plans[name]
    settings = plan.settings
    # Services with a metrics port: the router's Service and the ready-pods Services it resolves carry
    # the same labels for some classes but no metrics port, so the Operator finds no target in them.
    services = [
        m
        for m in plan.manifests()
        if m["kind"] == "Service" and any(p["name"] == "metrics" for p in m["spec"]["ports"])
    ]
    monitors = [m for m in monitoring.monitoring_manifests(plan) if m["kind"] == "ServiceMonitor"]
    assert len(services) == len(plan.workloads)
    assert len(monitors) == len(services)

    matched: list[str] = []
    for monitor in monitors:
        spec = monitor["spec"]
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["namespace"] == settings.namespace
        assert spec["namespaceSelector"] == {"matchNames": [settings.namespace]}
        wanted = spec["selector"]["matchLabels"]
        assert wanted["app.kubernetes.io/name"] == "synapse"
        assert wanted["app.kubernetes.io/instance"] == settings.stack
        every = [m for m in plan.manifests() if m["kind"] == "Service"]
        selected = [s for s in every if wanted.items() <= s["metadata"]["labels"].items()]
        assert all(s in services or all(p["name"] != endpoint_port(spec) for p in s["spec"]["ports"]) for s in selected)
        hits = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        assert len(hits) == 1, (monitor["metadata"]["name"], [h["metadata"]["name"] for h in hits])
        service = hits[0]
        assert wanted["app.kubernetes.io/component"] == service["metadata"]["labels"]["app.kubernetes.io/component"]
        ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
        (endpoint,) = spec["endpoints"]
        assert ports[endpoint["port"]] == METRICS_PORT
        matched.append(service["metadata"]["name"])
    assert sorted(matched) == sorted(s["metadata"]["name"] for s in services)


def test_operator_labels_reach_every_object_and_their_order_does_not_matter() -> None:
    """The Operator finds these objects by label; and two runs of one config must not differ by a byte."""
    given = {"enabled": True, "labels": {"release": "prometheus", "team": "chat"}}
    first = plan_for("prod", monitoring=given)
    second = plan_for("prod", monitoring={"enabled": True, "labels": {"team": "chat", "release": "prometheus"}})
    objects = monitoring.monitoring_manifests(first)
    assert {m["kind"] for m in objects} == {"ServiceMonitor", "PrometheusRule"}
    for manifest in objects:
        assert manifest["metadata"]["namespace"] == "matrix"
        assert manifest["metadata"]["labels"]["release"] == "prometheus"
        assert manifest["metadata"]["labels"]["team"] == "chat"
    again = monitoring.monitoring_manifests(plan_for("prod", monitoring=given))
    assert json.dumps(objects) == json.dumps(again)
    assert json.dumps(objects) == json.dumps(monitoring.monitoring_manifests(second))


# --- the alerts ----------------------------------------------------------------------------------------


def test_federation_alerts_only_with_federation(plans: dict[str, Plan]) -> None:
    federation = {alerts.FEDERATION_QUEUE, alerts.FEDERATION_FAILURES}
    for name, plan in plans.items():
        names = {rule["alert"] for rule in alert_rules(plan)}
        if "federation" in name:
            assert federation <= names, name
        else:
            assert not federation & names, name


@pytest.mark.parametrize("name", list(PLANS))
def test_every_alert_names_a_deployed_class_and_what_to_do(plans: dict[str, Plan], name: str) -> None:
    plan = plans[name]
    parts = deployed_parts(plan)
    rules = alert_rules(plan)
    assert rules
    for rule in rules:
        labels = rule["labels"]
        assert labels["worker_class"] in parts, rule["alert"]
        assert labels["severity"] in ("warning", "critical"), rule["alert"]
        assert re.fullmatch(r"\d+m", rule["for"]), rule["alert"]
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["alert"]
        description = annotations["description"]
        assert len(description) > 80, rule["alert"]
        assert "pulumi up" in description or "kubectl" in description, rule["alert"]
    # One alert name per kind of problem, one rule per class: no class gets the same alert twice.
    keys = [(r["alert"], r["labels"]["worker_class"]) for r in rules]
    assert len(keys) == len(set(keys))


def test_the_guides_targets_each_have_an_alert(plans: dict[str, Plan]) -> None:
    """Which class each target belongs to, from the guide (worker_classes.py), not from the rules."""
    plan = plans["prod+federation"]
    by_name: dict[str, set[str]] = {}
    for rule in alert_rules(plan):
        by_name.setdefault(rule["alert"], set()).add(rule["labels"]["worker_class"])
    assert by_name[alerts.SYNC_LATENCY] == {"synchrotron"}
    assert by_name[alerts.CLIENT_LATENCY] == {"generic-worker"}
    assert by_name[alerts.PERSISTER_RATE] == {"event-persister"}
    assert by_name[alerts.FEDERATION_QUEUE] == {"federation-sender"}
    assert by_name[alerts.FEDERATION_FAILURES] == {"federation-sender"}
    deployed = {s.spec.name for s in plan.sizes if s.deployed}
    assert "thread-subscriptions-writer" not in deployed  # so the sets below are not the whole table
    hpa_classes = {c for c in CLASS_NAMES if BY_NAME[c].scaling == "hpa"}
    manual_classes = {c for c in deployed if BY_NAME[c].kind == "StatefulSet"}
    assert by_name[alerts.HPA_AT_MAX] == hpa_classes
    assert by_name[alerts.CPU_HIGH] == manual_classes | {"main"}
    assert by_name[alerts.STATEFULSET_NOT_READY] == manual_classes | {"main"}
    # Every stream writer whose stream Synapse reports a position for; typing has none (in memory).
    writers = {c for c in deployed if BY_NAME[c].stream is not None}
    assert by_name[alerts.REPLICATION_LAG] == writers - {"typing-writer"}


def test_every_expression_is_scoped_to_the_stack(plans: dict[str, Plan]) -> None:
    """Two stacks in one Prometheus must never read each other's series."""
    plan = plans["staging+federation"]
    namespace = plan.settings.namespace
    assert namespace != "matrix"
    services = {m["metadata"]["name"] for m in plan.manifests() if m["kind"] == "Service"}
    workloads = {w.name for w in plan.workloads}
    for rule in all_rules(plan):
        expr = rule["expr"]
        name = rule.get("alert") or rule["record"]
        # Every metric in the expression comes with a selector; no bare metric reads every stack.
        for match in METRIC_NAME.finditer(expr):
            if match.group().startswith(METRIC_PREFIXES):
                assert expr[match.end() : match.end() + 1] == "{", (name, match.group())
        found = list(selectors(expr))
        assert found, name
        for metric, given in found:
            assert given.get("namespace") == ("=", namespace), (name, metric)
            if metric.startswith("synapse_") and ":" not in metric:
                op, value = given["job"]
                jobs = set(value.split("|")) if op == "=~" else {value}
                assert op in ("=", "=~") and jobs <= services, (name, metric, value)
            for label in ("horizontalpodautoscaler", "statefulset"):
                if label in given:
                    assert given[label][0] == "=" and given[label][1] in workloads, (name, metric)
            if metric.startswith(("container_", "kube_pod_")):
                op, value = given["pod"]
                assert op == "=~" and re.fullmatch(r"synapse-[a-z-]+-\[0-9\]\+", value), (name, value)
                assert value.removesuffix("-[0-9]+") in workloads, (name, value)


def _override_for(plan: Plan, key: str) -> dict[str, Any]:
    """The config change a `pulumi config set --path <key> …` in an alert makes, with a plausible value."""
    path = key.removeprefix("synapse:").split(".")
    if path[0] == "main":
        assert path[1:] in (["resources", "requests", "cpu"], ["resources", "limits", "cpu"]), key
        return {"main": {"resources": {path[2]: {"cpu": "1"}}}}
    assert path[0] == "workers", key
    cls, field = path[1], path[2:]
    size = next(s for s in plan.sizes if s.spec.name == cls)
    if field == ["replicas"]:
        return {"workers": {cls: {"replicas": size.replicas + 1}}}
    if field == ["maxReplicas"]:
        assert size.max_replicas is not None
        return {"workers": {cls: {"maxReplicas": size.max_replicas + 1}}}
    assert field in (["resources", "requests", "cpu"], ["resources", "limits", "cpu"]), key
    return {"workers": {cls: {"resources": {field[1]: {"cpu": "1"}}}}}


def test_the_advice_in_every_alert_is_config_the_program_accepts(plans: dict[str, Plan]) -> None:
    """An alert that tells an operator to run a command the program then refuses is worse than none."""
    plan = plans["prod+federation"]
    checked = 0
    for rule in alert_rules(plan):
        description = rule["annotations"]["description"]
        for key in re.findall(r"`pulumi config set --path (synapse:[\w.-]+) ", description):
            overrides = {**PLANS["prod+federation"], **_override_for(plan, key)}
            load_settings("test", base_values(**overrides))
            checked += 1
        for key in re.findall(r"`pulumi config set (synapse:\w+) ", description):
            assert key.removeprefix("synapse:") in TOP_LEVEL_KEYS, key
    assert checked >= len(CLASS_NAMES)


def test_scale_up_hint_follows_the_guide_procedure_where_synapse_allows_it(plans: dict[str, Plan]) -> None:
    plan = plans["prod+federation"]
    cpu = {r["labels"]["worker_class"]: r for r in alert_rules(plan) if r["alert"] == alerts.CPU_HIGH}
    for cls, rule in cpu.items():
        description = rule["annotations"]["description"]
        replicas_hint = f"`pulumi config set --path synapse:workers.{cls}.replicas N` then `pulumi up`"
        if cls != "main" and not BY_NAME[cls].exactly_one:
            assert replicas_hint in description, cls
            continue
        # Main and the single-writer classes cannot take a second replica; the hint must not ask for one.
        assert ".replicas" not in description, cls
        assert "resources.requests.cpu" in description, cls
        if cls != "main":
            with pytest.raises(ConfigError):
                load_settings("test", base_values(**PROD, workers={cls: {"replicas": 2}}))


def test_watch_points_at_an_alert_that_exists(plans: dict[str, Plan]) -> None:
    """What `plan` prints must be an alert this stack really has, reading the metric it names."""
    plan = plans["prod+federation"]
    rules = all_rules(plan)
    records = {r["record"]: r["expr"] for r in rules if "record" in r}
    for workload in plan.workloads:
        part = workload.part
        metric, alert = alerts.watch_for(workload.spec)
        rule = next(
            (r for r in rules if r.get("alert") == alert and r["labels"]["worker_class"] == part),
            None,
        )
        assert rule is not None, (part, alert)
        expr = rule["expr"] + "".join(records[name] for name in records if name in rule["expr"])
        bare = metric.split("{", 1)[0]
        assert re.search(re.escape(bare) + r"(_bucket)?\{", expr), (part, metric)
        for label, (_, value) in matchers(metric.partition("{")[2]).items():
            assert f'{label}="{value}"' in expr or f"{label}=~" in expr, (part, label)


# --- the metric names are Synapse's own ----------------------------------------------------------------


@pytest.fixture(scope="module")
def synapse_source() -> str:
    spec = find_spec("synapse")
    assert spec is not None and spec.origin is not None
    root = Path(spec.origin).parent
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.py")))


def _declared_kind(source: str, name: str) -> set[str]:
    found = re.findall(r"\b(Counter|Histogram|Gauge|LaterGauge)\(\s*(?:name=)?\"" + re.escape(name) + '"', source)
    return set(found)


def test_synapse_metric_names_exist_in_the_installed_synapse(plans: dict[str, Plan], synapse_source: str) -> None:
    """A misspelt metric never fires; the suffix must also fit the type Prometheus' client gives it."""
    plan = plans["prod+federation"]
    used = {m for rule in all_rules(plan) for m, _ in selectors(rule["expr"]) if m.startswith("synapse_")}
    used -= {r["record"] for r in all_rules(plan) if "record" in r}
    assert len(used) >= 6
    for metric in sorted(used):
        if metric.endswith("_bucket"):
            kinds, want = _declared_kind(synapse_source, metric.removesuffix("_bucket")), {"Histogram"}
        elif metric.endswith("_total"):
            kinds, want = _declared_kind(synapse_source, metric.removesuffix("_total")), {"Counter"}
        else:
            kinds, want = _declared_kind(synapse_source, metric), {"Gauge", "LaterGauge"}
        assert kinds and kinds <= want, (metric, kinds)


def test_stream_servlet_and_tag_names_exist_in_the_installed_synapse(synapse_source: str) -> None:
    for stream in (c.metrics_stream for c in WORKER_CLASSES if c.metrics_stream is not None):
        assert f'stream_name="{stream}"' in synapse_source, stream
    for servlet in queries.LONG_POLL_SERVLETS:
        assert f"class {servlet}(" in synapse_source, servlet
    assert 'sync_label = f"sync_v2:{sync_type}"' in synapse_source
    for sync_type in ("initial_sync", "full_state_sync", "incremental_sync"):
        assert f'sync_type = "{sync_type}"' in synapse_source


# --- promtool ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(
                "promtool is missing in CI: install Debian's `prometheus` package (apt-get install -y prometheus)"
            )
        pytest.skip("promtool not installed (Debian: apt-get install -y prometheus); CI=true makes this a failure")
    return path


def _run(promtool: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("name", list(PLANS))
def test_promtool_accepts_the_rules(promtool: str, plans: dict[str, Plan], name: str, tmp_path: Path) -> None:
    """promtool parses every expression and every annotation template, as Prometheus will on load."""
    spec = rule_spec(plans[name])
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    result = _run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    count = sum(len(g["rules"]) for g in spec["groups"])
    assert f"SUCCESS: {count} rules found" in result.stdout


def _write_unit_test(test_file: Path, plan: Plan, into: Path, invert: bool = False) -> tuple[Path, int]:
    """The test file beside the rules it names, and how many cases it holds.

    Annotations are left out of this copy: promtool compares them verbatim, and these cases are about
    when an alert fires; `check rules` already renders every annotation template.
    """
    spec = rule_spec(plan)
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (into / "rules.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    document = yaml.safe_load(test_file.read_text())
    assert document["rule_files"] == ["rules.yaml"]
    cases = 0
    for group in document["tests"]:
        for case in group.get("alert_rule_test", []):
            cases += 1
            if invert:
                case["exp_alerts"] = [] if case["exp_alerts"] else [{"exp_labels": {"worker_class": "nobody"}}]
        for case in group.get("promql_expr_test", []):
            cases += 1
            if invert:
                for sample in case["exp_samples"]:
                    sample["value"] += 1
    target = into / test_file.name
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target, cases


@pytest.fixture(scope="module")
def unit_test_plan() -> Plan:
    return plan_for(UNIT_TEST_PLAN)


def test_the_key_alerts_have_firing_and_quiet_cases() -> None:
    """The brief's minimum: sync latency, HPA at max and replication lag, each above and below threshold."""
    fires: set[str] = set()
    quiet: set[str] = set()
    for test_file in UNIT_TEST_FILES:
        for group in yaml.safe_load(test_file.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                (fires if case["exp_alerts"] else quiet).add(case["alertname"])
    for alert in (alerts.SYNC_LATENCY, alerts.HPA_AT_MAX, alerts.REPLICATION_LAG):
        assert alert in fires and alert in quiet, alert


@pytest.mark.parametrize("test_file", UNIT_TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(promtool: str, unit_test_plan: Plan, test_file: Path, tmp_path: Path) -> None:
    target, cases = _write_unit_test(test_file, unit_test_plan, tmp_path)
    assert cases > 0
    result = _run(promtool, "test", "rules", target.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize("test_file", UNIT_TEST_FILES, ids=lambda p: p.name)
def test_promtool_runs_every_case(promtool: str, unit_test_plan: Plan, test_file: Path, tmp_path: Path) -> None:
    """With every expectation inverted, every case must fail: none is silently skipped."""
    target, cases = _write_unit_test(test_file, unit_test_plan, tmp_path, invert=True)
    result = _run(promtool, "test", "rules", target.name, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    failures = re.findall(r"^\s+(?:alertname: \S+|expr: .*), time: \S+,", output, flags=re.MULTILINE)
    assert len(failures) == cases, output
