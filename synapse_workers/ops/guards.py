"""Refusals before anything is registered: a prod restart of main outside a maintenance window, and a
prod deploy of a program revision staging has not deployed.

The decisions are pure functions over digests; `read_previous` is the thin part that asks Pulumi for a
stack's last outputs (StackReference, which also works for a stack reading its own previous outputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from synapse_workers.kube.rollout import MAIN
from synapse_workers.model.settings import NAMESPACE, Settings


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
    if MAIN not in restarting:
        return None
    others = ", ".join(p for p in restarting if p != MAIN) or "nothing else"
    return Refusal(
        f"stack '{settings.stack}': this change restarts synapse-main (and {others}); "
        f"prod restarts main only in a maintenance window: run `pulumi config set {NAMESPACE}:maintenanceWindow true`, "
        f"`pulumi up`, then `pulumi config set {NAMESPACE}:maintenanceWindow false`"
    )


def gate_refusal(settings: Settings, gate_revision: str | None, revision: str) -> Refusal | None:
    """Refuse to deploy a program revision the gate stack (staging) has not deployed."""
    if settings.staging_gate is None:
        return None
    if gate_revision == revision:
        return None
    seen = f"it last deployed {gate_revision}" if gate_revision else "it has no deployed revision"
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
