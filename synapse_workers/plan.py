"""The whole plan for a stack: sizes, topology, config files and manifests, with no Pulumi in sight.

`plan` prints it, the Pulumi components turn it into resources, and tests read it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

from synapse_workers.kube import manifests as k8s
from synapse_workers.kube.budget import Budget, check_budget, compute_budget
from synapse_workers.kube.config_check import config_check_job
from synapse_workers.kube.haproxy import haproxy_config
from synapse_workers.kube.network_policy import network_policies
from synapse_workers.kube.pooler import pooler_manifests
from synapse_workers.kube.quiesce import routing_marker
from synapse_workers.kube.rollout import rules_for
from synapse_workers.kube.router import pods_services, router_manifests
from synapse_workers.kube.schema import schema_job
from synapse_workers.kube.workload import Workload
from synapse_workers.model.settings import Settings
from synapse_workers.model.sizing import ClassSize, Load, Phase, phase_of, size_all
from synapse_workers.model.worker_classes import MAIN
from synapse_workers.synapse.config_files import (
    ConfigFile,
    class_config,
    main_config,
    shared_config,
    to_yaml,
)
from synapse_workers.synapse.topology import Topology, build_topology


@dataclass(frozen=True)
class Plan:
    settings: Settings
    load: Load
    phase: Phase
    sizes: tuple[ClassSize, ...]
    topology: Topology
    shared: ConfigFile
    workloads: tuple[Workload, ...]
    base_manifests: tuple[k8s.Manifest, ...]
    """Namespace, Secret shell and media claim, as the settings ask."""
    router_manifests: tuple[k8s.Manifest, ...]
    """HAProxy with this plan's routing table, its Service and Ingress."""
    pooler_manifests: tuple[k8s.Manifest, ...]
    """PgBouncer and its objects; empty unless synapse:postgres.pooler.enabled."""
    routing_marker: k8s.Manifest
    """The quiesce step's marker (kube/quiesce.py): named after the routing every process reads."""
    budget: Budget

    def workload(self, part: str) -> Workload:
        return next(w for w in self.workloads if w.part == part)

    @property
    def config_files(self) -> tuple[ConfigFile, ...]:
        return (self.shared, *(w.config for w in self.workloads))

    def configmaps(self) -> tuple[k8s.Manifest, ...]:
        return tuple(k8s.configmap(self.settings, f) for f in self.config_files)

    def config_check(self) -> k8s.Manifest:
        """The Job every workload waits for: real Synapse loading every part's new config."""
        return config_check_job(self.settings, self.shared, [w.config for w in self.workloads])

    def schema(self) -> k8s.Manifest:
        """The Job after the check and before the first stage: the schema brought up to the image's Synapse."""
        return schema_job(self.settings, self.shared, self.workload(MAIN.name).config)

    def manifests(self) -> tuple[k8s.Manifest, ...]:
        return (
            self.base_manifests
            + self.configmaps()
            + (self.config_check(), self.schema(), self.routing_marker)
            + self.pooler_manifests
            + tuple(m for w in self.workloads for m in w.manifests)
            + self.router_manifests
        )

    def departures(self) -> tuple[str, ...]:
        return (
            *(f"{size.spec.name}: {note}" for size in self.sizes for note in size.departures),
            "all processes: a change to instance_map, stream_writers, federation_sender_instances or the "
            "duties handed off main (pusher_instances, run_background_tasks_on, …) restarts every Synapse "
            "process, not only main as the guide's step 3 says; each process routes writes and duties by "
            "those lists (SYNAPSE-FACTS, synapse/config/workers.py)",
        )


def _main_workload(settings: Settings, shared: ConfigFile) -> Workload:
    own = ConfigFile(MAIN.name, to_yaml(main_config(settings)))
    resources = settings.resources(MAIN)
    template = k8s.pod_template(settings, MAIN.name, shared, own, resources, replication=True, media=False)
    return Workload(
        part=MAIN.name,
        spec=MAIN,
        size=None,
        config=own,
        rules=rules_for(MAIN, (MAIN.pod,)),
        manifests=(
            k8s.statefulset(settings, MAIN.workload_name, MAIN.name, 1, template),
            k8s.service(settings, MAIN.workload_name, MAIN.name, replication=True, headless=True),
        ),
        shared=shared,
        processes=((f"{MAIN.pod}.yaml", None),),
    )


def _class_workload(settings: Settings, shared: ConfigFile, size: ClassSize, topology: Topology) -> Workload:
    spec = size.spec
    own = ConfigFile(spec.name, to_yaml(class_config(settings, spec)))
    template = k8s.pod_template(
        settings,
        spec.name,
        shared,
        own,
        settings.resources(spec),
        replication=spec.needs_instance_map,
        media=spec.serves_media,
    )
    name = spec.workload_name
    if not spec.exactly_one:
        template["spec"]["topologySpreadConstraints"] = [k8s.spread_over_nodes(settings, spec.name)]
    if spec.kind == "Deployment":
        assert size.min_replicas is not None and size.max_replicas is not None
        k8s.drain_before_stop(template, settings.router.drain_seconds)
        objects: tuple[k8s.Manifest, ...] = (
            k8s.deployment(settings, name, spec.name, size.replicas, template),
            k8s.service(settings, name, spec.name, replication=False, headless=False),
            k8s.hpa(settings, name, spec.name, size.min_replicas, size.max_replicas),
            *pods_services(settings, [spec.name]),
        )
        processes: tuple[tuple[str, str | None], ...] = ((f"{name}.yaml", f"{name}-sample"),)
    else:
        objects = (
            k8s.statefulset(settings, name, spec.name, size.replicas, template),
            k8s.service(settings, name, spec.name, replication=spec.needs_instance_map, headless=True),
        )
        processes = tuple((f"{pod}.yaml", pod) for pod in topology.members[spec.name])
    if size.replicas >= 2:
        objects += (k8s.disruption_budget(settings, name, spec.name),)
    return Workload(
        part=spec.name,
        spec=spec,
        size=size,
        config=own,
        rules=rules_for(spec, topology.members.get(spec.name, ())),
        manifests=objects,
        shared=shared,
        processes=processes,
    )


def build_plan(settings: Settings, enforce_budget: bool = True) -> Plan:
    """The plan for the settings; refused when it does not fit its budget, unless the caller shows the
    plan first and refuses after (`plan`, `recommend`: the operator sees what did not fit)."""
    load, sizes = size_all(settings)
    topology = build_topology(sizes, settings.namespace)
    shared = ConfigFile("shared", to_yaml(shared_config(settings, topology)))
    workloads = (
        _main_workload(settings, shared),
        *(_class_workload(settings, shared, size, topology) for size in sizes if size.deployed),
    )
    base: list[k8s.Manifest] = []
    if settings.create_namespace:
        base.append(k8s.namespace(settings))
    if settings.existing_secret is None:
        base.append(k8s.secret_shell(settings))
    if settings.media.create_claim:
        base.append(k8s.media_claim(settings))
    base.extend(network_policies(settings))
    # The router's config reads only settings, sizes and topology (routing.Routed), not the whole plan.
    router = router_manifests(settings, haproxy_config(_Routed(settings, sizes, topology)))
    pooler = pooler_manifests(settings)
    budget = compute_budget(settings, workloads, router, pooler)
    if enforce_budget:
        check_budget(settings, budget)
    return Plan(
        settings=settings,
        load=load,
        phase=phase_of(settings.ccu),
        sizes=sizes,
        topology=topology,
        shared=shared,
        workloads=workloads,
        base_manifests=tuple(base),
        router_manifests=router,
        pooler_manifests=pooler,
        routing_marker=routing_marker(settings, topology),
        budget=budget,
    )


@dataclass(frozen=True)
class _Routed:
    settings: Settings
    sizes: tuple[ClassSize, ...]
    topology: Topology
