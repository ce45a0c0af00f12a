"""The Pulumi program: stack config → settings → plan → guards (on what is deployed) → components → outputs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pulumi

from components.deployed import CliStates, DeployedStates
from components.provider import kubernetes_provider
from components.resources import (
    ConfigArgs,
    ConfigCheck,
    MainProcess,
    Monitoring,
    Pooler,
    Router,
    RoutingMarker,
    SynapseConfig,
    WorkerClassComponent,
    WorkloadArgs,
)
from synapse_workers.kube.dashboard import dashboard_configmap
from synapse_workers.kube.monitoring import monitoring_manifests
from synapse_workers.kube.quiesce import DELETION_ANNOTATIONS, ROUTING_ANNOTATION
from synapse_workers.kube.rollout import STAGES
from synapse_workers.model.errors import ConfigError
from synapse_workers.model.settings import NAMESPACE, SECRET_FILES, Settings, load_settings
from synapse_workers.model.stack_config import find_project, refuse_plain_secrets, runtime_config
from synapse_workers.model.worker_classes import WorkerClass
from synapse_workers.ops.gates import refuse_gate_cycle
from synapse_workers.ops.generations import StoredConfig
from synapse_workers.ops.guards import (
    DIGEST_ANNOTATION,
    REVISION_ANNOTATION,
    Deployed,
    GuardError,
    gate_refusal,
    maintenance_refusal,
    stack_reference_name,
)
from synapse_workers.ops.revision import program_revision, template_digests
from synapse_workers.plan import Plan, build_plan


def load_from_runtime() -> Settings:
    """Read and validate the stack's config; a bad value stops the run before anything registers."""
    values, secret_keys = runtime_config()
    try:
        refuse_plain_secrets(pulumi.get_stack(), values, secret_keys)
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


def deploy(
    plan: Plan,
    secret_values: Mapping[str, pulumi.Output[str]],
    revision: str,
    digests: Mapping[str, str],
    stored: Sequence[StoredConfig] = (),
) -> None:
    """`stored`: the content-named ConfigMaps the stack's state holds, whose recent contents are kept."""
    provider = kubernetes_provider()

    def after(*resources: pulumi.Resource) -> pulumi.ResourceOptions:
        """Options for a top-level component: its dependencies, and the one provider its children inherit."""
        return pulumi.ResourceOptions(depends_on=list(resources), providers=[provider])

    config = SynapseConfig("synapse-config", ConfigArgs(plan, secret_values, stored), after())
    secret_version = None if config.secret is None else config.secret.metadata.resource_version  # type: ignore[attr-defined]
    check = ConfigCheck("synapse-config-check", plan, after(config), secret_version=secret_version)
    # After the check: a config Synapse refuses must stop the update before the quiesce stops anything.
    marker = RoutingMarker("synapse-routing", plan, after(config, check.job))
    check.schema_after(plan, marker.marker)
    done: dict[int, list[pulumi.Resource]] = {STAGES.index("config"): [config, check, marker]}
    if plan.pooler_manifests:
        # Every Synapse process connects through it, so it is ready before the first of them starts.
        pooler = Pooler("synapse-pgbouncer", plan, stored, after(config))
        done[STAGES.index("config")].append(pooler)
    for stage in range(1, len(STAGES)):
        previous = [r for s in range(stage) for r in done.get(s, [])]
        for workload in plan.workloads:
            if workload.rules.stage != stage:
                continue
            # What the guards read back from the state: the template this object runs, and who applied it.
            # ...and the routing marker's name, which makes every workload a dependent the quiesce deletes.
            marks: dict[str, pulumi.Input[str]] = {
                **DELETION_ANNOTATIONS,
                DIGEST_ANNOTATION: digests[workload.part],
                REVISION_ANNOTATION: revision,
                ROUTING_ANNOTATION: marker.name,
            }
            args = WorkloadArgs(workload, depends_on=previous, annotations=marks)
            component: pulumi.ComponentResource
            if isinstance(workload.spec, WorkerClass):
                component = WorkerClassComponent(workload.name, args, after())
            else:
                component = MainProcess(workload.name, args, after())
            done.setdefault(stage, []).append(component)
    # After every Synapse workload: a new routing table may name a class (a writer, a duty) that only
    # becomes ready in this update, and HAProxy would send it requests first.
    workloads = [r for stage in range(1, len(STAGES)) for r in done.get(stage, [])]
    Router("synapse-router", plan, stored, after(config, *workloads))
    monitors = monitoring_manifests(plan)
    if monitors:
        objects = (*monitors, dashboard_configmap(plan))
        Monitoring("synapse-monitoring", objects, after(config))


def own_state(settings: Settings, states: DeployedStates) -> Deployed:
    """What this stack has deployed: for the maintenance window, and for the earlier config contents an
    update keeps (ops/generations.py). A stack never updated has nothing deployed."""
    own = stack_reference_name(pulumi.get_stack(), pulumi.get_organization(), pulumi.get_project())
    try:
        return states.deployed(own, with_history=False)
    except GuardError as error:
        raise pulumi.RunError(f"stack '{settings.stack}': cannot read what it has deployed: {error}") from None


def check_guards(
    settings: Settings, states: DeployedStates, own: Deployed, digests: dict[str, str], revision: str
) -> None:
    """The prod guards, on what the stacks' states say is deployed: a maintenance window for restarting
    main (`own`: this stack's), and staging first. Both read state before anything of ours is registered."""
    refusals = []
    project, org = pulumi.get_project(), pulumi.get_organization()
    try:
        if settings.require_maintenance_window and not settings.maintenance_window:
            refusals.append(maintenance_refusal(settings, own.digests, digests))
        if settings.staging_gate is not None:
            gate = states.deployed(stack_reference_name(settings.staging_gate, org, project), with_history=True)
            refusals.append(gate_refusal(settings, gate, revision))
    except GuardError as error:
        raise pulumi.RunError(f"stack '{settings.stack}': a guard cannot read what is deployed: {error}") from None
    for refusal in refusals:
        if refusal is not None:
            raise pulumi.RunError(refusal.message)


def project_root(root: Path | None = None) -> Path:
    """The project folder: `root` if given, else the one Pulumi names (`pulumi up`). An inline run of the
    Automation API names none (and mocks name a placeholder): then the nearest folder holding a
    `Pulumi.yaml` from where this process runs, as `pulumi` finds it (or see `inline_program`)."""
    if root is not None:
        return root
    named = pulumi.get_root_directory()
    if named and find_project(Path(named)) == Path(named):
        return Path(named)
    return find_project(Path.cwd()) or Path.cwd()


def deployed_states(root: Path | None = None) -> CliStates:
    """The real reader, for the backend this update runs against (components/deployed.py)."""
    return CliStates(pulumi.get_project(), project_root(root))


def inline_program(project_dir: Path) -> Callable[[], None]:
    """The program for an Automation API workspace in `project_dir`: the guards read the backend that
    folder's `Pulumi.yaml` names (the workspace's own `env_vars` never reach the program's process)."""
    return lambda: run(deployed_states(project_dir), project_dir)


def run(states: DeployedStates | None = None, root: Path | None = None) -> None:
    """`states` reads what stacks have deployed; by default their state, through the Pulumi CLI. `root`:
    the project folder, where the other stacks' files show a cycle of staging gates."""
    settings = load_from_runtime()
    folder = project_root(root)
    try:
        refuse_gate_cycle(settings.stack, settings.staging_gate, folder)
        plan = build_plan(settings)
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None
    revision, digests = program_revision(), template_digests(plan)
    reader = states or deployed_states(folder)
    own = own_state(settings, reader)
    check_guards(settings, reader, own, digests, revision)
    config = pulumi.Config(NAMESPACE)
    secrets = {SECRET_FILES[key]: config.require_secret(key) for key in settings.managed_secrets}
    deploy(plan, secrets, revision, digests, own.configs)
    pulumi.export("namespace", settings.namespace)
    pulumi.export("phase", plan.phase.name)
    pulumi.export("replicas", replica_table(plan))
    pulumi.export("sharedConfigMap", plan.shared.configmap_name)
    pulumi.export("revision", revision)
    pulumi.export("podTemplateDigests", digests)
