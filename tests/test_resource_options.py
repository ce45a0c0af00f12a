"""Rollout rules reach the resource options. Mocks never see options, so creation is intercepted here."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest
from pulumi_kubernetes.batch.v1 import Job
from pulumi_kubernetes.core.v1 import ConfigMap

from components import registration as kube
from components.provider import PROVIDER_NAME
from components.resources import Component
from synapse_workers.cli.mock_runtime import RecordingMocks, run_program
from synapse_workers.kube.quiesce import MARKER_PREFIX, ROUTING_ANNOTATION
from tests.conftest import base_values

Registered = dict[tuple[str, str], tuple[dict[str, Any], pulumi.ResourceOptions]]


def registrations(values: dict[str, str]) -> Registered:
    """Every Kubernetes resource the program creates for `values`, by (kind, name): its manifest and the
    options it was given."""
    seen: Registered = {}
    original = kube.create

    def recording(
        logical_name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions, **extra: Any
    ) -> pulumi.CustomResource:
        seen[(manifest["kind"], manifest["metadata"]["name"])] = (manifest, opts)
        return original(logical_name, manifest, opts, **extra)

    kube.create = recording
    try:
        run_program("prod", values)
    finally:
        kube.create = original
    return seen


@pytest.fixture(scope="module")
def options() -> dict[tuple[str, str], pulumi.ResourceOptions]:
    """Every Kubernetes resource the program creates, by (kind, name), with the options it was given."""
    found = registrations(base_values(ccu="5000", federation={"enabled": True, "servers": 120}))
    return {key: opts for key, (_, opts) in found.items()}


def _depends_on_names(opts: pulumi.ResourceOptions) -> set[str]:
    deps = opts.depends_on
    assert isinstance(deps, list)
    assert all(isinstance(d, Component) for d in deps), deps
    return {d.logical_name for d in deps if isinstance(d, Component)}


def test_hash_sharded_sets_are_replaced_delete_first_on_membership(options: dict[Any, pulumi.ResourceOptions]) -> None:
    persisters = options[("StatefulSet", "synapse-event-persister")]
    assert persisters.replacement_trigger == ",".join(f"synapse-event-persister-{i}" for i in range(4))
    assert persisters.delete_before_replace is True
    senders = options[("StatefulSet", "synapse-federation-sender")]
    assert (
        senders.replacement_trigger
        == "synapse-federation-sender-0,synapse-federation-sender-1,synapse-federation-sender-2"
    )
    assert senders.delete_before_replace is True


def test_other_workloads_are_never_replaced(options: dict[Any, pulumi.ResourceOptions]) -> None:
    for name in ("synapse-main", "synapse-receipts-writer", "synapse-typing-writer", "synapse-media-repository"):
        opts = options[("StatefulSet", name)]
        assert opts.replacement_trigger is None, name
        assert not opts.delete_before_replace, name


def test_hpa_owns_deployment_replicas(options: dict[Any, pulumi.ResourceOptions]) -> None:
    for name in ("synapse-synchrotron", "synapse-generic-worker"):
        assert options[("Deployment", name)].ignore_changes == ["spec.replicas"]
    assert not options[("StatefulSet", "synapse-event-persister")].ignore_changes


CONFIG = {"synapse-config", "synapse-config-check", "synapse-routing"}
"""The config stage: the config, its check, and the routing marker (the quiesce step)."""
"""Every workload waits for the new config and for real Synapse's verdict on it."""


def test_rollout_order_config_then_writers_then_main_then_readers(options: dict[Any, pulumi.ResourceOptions]) -> None:
    writers = {
        "synapse-event-persister",
        "synapse-federation-sender",
        "synapse-typing-writer",
        "synapse-todevice-writer",
        "synapse-receipts-writer",
        "synapse-presence-writer",
    }
    for name in writers:
        assert _depends_on_names(options[("StatefulSet", name)]) == CONFIG, name
    assert _depends_on_names(options[("StatefulSet", "synapse-main")]) == CONFIG | writers
    for kind, name in (
        ("Deployment", "synapse-synchrotron"),
        ("Deployment", "synapse-generic-worker"),
        ("StatefulSet", "synapse-media-repository"),
    ):
        assert _depends_on_names(options[(kind, name)]) == CONFIG | {"synapse-main"} | writers, name


def _job(options: dict[Any, pulumi.ResourceOptions], prefix: str) -> pulumi.ResourceOptions:
    (found,) = [opts for (kind, name), opts in options.items() if kind == "Job" and name.startswith(prefix)]
    return found


def test_config_check_waits_for_the_config(options: dict[Any, pulumi.ResourceOptions]) -> None:
    assert _depends_on_names(_job(options, "synapse-config-check-")) == {"synapse-config"}


def test_the_schema_job_runs_after_the_check_and_the_routing_marker_and_before_every_stage(
    options: dict[Any, pulumi.ResourceOptions],
) -> None:
    """A config Synapse refuses never reaches the database; the Job waits for the routing marker (in a
    quiesce, created only once every old Synapse pod is gone, so the Job runs alone); the first stage
    (the stream writers, which refuse an unprepared schema) waits for the schema, as every stage depends
    on the check's component and a component dependency waits for all of its children."""
    schema = _job(options, "synapse-schema-")
    deps = schema.depends_on
    assert isinstance(deps, list)
    resources = [d for d in deps if isinstance(d, pulumi.CustomResource)]
    # the check's Job (the schema's only sibling) and the marker (the one ConfigMap passed as a dependency)
    assert len(resources) == 2 and isinstance(resources[0], Job) and isinstance(resources[1], ConfigMap)
    components = {d.logical_name for d in deps if isinstance(d, Component)}
    assert components == {"synapse-config"}
    assert isinstance(schema.parent, Component) and schema.parent.logical_name == "synapse-config-check"
    assert _job(options, "synapse-config-check-").parent is schema.parent
    assert schema.custom_timeouts is not None and schema.custom_timeouts.create == "60m"
    assert "synapse-config-check" in _depends_on_names(options[("StatefulSet", "synapse-event-persister")])


def test_monitoring_objects_wait_for_the_config_component() -> None:
    """A component's options do not reach its children: each ServiceMonitor must carry the dependency
    itself, or it can be created before the namespace it lives in."""
    seen = {
        key: opts for key, (_, opts) in registrations(base_values(ccu="5000", monitoring={"enabled": True})).items()
    }
    monitored = [opts for (kind, _), opts in seen.items() if kind in ("ServiceMonitor", "PrometheusRule")]
    assert len(monitored) == 10  # main and the eight guide classes without federation, and the rule
    for opts in monitored:
        assert _depends_on_names(opts) == {"synapse-config"}


def test_the_router_waits_for_every_synapse_workload(options: dict[Any, pulumi.ResourceOptions]) -> None:
    """A new routing table may name a class that becomes ready only in this update: the router's objects
    are applied after every workload (each waits for its pods), never before."""
    workloads = {
        name for (kind, name) in options if kind in ("StatefulSet", "Deployment") and name.startswith("synapse-")
    } - {"synapse-router", "synapse-pgbouncer"}
    assert {"synapse-main", "synapse-event-persister", "synapse-synchrotron"} <= workloads
    for kind in ("Deployment", "Service", "Ingress"):
        assert _depends_on_names(options[(kind, "synapse-router")]) == {"synapse-config", *workloads}


def test_every_synapse_workload_names_the_routing_marker_which_is_replaced_delete_first() -> None:
    """The quiesce step's wiring (kube/quiesce.py): the marker waits for the config check (a config
    Synapse refuses stops nothing), is replaced delete-first, and every Synapse workload object takes its
    name from the marker resource, so Pulumi deletes them all before it."""
    seen = registrations(base_values(ccu="5000"))
    (marker_key,) = [k for k in seen if k[0] == "ConfigMap" and k[1].startswith(MARKER_PREFIX)]
    marker, marker_opts = seen[marker_key]
    assert marker_opts.delete_before_replace is True
    deps = marker_opts.depends_on
    assert isinstance(deps, list) and len(deps) == 2
    assert isinstance(deps[0], Component) and deps[0].logical_name == "synapse-config"
    assert isinstance(deps[1], Job)  # the check's Job itself: its component also holds the schema Job, after this
    assert "event-persister" in marker["data"]["routing.yaml"]
    workloads = {
        name: manifest
        for (kind, name), (manifest, _) in seen.items()
        if kind in ("StatefulSet", "Deployment") and name not in ("synapse-router", "synapse-pgbouncer")
    }
    assert len(workloads) == 9  # main and the guide's eight classes without federation at 5,000 CCU
    for name, manifest in workloads.items():
        annotation = manifest["metadata"]["annotations"][ROUTING_ANNOTATION]
        assert isinstance(annotation, pulumi.Output), name  # a property dependency, not a copied string
        assert manifest["metadata"]["annotations"]["pulumi.com/deletionPropagationPolicy"] == "foreground"
        assert _depends_on_names(seen[(manifest["kind"], name)][1]) >= {"synapse-routing"}


class ProviderMocks(RecordingMocks):
    """Also keeps which provider each resource was registered with (the mock engine passes the reference)."""

    def __init__(self) -> None:
        super().__init__()
        self.providers: dict[tuple[str, str], str] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.providers[(args.typ, args.name)] = args.provider or ""
        return super().new_resource(args)


def test_every_object_is_registered_with_the_one_explicit_provider_that_makes_secrets_mutable() -> None:
    mocks = ProviderMocks()
    run_program("prod", base_values(ccu="5000", monitoring={"enabled": True}), mocks=mocks)
    (provider,) = [r for r in mocks.registered if r.type == "pulumi:providers:kubernetes"]
    assert provider.name == PROVIDER_NAME
    assert provider.inputs.get("enableSecretMutable") in (True, "true")
    assert "enableConfigMapMutable" not in provider.inputs  # content-named ConfigMaps: replaced, never edited
    objects = {key: ref for key, ref in mocks.providers.items() if key[0].startswith("kubernetes:")}
    assert len(objects) > 50
    # A provider reference is "<provider URN>::<id>"; the URN ends with the provider's name.
    names = {ref.rsplit("::", 1)[0].rsplit("::", 1)[-1] for ref in objects.values()}
    assert names == {PROVIDER_NAME}, set(objects.values())
