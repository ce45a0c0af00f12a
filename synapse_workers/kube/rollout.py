"""Restart rules and rollout order, as plain data the Pulumi layer maps onto resource options.

Pulumi's mocks see resource inputs but not options, so the rules live here where tests can read them.
The order is the guide's three manual steps, done by dependencies: new config first, then the
stream writers (and the hash-sharded sets) ready, then main, then everything that only reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from synapse_workers.model.worker_classes import MainProcess, Process

STAGES: tuple[str, ...] = ("config", "writers", "main", "readers")
"""Rollout stages in order; each stage's workloads depend on every workload of the stage before."""


def stage_of(process: Process) -> int:
    if isinstance(process, MainProcess):
        return STAGES.index("main")
    if process.stream is not None or process.hash_sharded:
        return STAGES.index("writers")
    return STAGES.index("readers")


@dataclass(frozen=True)
class ResourceRules:
    """What the Pulumi layer must set on a workload resource beyond its manifest."""

    stage: int
    replacement_trigger: str | None
    """Set for hash-sharded sets: a new member list replaces the StatefulSet, deleting it first, so old
    and new members never run side by side (Synapse docs/workers.md; element-hq/synapse#12374)."""
    ignore_replicas: bool
    """An HPA owns `spec.replicas` of its Deployment: the program must not fight it on every `up`."""


def rules_for(process: Process, members: tuple[str, ...]) -> ResourceRules:
    if isinstance(process, MainProcess):
        # Main is never replaced as a resource: it only ever rolls.
        return ResourceRules(stage_of(process), None, False)
    return ResourceRules(
        stage=stage_of(process),
        replacement_trigger=",".join(members) if process.hash_sharded else None,
        ignore_replicas=process.scaling == "hpa",
    )
