"""The Pulumi program: stack config → settings → plan → components → stack outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
from pulumi.runtime.sync_await import _sync_await

from components.resources import (
    ConfigArgs,
    ConfigCheck,
    MainProcess,
    Monitoring,
    Pooler,
    Router,
    SynapseConfig,
    WorkerClassComponent,
    WorkloadArgs,
)
from synapse_workers.kube.dashboard import dashboard_configmap
from synapse_workers.kube.monitoring import monitoring_manifests
from synapse_workers.kube.rollout import STAGES
from synapse_workers.model.errors import ConfigError
from synapse_workers.model.settings import NAMESPACE, SECRET_FILES, Settings, load_settings
from synapse_workers.model.stack_config import runtime_config
from synapse_workers.ops.guards import gate_refusal, maintenance_refusal, stack_reference_name
from synapse_workers.ops.revision import program_revision, template_digests
from synapse_workers.plan import Plan, build_plan


def load_from_runtime() -> Settings:
    """Read and validate the stack's config; a bad value stops the run before anything registers."""
    values, secret_keys = runtime_config()
    try:
        return load_settings(pulumi.get_stack(), values, secret_keys)
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None


def replica_table(plan: Plan) -> dict[str, dict[str, Any]]:
    """What runs now, per class: the answer `pulumi stack output replicas` gives."""
    return {
        size.spec.name: {
            "kind": size.spec.kind,
            "deployed": size.deployed,
            "replicas": size.replicas,
            "minReplicas": size.min_replicas,
            "maxReplicas": size.max_replicas,
        }
        for size in plan.sizes
    }


def deploy(plan: Plan, secret_values: Mapping[str, pulumi.Output[str]]) -> None:
    config = SynapseConfig("synapse-config", ConfigArgs(plan, secret_values))
    check = ConfigCheck("synapse-config-check", plan, pulumi.ResourceOptions(depends_on=[config]))
    done: dict[int, list[pulumi.Resource]] = {STAGES.index("config"): [config, check]}
    if plan.pooler_manifests:
        # Every Synapse process connects through it, so it is ready before the first of them starts.
        pooler = Pooler("synapse-pgbouncer", plan, pulumi.ResourceOptions(depends_on=[config]))
        done[STAGES.index("config")].append(pooler)
    for stage in range(1, len(STAGES)):
        previous = [r for s in range(stage) for r in done.get(s, [])]
        for workload in plan.workloads:
            if workload.rules.stage != stage:
                continue
            args = WorkloadArgs(workload, depends_on=previous)
            component: pulumi.ComponentResource
            if workload.spec is None:
                component = MainProcess(workload.name, args)
            else:
                component = WorkerClassComponent(workload.name, args)
            done.setdefault(stage, []).append(component)
    Router("synapse-router", plan, pulumi.ResourceOptions(depends_on=[config]))
    monitors = monitoring_manifests(plan)
    if monitors:
        objects = (*monitors, dashboard_configmap(plan))
        Monitoring("synapse-monitoring", objects, pulumi.ResourceOptions(depends_on=[config]))


def read_output(logical_name: str, reference: str, output: str) -> Any:
    """A stack's last exported value, read before anything of ours is registered."""
    full = stack_reference_name(reference, pulumi.get_organization(), pulumi.get_project())
    ref = pulumi.StackReference(logical_name, stack_name=full)
    details = _sync_await(ref.get_output_details(output))
    return details.value if details.value is not None else details.secret_value


def check_guards(settings: Settings, digests: dict[str, str], revision: str) -> None:
    """The prod guards: a maintenance window for restarting main, and staging first."""
    refusals = []
    if settings.require_maintenance_window and not settings.maintenance_window:
        previous = read_output("previous-deployment", pulumi.get_stack(), "podTemplateDigests")
        refusals.append(maintenance_refusal(settings, previous if isinstance(previous, dict) else None, digests))
    if settings.staging_gate is not None:
        gate = read_output("staging-gate", settings.staging_gate, "revision")
        refusals.append(gate_refusal(settings, gate if isinstance(gate, str) else None, revision))
    for refusal in refusals:
        if refusal is not None:
            raise pulumi.RunError(refusal.message)


def run() -> None:
    settings = load_from_runtime()
    try:
        plan = build_plan(settings)
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None
    revision, digests = program_revision(), template_digests(plan)
    check_guards(settings, digests, revision)
    config = pulumi.Config(NAMESPACE)
    secrets = {SECRET_FILES[key]: config.require_secret(key) for key in settings.managed_secrets}
    deploy(plan, secrets)
    pulumi.export("namespace", settings.namespace)
    pulumi.export("phase", plan.phase.name)
    pulumi.export("replicas", replica_table(plan))
    pulumi.export("sharedConfigMap", plan.shared.configmap_name)
    pulumi.export("revision", revision)
    pulumi.export("podTemplateDigests", digests)
