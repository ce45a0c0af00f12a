"""The Pulumi program under Pulumi's own mock runtime: what `pulumi up` would register, and when main rolls."""

from __future__ import annotations

import json
import math
from typing import Any

import pulumi
import pytest
import yaml

from synapse_workers.cli.mock_runtime import RecordingMocks, run_program
from synapse_workers.model.settings import load_settings
from synapse_workers.plan import build_plan
from tests.conftest import DUTIES_FROM_PHASE_3, SECRET_KEYS, base_values, secret_values, settings_for
from tests.mocks import Run, run, stack_values

STATEFUL = {
    "event-persister",
    "media-repository",
    "typing-writer",
    "todevice-writer",
    "receipts-writer",
    "presence-writer",
}
AUTOSCALED = {"synchrotron", "generic-worker"}
BEYOND_AT_PROD = set(DUTIES_FROM_PHASE_3)
"""Main's duties on workers at prod's 20,000 CCU (phase 4). Staging's 500 CCU is phase 1: none of them."""


@pytest.fixture(scope="module", params=["staging", "prod"])
def stack_run(request: pytest.FixtureRequest) -> tuple[str, Run]:
    values, secret_keys = stack_values(request.param)
    return request.param, run(request.param, values, secret_keys)


def shared_config(result: Run) -> dict[str, Any]:
    main = result.one("StatefulSet", "synapse-main")
    volumes = main["spec"]["template"]["spec"]["volumes"]
    name = next(v["configMap"]["name"] for v in volumes if v["name"] == "config-shared")
    loaded: dict[str, Any] = yaml.safe_load(result.configmap_text(name))
    return loaded


def test_kinds_and_names(stack_run: tuple[str, Run]) -> None:
    stack, result = stack_run
    deployments = {o["metadata"]["name"] for o in result.objects("Deployment")}
    statefulsets = {o["metadata"]["name"] for o in result.objects("StatefulSet")}
    pooler = {"synapse-pgbouncer"} if stack == "prod" else set()  # prod runs PgBouncer, staging does not
    assert deployments == {f"synapse-{c}" for c in AUTOSCALED} | {"synapse-router"} | pooler
    beyond = BEYOND_AT_PROD if stack == "prod" else set()
    assert statefulsets == {"synapse-main"} | {f"synapse-{c}" for c in STATEFUL | beyond}
    services = {o["metadata"]["name"] for o in result.objects("Service")}
    assert services == deployments | statefulsets | {f"synapse-{c}-pods" for c in AUTOSCALED}
    assert {o["metadata"]["name"] for o in result.objects("Ingress")} == {"synapse-router"}
    namespaces = {o["metadata"]["namespace"] for o in result.objects() if o["kind"] != "Namespace"}
    expected_namespace = "matrix-staging" if stack == "staging" else "matrix"
    assert namespaces == {expected_namespace}


def test_hpas_only_on_deployments(stack_run: tuple[str, Run]) -> None:
    _, result = stack_run
    hpas = result.objects("HorizontalPodAutoscaler")
    assert {h["spec"]["scaleTargetRef"]["kind"] for h in hpas} == {"Deployment"}
    assert {h["spec"]["scaleTargetRef"]["name"] for h in hpas} == {f"synapse-{c}" for c in AUTOSCALED}
    for hpa in hpas:
        spec = hpa["spec"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 300
        assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
        assert spec["metrics"][0]["resource"]["target"]["averageUtilization"] == 65
        deployment = result.one("Deployment", spec["scaleTargetRef"]["name"])
        assert deployment["spec"]["replicas"] == spec["minReplicas"]
        assert spec["maxReplicas"] >= spec["minReplicas"]


def test_hpa_windows_come_from_the_stack() -> None:
    """The guide's five minutes unless the stack says otherwise (a test cluster that must see the HPA act
    within minutes, as the node tier does); each direction on its own."""
    result = run("prod", base_values(ccu="5000", hpa={"scaleUpWindowSeconds": 30, "scaleDownWindowSeconds": 0}))
    behaviors = {h["metadata"]["name"]: h["spec"]["behavior"] for h in result.objects("HorizontalPodAutoscaler")}
    assert set(behaviors) == {f"synapse-{c}" for c in AUTOSCALED}
    for behavior in behaviors.values():
        assert behavior == {
            "scaleUp": {"stabilizationWindowSeconds": 30},
            "scaleDown": {"stabilizationWindowSeconds": 0},
        }


def test_autoscaled_pods_drain_before_they_stop(stack_run: tuple[str, Run]) -> None:
    """The router finds autoscaled pods through DNS, so a pod the HPA or a rollout stops must keep serving
    until the router has dropped it (DNS TTL 5 s + a resolution every 5 s + 5 s obsolete hold) and a
    30 s long-poll on it has ended; SIGTERM comes after that, well within the grace period."""
    _, result = stack_run
    router = next(o for o in result.objects("ConfigMap") if "haproxy.cfg" in o.get("data", {}))["data"]["haproxy.cfg"]
    assert "    hold valid 5s\n" in router and "    hold obsolete 5s\n" in router
    for kind in ("Deployment", "StatefulSet"):
        for workload in result.objects(kind):
            if workload["metadata"]["name"] in ("synapse-router", "synapse-pgbouncer"):
                continue
            spec = workload["spec"]["template"]["spec"]
            lifecycle = spec["containers"][0].get("lifecycle")
            if kind == "StatefulSet":  # reached by stable names and health checks: nothing to wait for
                assert lifecycle is None, workload["metadata"]["name"]
                continue
            command = lifecycle["preStop"]["exec"]["command"]
            assert command[0] == "sleep" and 5 + 5 + 5 + 30 <= int(command[1]) < spec["terminationGracePeriodSeconds"]


def test_a_shorter_drain_is_the_stacks_own() -> None:
    """synapse:router.drainSeconds sets every autoscaled pod's preStop, and nothing else changes."""
    base = settings_for(ccu=500)
    shorter = settings_for(ccu=500, router={"drainSeconds": 20})
    assert base.router.drain_seconds == 45
    changed = []
    for before, after in zip(build_plan(base).manifests(), build_plan(shorter).manifests(), strict=True):
        if before != after:
            changed.append(after["metadata"]["name"])
            containers = after["spec"]["template"]["spec"]["containers"]
            commands = [c["lifecycle"]["preStop"]["exec"]["command"] for c in containers]
            assert commands == [["sleep", "20"]], commands
    assert sorted(changed) == ["synapse-generic-worker", "synapse-synchrotron"], changed


def test_statefulset_services_are_headless(stack_run: tuple[str, Run]) -> None:
    _, result = stack_run
    for sts in result.objects("StatefulSet"):
        svc = result.one("Service", sts["spec"]["serviceName"])
        assert svc["spec"]["clusterIP"] == "None"


def test_prod_replicas_follow_the_guide_formulas() -> None:
    values, secret_keys = stack_values("prod")
    result = run("prod", values, secret_keys)
    ccu = int(values["synapse:ccu"])
    assert result.one("Deployment", "synapse-synchrotron")["spec"]["replicas"] == math.ceil(ccu / 250)
    assert result.one("HorizontalPodAutoscaler", "synapse-synchrotron")["spec"]["maxReplicas"] == math.ceil(
        ccu * 2 / 250
    )
    assert result.one("StatefulSet", "synapse-event-persister")["spec"]["replicas"] == math.ceil(800 / 50)
    assert result.one("StatefulSet", "synapse-media-repository")["spec"]["replicas"] == math.ceil(ccu / 1000)
    assert result.one("StatefulSet", "synapse-receipts-writer")["spec"]["replicas"] == math.ceil(ccu / 2000)
    for single in ("typing-writer", "todevice-writer", "presence-writer"):
        assert result.one("StatefulSet", f"synapse-{single}")["spec"]["replicas"] == 1
    assert result.one("StatefulSet", "synapse-main")["spec"]["replicas"] == 1
    # Replica counts are integers again, not the floats protobuf hands the mocks.
    assert isinstance(result.one("StatefulSet", "synapse-main")["spec"]["replicas"], int)


def test_topology_names_exactly_the_statefulset_pods(stack_run: tuple[str, Run]) -> None:
    stack, result = stack_run
    config = shared_config(result)
    namespace = "matrix-staging" if stack == "staging" else "matrix"
    pods = {
        o["metadata"]["name"]: [f"{o['metadata']['name']}-{i}" for i in range(o["spec"]["replicas"])]
        for o in result.objects("StatefulSet")
    }
    writers = {
        "events": "synapse-event-persister",
        "typing": "synapse-typing-writer",
        "to_device": "synapse-todevice-writer",
        "receipts": "synapse-receipts-writer",
        "presence": "synapse-presence-writer",
    }
    if stack == "prod":
        writers |= {
            "account_data": "synapse-account-data-writer",
            "push_rules": "synapse-push-rules-writer",
            "device_lists": "synapse-device-lists-writer",
        }
    assert set(config["stream_writers"]) == set(writers) | {"quarantined_media_changes"}
    for stream, workload in writers.items():
        assert config["stream_writers"][stream] == pods[workload], stream
    media_0 = pods["synapse-media-repository"][0]
    assert config["stream_writers"]["quarantined_media_changes"] == ["master", media_0]
    expected_map = {"main", media_0} | {pod for workload in writers.values() for pod in pods[workload]}
    assert set(config["instance_map"]) == expected_map
    duties = (
        "pusher_instances",
        "run_background_tasks_on",
        "update_user_directory_from_worker",
        "notify_appservices_from_worker",
    )
    if stack == "prod":
        assert config["pusher_instances"] == pods["synapse-pusher"]
        assert config["run_background_tasks_on"] == "synapse-background-worker-0"
        assert config["update_user_directory_from_worker"] == "synapse-user-directory-0"
        assert config["notify_appservices_from_worker"] == "synapse-appservice-sender-0"
    else:
        assert not set(duties) & set(config), "below phase 3 every duty stays on main"
    for name, entry in config["instance_map"].items():
        pod = "synapse-main-0" if name == "main" else name
        service = pod.rsplit("-", 1)[0]
        assert entry == {"host": f"{pod}.{service}.{namespace}.svc.cluster.local", "port": 9093}
    assert config["media_instance_running_background_jobs"] == pods["synapse-media-repository"][0]
    assert config["federation_sender_instances"] == []


def test_every_worker_gets_its_pod_name_as_worker_name(stack_run: tuple[str, Run]) -> None:
    _, result = stack_run
    for kind in ("StatefulSet", "Deployment"):
        for workload in result.objects(kind):
            if workload["metadata"]["name"] in ("synapse-router", "synapse-pgbouncer"):
                continue
            container = workload["spec"]["template"]["spec"]["containers"][0]
            env = {e["name"]: e for e in container["env"]}
            assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            script = " ".join(container["command"])
            if workload["metadata"]["name"] == "synapse-main":
                assert "synapse.app.homeserver" in script
            else:
                assert "worker_name: %s" in script and '"$POD_NAME"' in script
                assert "synapse.app.generic_worker" in script


def test_federation_enabled_adds_senders_and_federation_listeners() -> None:
    values, secret_keys = stack_values("prod", federation=json.dumps({"enabled": True, "servers": 200}))
    result = run("prod", values, secret_keys)
    senders = result.one("StatefulSet", "synapse-federation-sender")
    assert senders["spec"]["replicas"] == 4
    config = shared_config(result)
    assert config["federation_sender_instances"] == [f"synapse-federation-sender-{i}" for i in range(4)]
    assert "federation_domain_whitelist" not in config


def _main_statefulset(values: dict[str, str]) -> str:
    result = run("prod", values, frozenset())
    return json.dumps(result.one("StatefulSet", "synapse-main"), sort_keys=True)


def test_adding_an_event_persister_changes_mains_pod_template() -> None:
    before_values = base_values(ccu="5000")  # 200 msg/s → 4 persisters
    after_values = base_values(ccu="5100")  # 204 msg/s → 5 persisters
    before = load_settings("prod", before_values)
    after = load_settings("prod", after_values)
    assert (
        build_plan(after).topology.members["event-persister"] != build_plan(before).topology.members["event-persister"]
    )
    assert _main_statefulset(before_values) != _main_statefulset(after_values)


@pytest.mark.parametrize(
    "change",
    [
        {"hpa": {"targetCpuUtilization": 70}},
        {"hpa": {"headroom": 3}},
        {"hpa": {"scaleUpWindowSeconds": 30, "scaleDownWindowSeconds": 60}},
        {"workers": {"synchrotron": {"minReplicas": 9}}},
        {"workers": {"generic-worker": {"replicas": 7, "maxReplicas": 40}}},
        {"workers": {"media-repository": {"replicas": 6}}},
        {"workers": {"synchrotron": {"resources": {"requests": {"cpu": "750m"}}}}},
    ],
)
def test_a_change_main_does_not_read_leaves_it_byte_identical(change: dict[str, Any]) -> None:
    baseline = base_values(ccu="5000")
    changed = base_values(ccu="5000", **change)
    assert baseline != changed
    assert _main_statefulset(baseline) == _main_statefulset(changed)


@pytest.mark.parametrize(
    "bad",
    [{"ccu": "-3"}, {"workers": {"typing-writer": {"replicas": 2}}}, {"bogus": "1"}],
)
def test_bad_config_stops_before_anything_is_registered(bad: dict[str, Any]) -> None:
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError, match="stack 'prod': synapse:"):
        run_program("prod", base_values(**bad), mocks=mocks)
    assert mocks.registered == []


def test_managed_secret_carries_pulumi_secrets_and_nothing_else_does() -> None:
    values = {**base_values(existingSecret=None), **secret_values()}
    result = run("prod", values, SECRET_KEYS)
    secret = result.resource("Secret", "synapse-secrets")
    assert secret.secret_paths == ("stringData",)
    everything_else = json.dumps([r.inputs for r in result.registered if r is not secret])
    for value in secret_values().values():
        assert value not in everything_else
    pod = result.one("StatefulSet", "synapse-main")["spec"]["template"]["spec"]
    secret_volume = next(v for v in pod["volumes"] if v["name"] == "secrets")
    assert secret_volume["secret"]["secretName"] == "synapse-secrets"


def test_monitoring_objects_registered_only_when_enabled() -> None:
    def kinds(**overrides: Any) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for registered in run("prod", base_values(**overrides)).registered:
            if registered.type.startswith("kubernetes:monitoring.coreos.com/v1:"):
                found.setdefault(registered.inputs["kind"], []).append(registered.inputs)
        return found

    assert kinds() == {}
    enabled = kinds(monitoring={"enabled": True, "namespace": "observability", "labels": {"release": "prom"}})
    workloads = run("prod", base_values()).objects("StatefulSet") + run("prod", base_values()).objects("Deployment")
    synapse_workloads = [w for w in workloads if w["metadata"]["name"] != "synapse-router"]
    assert len(enabled["ServiceMonitor"]) == len(synapse_workloads)
    assert len(enabled["PrometheusRule"]) == 1
    assert all(m["metadata"]["labels"]["release"] == "prom" for m in enabled["ServiceMonitor"])
