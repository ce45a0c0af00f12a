"""`pulumi up` for real: the engine, the Kubernetes provider and a Kubernetes API, staging then prod.

One backend and one cluster for the module; the tests run in order and build on each other, as an
operator's week would: staging first, prod refused until staging has it, scaling, a failed update, the
maintenance window, destroy.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml
from pulumi import automation

from components.program import run as program_run
from synapse_workers.cli.render import render_stack
from synapse_workers.model.stack_config import PROJECT_DIR, read_stack_file
from synapse_workers.ops.guards import DIGEST_ANNOTATION, REVISION_ANNOTATION
from synapse_workers.ops.promote import StackLike, automation_select, promote
from synapse_workers.ops.revision import program_revision
from tests.engine.conftest import TEST_SECRETS, Engine, signing_key
from tests.engine.operations import PodWatcher, kubernetes_state, refused, restarted, steps, up

REDACTED_KINDS = ("Secret",)


def _plain(value: Any) -> Any:
    """State numbers are floats on the wire (2.0 is 2, as for the API server), and the engine drops empty
    lists and maps from inputs (an empty `ingress: []` is no `ingress`): compare both sides that way."""
    if isinstance(value, dict):
        pruned = {k: _plain(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def rendered(engine: Engine, name: str) -> dict[tuple[str, str], dict[str, Any]]:
    values, secret_keys = read_stack_file(name, engine.project_for(name) / f"Pulumi.{name}.yaml")
    out = render_stack(name, values, secret_keys)
    objects = [yaml.safe_load(text) for text in out.manifests.values()]
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def synapse_parts(objects: dict[tuple[str, str], dict[str, Any]]) -> set[str]:
    return {
        o["metadata"]["labels"]["app.kubernetes.io/component"]
        for (kind, _), o in objects.items()
        if kind in ("StatefulSet", "Deployment")
        and o["metadata"]["name"] not in ("synapse-router", "synapse-pgbouncer")
    }


def test_prod_is_refused_while_staging_does_not_exist(engine: Engine) -> None:
    prod = engine.stack("prod", PROD)
    message = refused(engine, prod, "up")
    assert message == (
        "stack 'prod': a guard cannot read what is deployed: "
        "stack 'organization/synapse-workers/staging' does not exist in this backend"
    )
    assert kubernetes_state(prod) == {}


def test_staging_up_creates_what_render_shows_and_it_runs(engine: Engine) -> None:
    stack = engine.stack("staging")
    result = up(engine, stack)
    assert result.summary.result == "succeeded"
    state = kubernetes_state(stack)
    expected = rendered(engine, "staging")
    assert sorted(state) == sorted(expected)
    exported = json.dumps(stack.export_stack().deployment)
    assert not [name for name, value in TEST_SECRETS.items() if value in exported]
    for key, manifest in expected.items():
        inputs = _plain(state[key]["inputs"])
        if key[0] in REDACTED_KINDS:  # the state holds it encrypted; the cluster has the keys render names
            live = engine.get("secret", key[1], manifest["metadata"]["namespace"])
            assert set(live["data"]) == set(manifest["stringData"]), key
            continue
        wanted = _plain(manifest)
        for field in wanted:
            assert inputs.get(field) == wanted[field], f"{key}: {field} differs from render"
    namespace = "matrix-staging"
    for kind in ("statefulset", "deployment"):
        for item in json.loads(engine.kubectl("get", kind, "-n", namespace, "-o", "json"))["items"]:
            ready = item.get("status", {}).get("readyReplicas", 0)
            assert ready == item["spec"]["replicas"], f"{kind}/{item['metadata']['name']}: {ready} ready"
    jobs = json.loads(engine.kubectl("get", "jobs", "-n", namespace, "-o", "json"))["items"]
    # The check (run by the executor) and the schema Job (kwok completes it: no database here; the schema
    # itself is proven in tests/e2e/test_schema_e2e.py and on the node).
    done = sorted((j["metadata"]["labels"]["app.kubernetes.io/component"], j["status"].get("succeeded")) for j in jobs)
    assert done == [("config-check", 1), ("schema", 1)]
    checked = [o for o in engine.executor.outcomes if o.exit_code == 0]
    parts = synapse_parts(expected)
    assert len(parts) == 9  # main and the eight classes staging deploys (no federation sender)
    assert checked and checked[-1].output.count("Config parses OK!") == len(parts), engine.executor.outcomes
    assert all(f"checking {part}" in checked[-1].output for part in parts)
    preview = stack.preview(expect_no_changes=True, color="never")
    assert set(preview.change_summary) == {"same"}


PROD = {"ccu": "3000", "stagingGate": "staging"}
"""Prod as shipped (PgBouncer, both guards), at a load that keeps the fake cluster's work small."""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synapse_workers", *args], capture_output=True, text=True, check=False, cwd=PROJECT_DIR
    )


def generations(engine: Engine, namespace: str) -> dict[str, int]:
    """Each Synapse workload's metadata.generation: it moves exactly when its spec is written."""
    found = {}
    for kind in ("statefulset", "deployment"):
        for item in json.loads(engine.kubectl("get", kind, "-n", namespace, "-o", "json"))["items"]:
            found[f"{kind}/{item['metadata']['name']}"] = item["metadata"]["generation"]
    return found


def set_secret(stack: automation.Stack, key: str, value: str) -> None:
    stack.set_config(f"synapse:{key}", automation.ConfigValue(value, secret=True))


def test_prod_up_is_accepted_once_staging_has_this_revision(engine: Engine) -> None:
    prod = engine.stacks["prod"]
    result = up(engine, prod)
    assert result.summary.result == "succeeded"
    pooler = engine.get("deployment", "synapse-pgbouncer", "matrix")
    assert pooler["status"].get("readyReplicas") == 2
    main = engine.get("statefulset", "synapse-main", "matrix")
    assert main["metadata"]["annotations"][REVISION_ANNOTATION] == program_revision()
    assert set(prod.preview(expect_no_changes=True, color="never").change_summary) == {"same"}


def test_a_config_synapse_rejects_stops_up_at_the_check_and_gates_prod(engine: Engine) -> None:
    staging = engine.stacks["staging"]
    before = generations(engine, "matrix-staging")
    set_secret(staging, "signingKey", "ed25519 a_engine not-base64!\n")
    engine.set(staging, "messagesPerSecond", "120")  # three event persisters: new config files, a new check
    lines: list[str] = []
    with pytest.raises(automation.CommandError):
        staging.up(on_output=lines.append, color="never")
    assert "synapse-config-check" in "\n".join(lines) and "BackoffLimitExceeded" in "\n".join(lines)
    assert "signing" in engine.executor.outcomes[-1].output and engine.executor.outcomes[-1].exit_code != 0
    assert generations(engine, "matrix-staging") == before  # no workload was written
    message = refused(engine, engine.stacks["prod"])
    assert message.startswith("stack 'prod': the last update of 'staging' failed")
    set_secret(staging, "signingKey", signing_key())
    assert up(engine, staging).summary.result == "succeeded"
    assert engine.stacks["prod"].preview(color="never").change_summary.get(automation.OpType.UPDATE, 0) == 0


def test_maintenance_window_holds_after_a_failed_update(engine: Engine) -> None:
    prod = engine.stacks["prod"]
    engine.set(prod, "messagesPerSecond", "600")  # more event persisters: every process restarts, main too
    message = refused(engine, prod)
    assert "this change restarts synapse-main" in message and "maintenanceWindow true" in message
    # The bypass: open the window, fail the update after outputs are recorded, close the window.
    engine.set(prod, "maintenanceWindow", "true")
    set_secret(prod, "signingKey", "ed25519 a_engine not-base64!\n")
    with pytest.raises(automation.CommandError):
        prod.up(color="never")
    assert (
        prod.outputs()["podTemplateDigests"].value["main"]
        != kubernetes_state(prod)[("StatefulSet", "synapse-main")]["outputs"]["metadata"]["annotations"][
            DIGEST_ANNOTATION
        ]
    )  # the outputs describe what was planned, not deployed
    set_secret(prod, "signingKey", signing_key())
    engine.set(prod, "maintenanceWindow", "false")
    assert "this change restarts synapse-main" in refused(engine, prod)
    engine.set(prod, "maintenanceWindow", "true")
    found = steps(engine, prod, "up")
    assert "main" in restarted(found)
    engine.set(prod, "maintenanceWindow", "false")
    assert set(prod.preview(expect_no_changes=True, color="never").change_summary) == {"same"}


def _whatif_from_cli(engine: Engine, stack: str, *flags: str) -> dict[str, Any]:
    done = cli("plan", "--stack", stack, "-C", str(engine.project_for(stack)), "--json", *flags)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def test_a_ccu_change_does_what_the_what_if_says(engine: Engine) -> None:
    staging = engine.stacks["staging"]
    predicted = _whatif_from_cli(engine, "staging", "--to-ccu", "1200")
    done = cli("scale", "--stack", "staging", "-C", str(engine.project_for("staging")), "--ccu", "1200",
               "--reason", "engine test")  # fmt: skip
    assert done.returncode == 0, done.stderr
    preview = steps(engine, staging)
    assert restarted(preview) == set(predicted["restarts"])
    applied = steps(engine, staging, "up")
    assert restarted(applied) == set(predicted["restarts"])
    assert not [s for s in applied if s.name == "synapse-main" and s.op in ("replace", "create-replacement")]


def test_more_event_persisters_quiesce_every_process(engine: Engine) -> None:
    """A new persister list re-routes: no Synapse process on the old routing may run beside one on the new.
    The engine deletes every workload (readers first) before the routing marker, then creates them in stage
    order; a watcher of the API sees no moment with pods of both shared configs."""
    staging = engine.stacks["staging"]
    done = cli("scale", "--stack", "staging", "-C", str(engine.project_for("staging")),
               "--pin", "event-persister=4", "--reason", "engine test")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "re-routes instance_map, stream_writers.events: a quiesce" in done.stdout
    with PodWatcher(engine, "matrix-staging") as watcher:
        applied = steps(engine, staging, "up")
    synapse = {
        s.name
        for s in applied
        if s.kind in ("StatefulSet", "Deployment") and s.name not in ("synapse-router", "synapse-pgbouncer")
    }
    assert "synapse-main" in synapse and len(synapse) == 9, synapse
    order = [(s.op, s.name) for s in applied if s.name in synapse or s.name.startswith("synapse-routing")]
    deletes = [i for i, (op, _) in enumerate(order) if op == "delete-replaced"]
    creates = [i for i, (op, _) in enumerate(order) if op == "create-replacement"]
    assert {order[i][1] for i in deletes} >= synapse and {order[i][1] for i in creates} >= synapse, order
    assert max(deletes) < min(creates), order  # every old process gone before any new one starts
    assert engine.get("statefulset", "synapse-event-persister", "matrix-staging")["status"].get("readyReplicas") == 4
    # What the API showed meanwhile: the old routing's pods, none, the new routing's; never two at once.
    mixed = [pods for sample, pods in zip(watcher.samples, watcher.pods, strict=True) if len(sample) > 1]
    assert not mixed, mixed[:2]
    seen = [next(iter(sample)) for sample in watcher.samples if sample]
    assert len(set(seen)) == 2, "the watcher must have seen the old routing and then the new"
    assert any(not sample for sample in watcher.samples), "a quiesce has a moment with no Synapse pod"


def test_a_change_that_reroutes_nothing_replaces_nothing(engine: Engine) -> None:
    """A class's own resources re-route nothing: that class rolls, nothing is deleted, the marker stays."""
    staging = engine.stacks["staging"]
    workers = engine.value(staging, "workers") or {}
    workers["media-repository"] = {"resources": {"requests": {"cpu": "150m"}}}
    engine.set(staging, "workers", workers)
    applied = steps(engine, staging, "up")
    assert not [s for s in applied if s.op in ("delete-replaced", "replace", "create-replacement")], applied
    assert restarted(applied) == {"media-repository"}


def synapse_pods(engine: Engine, namespace: str) -> dict[str, str]:
    """Running Synapse server pods (no Job pods): name -> component."""
    pods = json.loads(engine.kubectl("get", "pods", "-n", namespace, "-o", "json"))["items"]
    return {
        p["metadata"]["name"]: p["metadata"]["labels"].get("app.kubernetes.io/component", "")
        for p in pods
        if p["status"].get("phase") == "Running"
        and "Job" not in {o["kind"] for o in p["metadata"].get("ownerReferences", [])}
        and any(v["name"] == "config-shared" for v in p["spec"].get("volumes", []))
    }


def test_a_synchrotron_change_rolls_without_stopping_anything(engine: Engine) -> None:
    """A reader class's own change re-routes nothing: its pods roll while every other Synapse pod keeps
    running; a watcher of the API never sees a moment without Synapse pods, nor a second routing."""
    staging = engine.stacks["staging"]
    workers = engine.value(staging, "workers") or {}
    workers["synchrotron"] = {"resources": {"requests": {"cpu": "120m"}}}
    engine.set(staging, "workers", workers)
    before = synapse_pods(engine, "matrix-staging")
    with PodWatcher(engine, "matrix-staging") as watcher:
        applied = steps(engine, staging, "up")
    after = synapse_pods(engine, "matrix-staging")
    assert not [s for s in applied if s.op in ("delete-replaced", "replace", "create-replacement")], applied
    assert restarted(applied) == {"synchrotron"}
    assert watcher.samples and all(len(sample) == 1 for sample in watcher.samples), "a moment without Synapse"
    assert len(set().union(*watcher.samples)) == 1, "one routing throughout"
    rolled = {name for name, part in before.items() if part == "synchrotron"}
    assert rolled and not rolled & set(after), "the synchrotron pods were replaced"
    assert {n for n, p in before.items() if p != "synchrotron"} == {n for n, p in after.items() if p != "synchrotron"}


def test_an_hpa_bound_change_rolls_no_synapse_pod(engine: Engine) -> None:
    staging = engine.stacks["staging"]
    engine.set(staging, "hpa", {"targetCpuUtilization": 65, "headroom": 1.5})  # lower HPA maximums
    before = generations(engine, "matrix-staging")
    applied = steps(engine, staging, "up")
    assert {s.kind for s in applied} == {"HorizontalPodAutoscaler"}, applied
    assert generations(engine, "matrix-staging") == before


def configmaps_of(engine: Engine, namespace: str, family: str) -> list[str]:
    """The family's ConfigMaps in the cluster, oldest first (as the program orders them: creation, name)."""
    items = json.loads(engine.kubectl("get", "configmaps", "-n", namespace, "-o", "json"))["items"]
    found = [
        (i["metadata"]["creationTimestamp"], i["metadata"]["name"])
        for i in items
        if i["metadata"]["name"].rsplit("-", 1)[0] == family
    ]
    return [name for _, name in sorted(found)]


def all_configmaps(engine: Engine, namespace: str) -> set[str]:
    items = json.loads(engine.kubectl("get", "configmaps", "-n", namespace, "-o", "json"))["items"]
    return {i["metadata"]["name"] for i in items}


def revision_configmaps(engine: Engine, namespace: str) -> set[str]:
    """Every ConfigMap a revision `kubectl rollout undo` can bring back would mount: every ReplicaSet a
    Deployment keeps, and a StatefulSet's three newest ControllerRevisions (the current one and the two
    before it: older ones are not covered, README)."""
    sets = json.loads(engine.kubectl("get", "rs", "-n", namespace, "-o", "json"))["items"]
    revisions = json.loads(engine.kubectl("get", "controllerrevisions", "-n", namespace, "-o", "json"))["items"]
    newest: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for r in revisions:
        owner = next((o["name"] for o in r["metadata"].get("ownerReferences", [])), "")
        newest.setdefault(owner, []).append((int(r["revision"]), r["data"]["spec"]["template"]))
    templates = [rs["spec"]["template"] for rs in sets]
    templates += [t for found in newest.values() for _, t in sorted(found, key=lambda x: x[0])[-3:]]
    return {v["configMap"]["name"] for t in templates for v in t["spec"].get("volumes", []) if "configMap" in v}


def test_earlier_configs_are_kept_then_collected_and_a_rollback_finds_them(engine: Engine) -> None:
    """Three config changes of one class: each update keeps the two contents before it (pods of an
    earlier revision can start throughout), the program collects older ones itself at the end of an
    update, every revision the cluster keeps finds its ConfigMaps, and going back to the previous stack
    file creates and deletes no ConfigMap at all."""
    staging, namespace, family = engine.stacks["staging"], "matrix-staging", "synapse-generic-worker"
    workers = engine.value(staging, "workers") or {}
    history = configmaps_of(engine, namespace, family)
    assert 1 <= len(history) <= 3, history
    for cp_max in (4, 3, 2):
        workers["generic-worker"] = {"database": {"cpMax": cp_max}}
        engine.set(staging, "workers", workers)
        applied = steps(engine, staging, "up")
        assert not [s for s in applied if s.kind == "ConfigMap" and s.op in ("replace", "delete-replaced")]
        (created,) = [s.name for s in applied if s.kind == "ConfigMap" and s.op == "create"]
        history.append(created)
        deleted = {s.name for s in applied if s.kind == "ConfigMap" and s.op == "delete"}
        assert deleted <= set(history[:-3]), (cp_max, deleted)  # never one of the last three contents
        assert configmaps_of(engine, namespace, family) == history[-3:]
    current = history[-3:]
    missing = revision_configmaps(engine, namespace) - all_configmaps(engine, namespace)
    assert not missing, f"revisions the cluster keeps would not find {missing}"

    # Back to the previous stack file: its ConfigMap is still there, so no ConfigMap changes at all.
    workers["generic-worker"] = {"database": {"cpMax": 3}}
    engine.set(staging, "workers", workers)
    applied = steps(engine, staging, "up")
    assert not [s for s in applied if s.kind == "ConfigMap"], applied
    assert restarted(applied) == {"generic-worker"}
    assert configmaps_of(engine, namespace, family) == current
    # An operator's own `kubectl rollout undo` brings back a revision whose config exists...
    engine.kubectl("rollout", "undo", "deployment/synapse-generic-worker", "-n", namespace)
    template = engine.get("deployment", family, namespace)["spec"]["template"]
    mounted = {v["configMap"]["name"] for v in template["spec"]["volumes"] if "configMap" in v}
    assert current[-1] in mounted and mounted <= all_configmaps(engine, namespace)
    # ...and `up` with a refresh puts the stack file's revision back.
    assert up(engine, staging, refresh=True).summary.result == "succeeded"
    template = engine.get("deployment", family, namespace)["spec"]["template"]
    assert current[1] in {v["configMap"]["name"] for v in template["spec"]["volumes"] if "configMap" in v}


def test_refresh_after_the_hpa_moved_replicas_shows_no_drift(engine: Engine) -> None:
    """The HPA writes spec.replicas through the scale subresource (here `kubectl scale`, as the fake
    cluster has no metrics for a real HPA to act on). A refresh records it and reports every resource
    unchanged (what else controllers wrote, status and defaults, too); the preview after it and the next
    `up` change nothing, and the replicas stay where the HPA put them."""
    staging, namespace, name = engine.stacks["staging"], "matrix-staging", "synapse-synchrotron"
    before = engine.get("deployment", name, namespace)["spec"]["replicas"]
    engine.kubectl("scale", "deployment", name, "-n", namespace, f"--replicas={before + 1}")
    reported: list[tuple[str, str, list[str]]] = []

    def collect(event: automation.EngineEvent) -> None:
        outputs = event.res_outputs_event
        if outputs is not None:
            meta = outputs.metadata
            reported.append((meta.op, meta.urn.rsplit("::", 1)[1], list(meta.diffs or [])))

    refreshed = staging.refresh(on_event=collect, color="never")
    assert set(refreshed.summary.resource_changes or {}) == {"same"}, refreshed.summary.resource_changes
    mine = [r for r in reported if r[1] == name]
    assert mine, reported
    replicas_reported = [r for r in reported if any("replicas" in d for d in r[2])]
    assert not replicas_reported, reported
    recorded = kubernetes_state(staging)[("Deployment", name)]
    assert recorded["outputs"]["spec"]["replicas"] == before + 1, "the refresh recorded what the HPA set"
    before_up = generations(engine, namespace)
    assert steps(engine, staging) == []
    assert steps(engine, staging, "up") == []
    assert generations(engine, namespace) == before_up
    assert engine.get("deployment", name, namespace)["spec"]["replicas"] == before + 1


def test_monitoring_objects_reach_the_api_and_restart_nothing(engine: Engine) -> None:
    """The Prometheus Operator kinds, against the cluster's own minimal CRDs (scripts/cluster)."""
    staging = engine.stacks["staging"]
    before = generations(engine, "matrix-staging")
    engine.set(staging, "monitoring", {"enabled": True})
    assert up(engine, staging).summary.result == "succeeded"
    monitors = json.loads(engine.kubectl("get", "servicemonitors", "-n", "matrix-staging", "-o", "json"))["items"]
    expected = rendered(engine, "staging")
    assert sorted(m["metadata"]["name"] for m in monitors) == sorted(
        name for kind, name in expected if kind == "ServiceMonitor"
    )
    rule = engine.get("prometheusrule", "synapse-scaling", "matrix-staging")
    assert rule["spec"] == expected[("PrometheusRule", "synapse-scaling")]["spec"]
    assert generations(engine, "matrix-staging") == before


def test_crossing_into_the_guides_phase_3_quiesces_every_process(engine: Engine) -> None:
    """5,000 → 6,000 CCU turns on the duty classes beyond the guide (pushers, appservices, background
    work, the user directory, ...): duties leave main, so every process stops before any starts on the new
    routing. Staging's PostgreSQL needs PgBouncer at that size (the plan says so), enabled in the same
    change."""
    staging = engine.stacks["staging"]
    postgres = engine.value(staging, "postgres")
    engine.set(staging, "postgres", {**postgres, "pooler": {"enabled": True, "replicas": 2, "poolSize": 40}})
    engine.set(staging, "ccu", "5000")
    assert up(engine, staging).summary.result == "succeeded"
    done = cli("scale", "--stack", "staging", "-C", str(engine.project_for("staging")), "--ccu", "6000",
               "--reason", "engine test: phase 3")  # fmt: skip
    assert done.returncode == 0, done.stderr
    reroutes = next(line for line in done.stdout.splitlines() if "re-routes" in line)
    assert "pusher_instances" in reroutes and "a quiesce" in reroutes, reroutes
    with PodWatcher(engine, "matrix-staging") as watcher:
        applied = steps(engine, staging, "up")
    created = {s.name for s in applied if s.op == "create" and s.kind in ("StatefulSet", "Deployment")}
    assert "synapse-pusher" in created, created
    mixed = [pods for sample, pods in zip(watcher.samples, watcher.pods, strict=True) if len(sample) > 1]
    assert not mixed, mixed[:2]
    seen = [next(iter(sample)) for sample in watcher.samples if sample]
    assert len(set(seen)) == 2, "the watcher must have seen the old routing and then the new"
    assert any(not sample for sample in watcher.samples), "a quiesce has a moment with no Synapse pod"
    assert set(synapse_pods(engine, "matrix-staging").values()) >= {"pusher", "main", "event-persister"}


def test_promote_for_real(engine: Engine) -> None:
    said: list[str] = []

    def select(name: str) -> StackLike:  # the CLI's own selection, in the test's project folders
        return automation_select(name, program_run, work_dir=engine.project_for(name))

    done = promote(["staging", "prod"], select=select, say=said.append)
    assert [(s.stack, s.action) for s in done][-1] == ("prod", "check")
    assert len(done) == 8


def test_destroy_leaves_nothing_behind(engine: Engine) -> None:
    for name, namespace in (("prod", "matrix"), ("staging", "matrix-staging")):
        stack = engine.stacks[name]
        stack.destroy(color="never")
        assert kubernetes_state(stack) == {}
        left = engine.kubectl("get", "all,configmap,secret,pvc,ingress,networkpolicy,pdb,hpa,job", "-n", namespace,
                              "-o", "name", "--ignore-not-found")  # fmt: skip
        ours = [line for line in left.splitlines() if "synapse" in line]
        namespace_state = json.loads(
            engine.kubectl("get", "namespace", namespace, "-o", "json", "--ignore-not-found") or "{}"
        )
        assert not ours or namespace_state.get("status", {}).get("phase") == "Terminating", ours
