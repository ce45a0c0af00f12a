"""What a change of load would do: replicas old → new, which processes restart and in what order.

A process restarts exactly when its pod template changes (new config file names, new resources, …), so
that is what is compared: the same rule Kubernetes applies, read off the two plans' manifests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from synapse_workers.kube.budget import budget_json, budget_lines
from synapse_workers.kube.workload import Workload
from synapse_workers.model.worker_classes import MAIN
from synapse_workers.plan import Plan


@dataclass(frozen=True)
class ClassChange:
    name: str
    old: dict[str, Any]
    new: dict[str, Any]


@dataclass(frozen=True)
class WhatIf:
    changes: tuple[ClassChange, ...]
    restarts: tuple[str, ...]
    """Workload parts whose pods restart, in rollout order (stage, then the table's order)."""
    replaced: tuple[str, ...]
    """Hash-sharded sets whose member list changes: stopped entirely before their new members start."""
    reroutes: tuple[str, ...]
    """The routing keys every process reads that change (`stream_writers.<stream>`, `instance_map`, the
    duty keys): processes on the old and the new routing must not run side by side, so the change
    quiesces (kube/quiesce.py): every Synapse process stops, then all start on the new routing."""
    old: Plan
    new: Plan

    @property
    def quiesce(self) -> bool:
        return bool(self.reroutes)

    @property
    def maintenance_window(self) -> bool:
        """Restarting main interrupts every client request it serves: plan a window for it."""
        return MAIN.name in self.restarts


def _template(workload: Workload | None) -> str | None:
    if workload is None:
        return None
    return json.dumps(workload.manifests[0]["spec"]["template"], sort_keys=True)


def _sizes(plan: Plan) -> dict[str, dict[str, Any]]:
    return {
        s.spec.name: {"replicas": s.replicas, "minReplicas": s.min_replicas, "maxReplicas": s.max_replicas}
        for s in plan.sizes
    }


def _routing(plan: Plan) -> dict[str, Any]:
    """The shared topology, one entry per stream writer list, so a change names the stream it moves."""
    config = plan.topology.as_config()
    flat = {key: value for key, value in config.items() if key != "stream_writers"}
    flat.update({f"stream_writers.{stream}": writers for stream, writers in config["stream_writers"].items()})
    return flat


def rerouted(old: Plan, new: Plan) -> tuple[str, ...]:
    before, after = _routing(old), _routing(new)
    return tuple(sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key)))


def compare(old: Plan, new: Plan) -> WhatIf:
    old_sizes, new_sizes = _sizes(old), _sizes(new)
    changes = tuple(
        ClassChange(name, old_sizes[name], new_sizes[name]) for name in new_sizes if old_sizes[name] != new_sizes[name]
    )
    old_by_part = {w.part: w for w in old.workloads}
    restarting = [w for w in new.workloads if w.part in old_by_part and _template(old_by_part[w.part]) != _template(w)]
    restarting.sort(key=lambda w: w.rules.stage)
    replaced = tuple(
        w.part
        for w in restarting
        if w.rules.replacement_trigger is not None
        and w.rules.replacement_trigger != old_by_part[w.part].rules.replacement_trigger
    )
    return WhatIf(
        changes=changes,
        restarts=tuple(w.part for w in restarting),
        replaced=replaced,
        reroutes=rerouted(old, new),
        old=old,
        new=new,
    )


def whatif_json(result: WhatIf) -> dict[str, Any]:
    return {
        "changes": {c.name: {"old": c.old, "new": c.new} for c in result.changes},
        "restarts": list(result.restarts),
        "replacedDeleteFirst": list(result.replaced),
        "reroutes": list(result.reroutes),
        "quiesce": result.quiesce,
        "maintenanceWindow": result.maintenance_window,
        "budgetBefore": budget_json(result.old.settings, result.old.budget),
    }


def whatif_table(result: WhatIf) -> str:
    lines = ["", "What-if:"]
    if not result.changes:
        lines.append("  no replica changes")
    for change in result.changes:
        old, new = change.old, change.new
        line = f"  {change.name}: replicas {old['replicas']} -> {new['replicas']}"
        if new["minReplicas"] is not None:
            line += f" (HPA {old['minReplicas']}-{old['maxReplicas']} -> {new['minReplicas']}-{new['maxReplicas']})"
        lines.append(line)
    if result.restarts:
        lines.append("  restarts, in order: " + ", ".join(result.restarts))
    else:
        lines.append("  restarts: none")
    for part in result.replaced:
        lines.append(f"  {part}: member list changes: every old member stops before any new one starts")
    if result.quiesce:
        lines.append(
            f"  re-routes {', '.join(result.reroutes)}: a quiesce: every Synapse process stops, then all start "
            'on the new routing in stage order (clients wait meanwhile; README, "Changes that re-route")'
        )
    else:
        lines.append("  re-routes nothing: pods roll with no downtime")
    window = "yes: synapse-main restarts" if result.maintenance_window else "no"
    lines.append(f"  maintenance window needed: {window}")
    for when, plan in (("before", result.old), ("after", result.new)):
        title, *figures = budget_lines(plan.settings, plan.budget)
        lines.append(f"  {title.replace('Budget', f'budget {when}', 1)}")
        lines += [f"  {figure}" for figure in figures]
    return "\n".join(lines) + "\n"
