"""The Pulumi components: config (namespace, secret, ConfigMaps, media claim), main, one per worker class.

Thin by design: every manifest comes from the plan; these classes only register it, give every child
`parent=self`, and map the plan's rollout rules onto resource options.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi

from components import registration as kube
from synapse_workers.kube.manifests import Manifest
from synapse_workers.kube.workload import Workload
from synapse_workers.ops.generations import POOLER, ROUTER, SYNAPSE_CONFIG, StoredConfig, config_registrations
from synapse_workers.plan import Plan


class Component(pulumi.ComponentResource):
    """Our components keep the logical name they were given, so what depends on what can be read back
    (the SDK keeps it only in private fields).

    A component registers without the dependencies in its options and hands them to its children
    (`self.after`): it creates nothing itself, and a component that waited for them would hold its
    children back by one more round trip to the engine, in every preview, at every stage of the
    rollout order (the order of what is created is the children's, unchanged)."""

    def __init__(self, token: str, name: str, opts: pulumi.ResourceOptions | None) -> None:
        self.after = _depends_on(opts)
        own = None
        if opts is not None:
            own = copy.copy(opts)
            own.depends_on = None
        super().__init__(token, name, None, own)
        self.logical_name = name
        self.token = token


@dataclass(frozen=True)
class ConfigArgs:
    plan: Plan
    secret_values: Mapping[str, pulumi.Output[str]]
    """Secret file name → value, for the managed Secret; empty with synapse:existingSecret."""
    stored: Sequence[StoredConfig] = ()
    """The content-named ConfigMaps the stack's state holds: earlier contents are kept (ops/generations.py)."""


def register_configs(
    parent: Component, current: Sequence[Manifest], stored: Sequence[StoredConfig], after: list[pulumi.Resource]
) -> list[pulumi.CustomResource]:
    """A component's content-named ConfigMaps, each named after its content, and the earlier contents it
    keeps; one the state holds under an older program's fixed name takes that name as an alias."""
    created = []
    for config in config_registrations(parent.token, current, stored):
        aliases: list[pulumi.Input[str] | pulumi.Alias] | None = (
            [pulumi.Alias(name=config.alias)] if config.alias else None
        )
        opts = pulumi.ResourceOptions(parent=parent, depends_on=list(after), aliases=aliases)
        created.append(kube.create(config.logical, config.manifest, opts))
    return created


class SynapseConfig(Component):
    """Everything the processes read: namespace, secrets, the content-addressed ConfigMaps, media claim."""

    def __init__(self, name: str, args: ConfigArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(SYNAPSE_CONFIG, name, opts)
        plan = args.plan
        after: list[pulumi.Resource] = []
        self.resources: list[pulumi.CustomResource] = []
        self.secret: pulumi.CustomResource | None = None
        for manifest in plan.base_manifests:
            opts_for = pulumi.ResourceOptions(parent=self, depends_on=list(after))
            extra = {}
            if manifest["kind"] == "Secret":
                extra["string_data"] = dict(sorted(args.secret_values.items()))
            resource = kube.create(manifest["metadata"]["name"], manifest, opts_for, **extra)
            if manifest["kind"] == "Namespace":
                after.append(resource)
            if manifest["kind"] == "Secret":
                self.secret = resource
            self.resources.append(resource)
        self.resources.extend(register_configs(self, plan.configmaps(), args.stored, after))
        self.register_outputs({"configmaps": [f.configmap_name for f in plan.config_files]})


def _depends_on(opts: pulumi.ResourceOptions | None) -> list[pulumi.Resource]:
    """A component's dependencies, for its children: options do not pass from a component to them."""
    if opts is None or not isinstance(opts.depends_on, list):
        return []
    return [d for d in opts.depends_on if isinstance(d, pulumi.Resource)]


class ConfigCheck(Component):
    """The check-config Job, then (`schema_after`) the schema Job (kube/schema.py); workloads depend on
    both, and pulumi-kubernetes waits for Jobs to complete."""

    def __init__(
        self,
        name: str,
        plan: Plan,
        opts: pulumi.ResourceOptions | None = None,
        secret_version: pulumi.Input[str] | None = None,
    ) -> None:
        """`secret_version`: the managed Secret's resourceVersion. The Job is named after the config it
        checks, so a secret fixed after a failed check would meet the same failed Job again; a new Secret
        replaces the Job (delete first: the name is the same) and the check runs again."""
        super().__init__("synapse:config:ConfigCheck", name, opts)
        job = plan.config_check()
        self.job_opts = pulumi.ResourceOptions(
            parent=self,
            depends_on=self.after,
            replacement_trigger=secret_version,
            delete_before_replace=True if secret_version is not None else None,
        )
        self.job = kube.create("synapse-config-check", job, self.job_opts)
        self.job_name = str(job["metadata"]["name"])

    def schema_after(self, plan: Plan, routing: pulumi.Resource) -> None:
        """The schema Job, after the check and after the routing marker: in a quiesce the marker is
        created only once every old Synapse pod is gone, so the Job then runs alone and, as any Synapse
        start does, prunes the stream positions of writers the new lists drop, before the writers start
        together (kube/schema.py says why that matters). Registered once the marker exists, as the marker
        itself waits for the check's Job."""
        schema = plan.schema()
        # The check's options, after the check; an upgrade's schema deltas on a large database may outlast
        # the provider's ten minutes.
        schema_opts = pulumi.ResourceOptions.merge(
            self.job_opts,
            pulumi.ResourceOptions(
                depends_on=[self.job, routing],
                custom_timeouts=pulumi.CustomTimeouts(create="60m", update="60m"),
            ),
        )
        self.schema = kube.create("synapse-schema", schema, schema_opts)
        self.register_outputs({"job": self.job_name, "schema": schema["metadata"]["name"]})


def _name_of(metadata: object) -> str:
    """A name from an ObjectMeta output (a dict under mocks and in the SDK's output types alike)."""
    name = metadata["name"] if isinstance(metadata, dict) else getattr(metadata, "name")  # noqa: B009
    return str(name)


class RoutingMarker(Component):
    """The quiesce step (synapse_workers/kube/quiesce.py): a ConfigMap named after the routing, replaced
    delete-first. Every Synapse workload takes `name` into an annotation, so when the routing changes
    Pulumi deletes them all before the marker, then creates the marker and the workloads in stage order."""

    def __init__(self, name: str, plan: Plan, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("synapse:config:RoutingMarker", name, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=self.after, delete_before_replace=True)
        self.marker = kube.create("synapse-routing", plan.routing_marker, child)
        self.name: pulumi.Output[str] = self.marker.metadata.apply(_name_of)  # type: ignore[attr-defined]
        self.register_outputs({"name": self.name})


class _ConfiguredService(Component):
    """A Deployment with its content-addressed ConfigMap (and the earlier contents kept) and the objects
    around it."""

    def __init__(
        self,
        token: str,
        name: str,
        manifests: Sequence[Manifest],
        stored: Sequence[StoredConfig],
        opts: pulumi.ResourceOptions | None,
    ) -> None:
        super().__init__(token, name, opts)
        after = self.after
        configs = [m for m in manifests if m["kind"] == "ConfigMap"]
        self.resources = register_configs(self, configs, stored, after)
        for manifest in manifests:
            if manifest["kind"] != "ConfigMap":
                child = pulumi.ResourceOptions(parent=self, depends_on=after)
                self.resources.append(kube.create(manifest["metadata"]["name"], manifest, child))
        self.register_outputs({})


class Router(_ConfiguredService):
    """HAProxy in front of every Synapse process, with its config, Service and Ingress."""

    def __init__(
        self, name: str, plan: Plan, stored: Sequence[StoredConfig], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(ROUTER, name, plan.router_manifests, stored, opts)


class Pooler(_ConfiguredService):
    """PgBouncer between Synapse and PostgreSQL (synapse:postgres.pooler.enabled)."""

    def __init__(
        self, name: str, plan: Plan, stored: Sequence[StoredConfig], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(POOLER, name, plan.pooler_manifests, stored, opts)


class Monitoring(Component):
    """ServiceMonitors and the PrometheusRule; only with synapse:monitoring.enabled (they need the CRDs)."""

    def __init__(self, name: str, manifests: Sequence[Manifest], opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("synapse:monitoring:Monitoring", name, opts)
        child = pulumi.ResourceOptions(parent=self, depends_on=self.after)
        self.resources = [kube.create(m["metadata"]["name"], m, child) for m in manifests]
        self.register_outputs({"objects": [m["metadata"]["name"] for m in manifests]})


@dataclass(frozen=True)
class WorkloadArgs:
    workload: Workload
    depends_on: Sequence[pulumi.Resource]
    annotations: Mapping[str, pulumi.Input[str]]
    """Added to the workload object's own metadata (never its pod template: they restart nothing)."""


class _SynapseWorkload(Component):
    """A workload (StatefulSet or Deployment), its Service and, for autoscaled classes, its HPA."""

    TYPE = ""

    def __init__(self, name: str, args: WorkloadArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(self.TYPE, name, opts)
        workload = args.workload
        rules = workload.rules
        after = list(args.depends_on)
        workload_opts = pulumi.ResourceOptions(
            parent=self,
            depends_on=after,
            ignore_changes=["spec.replicas"] if rules.ignore_replicas else None,
            replacement_trigger=rules.replacement_trigger,
            delete_before_replace=True if rules.replacement_trigger is not None else None,
        )
        first, *rest = workload.manifests
        metadata = first["metadata"]
        annotations = {**metadata.get("annotations", {}), **args.annotations}
        first = {**first, "metadata": {**metadata, "annotations": dict(sorted(annotations.items()))}}
        self.workload = kube.create(first["metadata"]["name"], first, workload_opts)
        self.children: list[pulumi.CustomResource] = [self.workload]
        for manifest in rest:
            child_opts = pulumi.ResourceOptions(parent=self, depends_on=after)
            self.children.append(kube.create(manifest["metadata"]["name"], manifest, child_opts))
        self.register_outputs({"name": workload.name, "kind": first["kind"]})


class MainProcess(_SynapseWorkload):
    TYPE = "synapse:main:MainProcess"


class WorkerClassComponent(_SynapseWorkload):
    TYPE = "synapse:workers:WorkerClass"
