"""Refusals before anything is registered: a prod restart of main outside a maintenance window, and a
prod deploy of a program revision staging has not deployed.

The guards read what is deployed, never what was planned: a stack's outputs are recorded even when its
`pulumi up` fails, so they may describe objects that never reached the cluster. What a stack's state
holds for each Synapse workload is what the provider last applied: the workload object carries, in its
own metadata (not its pod template, so writing them restarts nothing), the digest of its pod template
and the program revision that applied it. A failed update leaves the workloads it never reached as
they were, and the state says so. The decisions are pure functions over those annotations; reading a
stack's state is the Pulumi layer's job (components/deployed.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from synapse_workers.kube.network_policy import NOT_SYNAPSE
from synapse_workers.model.settings import NAMESPACE, Settings
from synapse_workers.model.worker_classes import MAIN
from synapse_workers.ops.generations import CONFIG_PARENTS, StoredConfig, stored_configs

DIGEST_ANNOTATION = "synapse-workers/pod-template-digest"
REVISION_ANNOTATION = "synapse-workers/revision"
WORKLOAD_TYPES = ("kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:Deployment")


@dataclass(frozen=True)
class Deployed:
    """What a stack's state says runs: per Synapse workload part, its pod-template digest and the program
    revision that applied it; and how the stack's last update ended."""

    digests: dict[str, str] = field(default_factory=dict)
    revisions: dict[str, str] = field(default_factory=dict)
    last_result: str | None = None
    """`succeeded`, `failed` or `in-progress`; None when the stack was never updated."""
    configs: tuple[StoredConfig, ...] = ()
    """Its content-named ConfigMaps (ops/generations.py), for the earlier contents an update keeps."""


def deployed_from_state(deployment: Mapping[str, Any], last_result: str | None) -> Deployed:
    """Read the annotations off the Synapse workloads in an exported deployment (`pulumi stack export`)."""
    digests: dict[str, str] = {}
    revisions: dict[str, str] = {}
    for resource in deployment.get("resources") or []:
        if resource.get("type") not in WORKLOAD_TYPES or resource.get("delete"):
            continue
        metadata = (resource.get("outputs") or {}).get("metadata") or {}
        labels = metadata.get("labels") or {}
        part = labels.get("app.kubernetes.io/component")
        if labels.get("app.kubernetes.io/name") != "synapse" or part is None or part in NOT_SYNAPSE:
            continue
        annotations = metadata.get("annotations") or {}
        if DIGEST_ANNOTATION in annotations:
            digests[part] = annotations[DIGEST_ANNOTATION]
        if REVISION_ANNOTATION in annotations:
            revisions[part] = annotations[REVISION_ANNOTATION]
    return Deployed(
        digests=dict(sorted(digests.items())),
        revisions=dict(sorted(revisions.items())),
        last_result=last_result,
        configs=stored_configs(deployment, CONFIG_PARENTS),
    )


class GuardError(Exception):
    """A guard could not read what it needs; the message is the one line the operator sees."""


@dataclass(frozen=True)
class Refusal:
    message: str


def maintenance_refusal(
    settings: Settings, previous: Mapping[str, str] | None, current: Mapping[str, str]
) -> Refusal | None:
    """Refuse a change that restarts synapse-main unless the stack opted in for this window."""
    if not settings.require_maintenance_window or settings.maintenance_window or not previous:
        return None
    restarting = [part for part in current if part in previous and previous[part] != current[part]]
    if MAIN.name not in restarting:
        return None
    others = ", ".join(p for p in restarting if p != MAIN.name) or "nothing else"
    return Refusal(
        f"stack '{settings.stack}': this change restarts synapse-main (and {others}); "
        f"prod restarts main only in a maintenance window: run `pulumi config set {NAMESPACE}:maintenanceWindow true`, "
        f"`pulumi up`, then `pulumi config set {NAMESPACE}:maintenanceWindow false`"
    )


def gate_refusal(settings: Settings, gate: Deployed | None, revision: str) -> Refusal | None:
    """Refuse to deploy a program revision the gate stack (staging) has not deployed, every workload of it,
    with its last update a success."""
    if settings.staging_gate is None:
        return None
    found = sorted(set((gate.revisions if gate else {}).values()))
    if gate is not None and gate.last_result == "failed":
        return Refusal(
            f"stack '{settings.stack}': the last update of '{settings.staging_gate}' failed; fix it and run "
            f"`pulumi up --stack {settings.staging_gate}` until it succeeds, then deploy here"
        )
    if found == [revision]:
        return None
    if not found:
        seen = "it has no deployed revision"
    elif revision in found:
        others = ", ".join(r for r in found if r != revision)
        seen = f"only some of its workloads run it; others still run {others}"
    else:
        seen = f"it last deployed {', '.join(found)}"
    return Refusal(
        f"stack '{settings.stack}': program revision {revision} has not been deployed to '{settings.staging_gate}' "
        f"({seen}); deploy it there first (`pulumi up --stack {settings.staging_gate}`), or change "
        f"{NAMESPACE}:stagingGate"
    )


def stack_reference_name(reference: str, organization: str | None, project: str) -> str:
    """`staging` → `<org>/<project>/staging`; a full `org/project/stack` is kept as given.

    Self-managed backends have no organisation; Pulumi names it `organization` there.
    """
    if reference.count("/") == 2:
        return reference
    return f"{organization or 'organization'}/{project}/{reference}"
