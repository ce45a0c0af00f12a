"""Rollback-safe config (ops/generations.py): which content-named ConfigMaps an update registers, read
from an exported state, and how the program registers them (aliases for a stack deployed before).

The engine tier proves it against a real API server (tests/engine/test_engine.py, the kept generations
and the rollback); here the rules, on hand-made states.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
import yaml

from components import registration as kube
from components.deployed import FixedStates
from synapse_workers.cli.mock_runtime import run_program
from synapse_workers.cli.render import render_stack
from synapse_workers.kube.manifests import KEPT_GENERATIONS, REVISION_HISTORY
from synapse_workers.ops.generations import (
    POOLER,
    ROUTER,
    SYNAPSE_CONFIG,
    StoredConfig,
    config_registrations,
    stored_configs,
)
from synapse_workers.ops.guards import Deployed, deployed_from_state
from tests.mocks import stack_values

PREFIX = "urn:pulumi:staging::synapse-workers::"
ROUTING_MARKER = "synapse:config:RoutingMarker"


def state_entry(parent: str, logical: str, name: str, created: str, **extra: Any) -> dict[str, Any]:
    inputs = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "immutable": True,
        "metadata": {"name": name, "namespace": "matrix-staging"},
        "data": {"class.yaml": f"content of {name}\n"},
    }
    meta = {"name": name, "namespace": "matrix-staging"}
    outputs = {**inputs, "metadata": {**meta, "creationTimestamp": created, "uid": "u-" + name}}
    return {
        "urn": f"{PREFIX}{parent}$kubernetes:core/v1:ConfigMap::{logical}",
        "type": "kubernetes:core/v1:ConfigMap",
        "inputs": inputs,
        "outputs": outputs,
        **extra,
    }


def manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "immutable": True,
        "metadata": {"name": name, "namespace": "matrix-staging"},
        "data": {"class.yaml": f"content of {name}\n"},
    }


def stored(name: str, created: str, logical: str | None = None, parent: str = SYNAPSE_CONFIG) -> StoredConfig:
    return StoredConfig(parent, logical or name, name, created, manifest(name))


def test_the_state_reader_takes_only_the_kept_kinds_of_configmap() -> None:
    deployment = {
        "resources": [
            state_entry(SYNAPSE_CONFIG, "synapse-shared-a1", "synapse-shared-a1", "2026-01-01T00:00:01Z"),
            state_entry(ROUTER, "synapse-router-config", "synapse-router-b2", "2026-01-01T00:00:02Z"),
            state_entry(POOLER, "synapse-pgbouncer-c3", "synapse-pgbouncer-c3", "2026-01-01T00:00:03Z"),
            # the routing marker and the dashboard are not mounted by pods: never kept
            state_entry(ROUTING_MARKER, "synapse-routing", "synapse-routing-d4", "2026-01-01T00:00:04Z"),
            state_entry("synapse:monitoring:Monitoring", "dash", "synapse-dashboard", "2026-01-01T00:00:05Z"),
            # being deleted by a failed update, and one that is not immutable (not content-named)
            state_entry(SYNAPSE_CONFIG, "synapse-main-e5", "synapse-main-e5", "2026-01-01T00:00:06Z", delete=True),
            {
                **state_entry(SYNAPSE_CONFIG, "x", "synapse-x-f6", "2026-01-01T00:00:07Z"),
                "inputs": {"immutable": False},
            },
        ]
    }
    found = stored_configs(deployment, frozenset({SYNAPSE_CONFIG, ROUTER, POOLER}))
    assert [(s.parent, s.logical, s.name, s.created) for s in found] == [
        (SYNAPSE_CONFIG, "synapse-shared-a1", "synapse-shared-a1", "2026-01-01T00:00:01Z"),
        (POOLER, "synapse-pgbouncer-c3", "synapse-pgbouncer-c3", "2026-01-01T00:00:03Z"),
        (ROUTER, "synapse-router-config", "synapse-router-b2", "2026-01-01T00:00:02Z"),
    ]
    assert found[0].inputs["data"] == {"class.yaml": "content of synapse-shared-a1\n"}
    assert found == deployed_from_state(deployment, None).configs


def test_a_first_deploy_registers_the_current_configs_under_their_own_names() -> None:
    done = config_registrations(SYNAPSE_CONFIG, [manifest("synapse-shared-a1"), manifest("synapse-main-b1")], [])
    assert [(r.logical, r.alias) for r in done] == [("synapse-shared-a1", None), ("synapse-main-b1", None)]


def test_the_newest_earlier_contents_are_kept_and_older_ones_dropped() -> None:
    history = [
        stored("synapse-main-g1", "2026-01-01T00:00:01Z"),
        stored("synapse-main-g2", "2026-01-02T00:00:00Z"),
        stored("synapse-main-g3", "2026-01-03T00:00:00Z"),
        stored("synapse-shared-s1", "2026-01-01T00:00:00Z"),
    ]
    done = config_registrations(SYNAPSE_CONFIG, [manifest("synapse-main-g4"), manifest("synapse-shared-s1")], history)
    names = [r.logical for r in done]
    assert names[:2] == ["synapse-main-g4", "synapse-shared-s1"]  # current first
    kept = names[2:]
    assert kept == ["synapse-main-g3", "synapse-main-g2"]  # KEPT_GENERATIONS - 1 earlier, newest first
    assert KEPT_GENERATIONS == 3 and "synapse-main-g1" not in names
    assert all(r.manifest == manifest(r.logical) for r in done)  # re-registered unchanged


def test_a_rollback_to_a_kept_content_changes_nothing_and_keeps_the_newer_ones() -> None:
    history = [
        stored("synapse-main-g2", "2026-01-02T00:00:00Z"),
        stored("synapse-main-g3", "2026-01-03T00:00:00Z"),
        stored("synapse-main-g4", "2026-01-04T00:00:00Z"),
    ]
    done = config_registrations(SYNAPSE_CONFIG, [manifest("synapse-main-g3")], history)
    assert [r.logical for r in done] == ["synapse-main-g3", "synapse-main-g4", "synapse-main-g2"]


def test_a_config_no_longer_current_keeps_its_recent_contents() -> None:
    """A class turned off: the stack file that had it finds its configs on a rollback."""
    history = [stored(f"synapse-pusher-p{i}", f"2026-01-0{i}T00:00:00Z") for i in range(1, 5)]
    done = config_registrations(SYNAPSE_CONFIG, [manifest("synapse-main-m1")], history)
    assert [r.logical for r in done] == ["synapse-main-m1", "synapse-pusher-p4", "synapse-pusher-p3"]


def test_a_stack_deployed_before_moves_its_configs_by_alias() -> None:
    """An older program kept each config under a fixed name; whichever resource now holds that object
    takes the name as an alias, so nothing is replaced (the current one, or the kept one when the same
    update also changes the content)."""
    legacy = [stored("synapse-main-m1", "2026-01-01T00:00:00Z", logical="synapse-main-config")]
    same = config_registrations(SYNAPSE_CONFIG, [manifest("synapse-main-m1")], legacy)
    assert [(r.logical, r.alias) for r in same] == [("synapse-main-m1", "synapse-main-config")]
    changed = config_registrations(SYNAPSE_CONFIG, [manifest("synapse-main-m2")], legacy)
    assert [(r.logical, r.alias) for r in changed] == [
        ("synapse-main-m2", None),
        ("synapse-main-m1", "synapse-main-config"),
    ]


def test_only_the_components_own_configs_are_kept_there() -> None:
    history = [stored("synapse-router-r1", "2026-01-01T00:00:00Z", parent=ROUTER)]
    assert [r.logical for r in config_registrations(SYNAPSE_CONFIG, [manifest("synapse-main-m1")], history)] == [
        "synapse-main-m1"
    ]
    router = config_registrations(ROUTER, [manifest("synapse-router-r2")], history)
    assert [r.logical for r in router] == ["synapse-router-r2", "synapse-router-r1"]


def test_the_program_registers_kept_configs_with_their_stored_inputs_and_aliases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[tuple[str, str], tuple[str, dict[str, Any], pulumi.ResourceOptions]] = {}
    original = kube.create

    def recording(logical: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions, **extra: Any) -> Any:
        seen[(manifest["kind"], manifest["metadata"]["name"])] = (logical, manifest, opts)
        return original(logical, manifest, opts, **extra)

    monkeypatch.setattr(kube, "create", recording)
    values, secret_keys = stack_values("staging")
    old = stored("synapse-main-0ld", "2026-01-01T00:00:00Z", logical="synapse-main-config")
    router = stored("synapse-router-0ld", "2026-01-01T00:00:00Z", parent=ROUTER)
    run_program("staging", values, secret_keys, states=FixedStates({"staging": Deployed(configs=(old, router))}))
    logical, inputs, opts = seen[("ConfigMap", "synapse-main-0ld")]
    assert logical == "synapse-main-0ld" and inputs == old.inputs
    aliases = opts.aliases or []
    assert [a.name for a in aliases if isinstance(a, pulumi.Alias)] == ["synapse-main-config"]
    assert seen[("ConfigMap", "synapse-router-0ld")][0] == "synapse-router-0ld"
    current = [
        (n, entry[0]) for (kind, n), entry in seen.items() if kind == "ConfigMap" and n.startswith("synapse-main-")
    ]
    assert len(current) == 2 and all(n == logical for n, logical in current)  # named after their content


def test_every_deployment_keeps_as_many_old_revisions_as_earlier_configs_are_kept() -> None:
    """Deployments only: pulumi-kubernetes replaces a StatefulSet whose revisionHistoryLimit changes."""
    values, secret_keys = stack_values("prod")
    rendered = render_stack("prod", values, secret_keys)
    workloads = [
        o
        for o in (yaml.safe_load(text) for text in rendered.manifests.values())
        if o["kind"] in ("Deployment", "StatefulSet")
    ]
    deployments = [o for o in workloads if o["kind"] == "Deployment"]
    assert len(deployments) >= 4 and len(workloads) > len(deployments)
    assert {o["spec"]["revisionHistoryLimit"] for o in deployments} == {REVISION_HISTORY}
    assert not [o for o in workloads if o["kind"] == "StatefulSet" and "revisionHistoryLimit" in o["spec"]]
    assert REVISION_HISTORY == KEPT_GENERATIONS - 1
