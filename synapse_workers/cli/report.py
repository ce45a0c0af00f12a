"""The capacity plan as operators read it: a table for people, JSON for scripts."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from synapse_workers.kube.alerts import watch_for
from synapse_workers.kube.budget import budget_json, budget_lines
from synapse_workers.kube.rollout import STAGES
from synapse_workers.model.worker_classes import MAIN
from synapse_workers.plan import Plan
from synapse_workers.synapse.routing import routes_for_plan

BEYOND_MARK = "*"


def _number(value: Fraction) -> int | float:
    return int(value) if value.denominator == 1 else round(float(value), 2)


def rollout_stages(plan: Plan) -> list[list[str]]:
    stages: list[list[str]] = [["config"]] + [[] for _ in STAGES[1:]]
    for workload in plan.workloads:
        stages[workload.rules.stage].append(workload.part)
    return stages


def plan_json(plan: Plan) -> dict[str, Any]:
    settings, load = plan.settings, plan.load
    return {
        "stack": settings.stack,
        "phase": plan.phase.name,
        "phaseNumber": plan.phase.number,
        "monitoringFocus": plan.phase.monitoring_focus,
        "sizing": settings.sizing,
        "load": {
            "ccu": load.ccu,
            "messagesPerSecond": _number(load.messages_per_second),
            "messagesPerSecondEstimated": load.messages_estimated,
            "federationEnabled": load.federation_enabled,
            "federatedServers": load.federated_servers,
        },
        "workers": {
            size.spec.name: {
                "kind": size.spec.kind,
                "scaling": size.spec.scaling,
                "deployed": size.deployed,
                "replicas": size.replicas,
                "minReplicas": size.min_replicas,
                "maxReplicas": size.max_replicas,
                "beyondGuide": size.spec.beyond_guide,
                "formula": size.formula_value,
                "guideTable": None if size.spec.beyond_guide else size.table_value,
                "dbConnections": settings.db_pool(size.spec).cp_max,
                "monitoring": size.spec.monitoring,
                "watch": watch_for(size.spec)._asdict() if size.deployed else None,
                "notes": list(size.notes),
            }
            for size in plan.sizes
        },
        "budget": budget_json(settings, plan.budget),
        "departures": list(plan.departures()),
        "rollout": rollout_stages(plan),
        "routes": [
            {
                "pattern": r.pattern,
                "target": r.target,
                "firstPodOnly": r.first_pod,
                "hashOn": r.key,
                "methods": list(r.methods),
            }
            for r in routes_for_plan(plan)
        ],
    }


def plan_table(plan: Plan) -> str:
    settings, load = plan.settings, plan.load
    rate = _number(load.messages_per_second)
    rate_source = "estimated from CCU" if load.messages_estimated else "from config"
    federation = f"on, {load.federated_servers:,} servers" if load.federation_enabled else "off"
    phase = plan.phase
    phase_title = f"Phase {phase.number}: {phase.name}" if phase.number is not None else phase.name.capitalize()
    lines = [
        f"Stack {settings.stack}: {load.ccu:,} CCU, {rate:,} msg/s ({rate_source}), federation {federation}, "
        f"sizing: {settings.sizing}",
        f"{phase_title} ({phase.range}); monitoring focus: {phase.monitoring_focus}",
        "",
    ]
    header = ("class", "kind", "scaling", "replicas", "hpa min-max", "formula", "guide table", "db conns each")
    rows = [header]
    for size in plan.sizes:
        hpa = f"{size.min_replicas}-{size.max_replicas}" if size.min_replicas is not None else "-"
        replicas = str(size.replicas) if size.deployed else "0 (not deployed)"
        formula = str(size.formula_value)
        table = "-" if size.spec.beyond_guide else str(size.table_value)
        name = f"{size.spec.name}{BEYOND_MARK if size.spec.beyond_guide else ''}"
        pool = str(settings.db_pool(size.spec).cp_max)
        rows.append((name, size.spec.kind, size.spec.scaling, replicas, hpa, formula, table, pool))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    lines.append(f"main: 1 StatefulSet pod, {settings.db_pool(MAIN).cp_max} db conns")
    lines.append(
        f"{BEYOND_MARK} beyond the guide: duties taken off main, on from the guide's phase 3 (README, "
        "\"Main's duties as worker classes\"); formula: 1 per the class's CCU divisor, or 1 where Synapse takes one"
    )
    lines += ["", *budget_lines(settings, plan.budget)]
    notes = [
        (size.spec.name, note)
        for size in plan.sizes
        for note in size.notes
        if not note.startswith("departs from the guide")
    ]
    if notes:
        lines += ["", "Notes:"] + [f"  {name}: {note}" for name, note in notes]
    lines += ["", "Departures from the guide (real Synapse wins):"]
    lines += [f"  - {d}" for d in plan.departures()]
    lines += ["", "Watch (the guide's targets; metric and alert with synapse:monitoring.enabled):"]
    for size in plan.sizes:
        if size.deployed:
            watch = watch_for(size.spec)
            lines.append(f"  {size.spec.name}: {size.spec.monitoring}; {watch.metric}; alert {watch.alert}")
    lines += ["", "Rollout order when config changes:"]
    lines += [f"  {i + 1}. {STAGES[i]}: {', '.join(parts)}" for i, parts in enumerate(rollout_stages(plan)) if parts]
    lines += ["", "Routes (router: first match wins; everything else goes to main):"]
    routes = routes_for_plan(plan)
    for backend in dict.fromkeys(r.backend for r in routes):
        mine = [r for r in routes if r.backend == backend]
        where = f"{mine[0].target}, first pod only" if mine[0].first_pod else backend
        lines.append(f"  {where} (hash on {mine[0].key}):")
        lines += [f"    {' '.join(r.methods) + ' ' if r.methods else ''}{r.pattern}" for r in mine]
    return "\n".join(lines) + "\n"
