"""`recommend --json`, and reading it back for `scale --from-recommendation`.

The document is the record of why: the measured figures and targets, the stack's, the proposal and its
what-if, and the exact `scale` command. Read back, it is refused when it is for another stack, when the
stack's figures moved since (applying it would undo that change), or when it changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from synapse_workers.model.errors import ConfigError
from synapse_workers.model.load_figures import LOAD_FIGURES
from synapse_workers.ops.overrides import LoadChange
from synapse_workers.ops.recommend.measure import measured_record, rounded
from synapse_workers.ops.recommend.proposal import STEP_RULE, Recommendation, replica_counts, stack_figures
from synapse_workers.ops.whatif import whatif_json
from synapse_workers.plan import Plan


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    measured, load = rec.measured, rec.old.load
    stack: dict[str, Any] = {
        "name": rec.stack,
        "ccu": load.ccu,
        "messagesPerSecond": rounded(load.messages_per_second, 2),
        "messagesPerSecondEstimated": load.messages_estimated,
        "federationEnabled": load.federation_enabled,
        "replicas": replica_counts(rec.old),
    }
    if load.federation_enabled:
        stack["federatedServers"] = load.federated_servers
    document: dict[str, Any] = {
        "stack": stack,
        "measured": {
            **measured_record(measured),
            "messagesPerSecond": rounded(measured.messages_per_second, 3),
            "at": rounded(measured.at),
            "scrapeIntervalSeconds": rounded(measured.window.scrape_seconds),
            "rateRange": measured.window.rate_range,
            "classes": {
                c.part: {
                    "processes": c.processes,
                    "targets": {
                        r.target.alert: {
                            "what": r.target.what,
                            "peak": rounded(r.peak),
                            "limit": r.target.limit,
                            "unit": r.target.unit,
                            "broken": r.broken,
                        }
                        for r in c.readings
                    },
                }
                for c in measured.classes
            },
            "queries": dict(sorted(measured.queries.items())),
        },
        "recommended": {
            **{p.figure: rounded(p.value, 2) for p in rec.proposals},
            "changes": {
                p.figure: {"from": rounded(p.current, 2), "to": rounded(p.value, 2), "step": p.step, "change": p.change}
                for p in rec.proposals
            },
            "pins": {name: int(replicas) for name, replicas in rec.change.pins},
            "flags": [
                {
                    "class": f.part,
                    "target": f.reading.target.alert,
                    "peak": rounded(f.reading.peak),
                    "limit": f.reading.target.limit,
                    "replicas": {"before": f.replicas_before, "after": f.replicas_after},
                    "pin": f.pin,
                    "advice": f.advice,
                }
                for f in rec.flags
            ],
            "reason": rec.reason,
            "rule": STEP_RULE,
        },
        "whatIf": whatif_json(rec.result) if rec.result is not None else None,
        "command": rec.command,
    }
    if rec.last_change is not None:
        document["lastChange"] = rec.last_change
    if rec.refusal is not None:
        document["refused"] = rec.refusal
    return document


RECORDED_KEYS = ("window", "at", "ccu", "messagesPerSecond", "federatedServers", "targets")
"""What of the measurements reaches the history: the figures and the targets' peaks, not the queries."""


@dataclass(frozen=True)
class Saved:
    change: LoadChange
    reason: str
    measured: dict[str, Any]


def read_saved(stack: str, path: str, text: str, plan: Plan) -> Saved:
    """A saved `recommend --json` as a `scale` change; refused when it is for another stack, when the
    stack's figures moved since it was measured (it would undo that change), or when it changes nothing."""

    def refuse(problem: str, allowed: str = "the output of `synapse-workers recommend --json` for this stack") -> None:
        raise ConfigError(stack, "--from-recommendation", path, allowed, problem)

    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict) or not {"measured", "stack", "recommended", "command"} <= set(document):
        refuse("not a saved recommendation")
    assert isinstance(document, dict)
    saved_stack = document["stack"]
    if not isinstance(saved_stack, dict) or saved_stack.get("name") != stack:
        refuse(
            f"it was made for stack {json.dumps(saved_stack.get('name') if isinstance(saved_stack, dict) else None)}"
        )
    now = {figure: rounded(value, 2) for figure, value in stack_figures(plan).items()}
    then = {figure: saved_stack.get(figure) for figure in now}
    if now != then:
        moved = ", ".join(f"{k} {then[k]} then, {now[k]} now" for k in now if now[k] != then[k])
        refuse(f"the stack's figures changed since it was measured ({moved})", "a fresh `recommend --json`")
    recommended = document["recommended"]
    changes = recommended.get("changes", {}) if isinstance(recommended, dict) else {}
    to = {k: str(v["to"]) for k, v in changes.items() if isinstance(v, dict) and v.get("change") in ("up", "down")}
    pins = tuple(sorted((str(k), str(v)) for k, v in (recommended.get("pins") or {}).items()))
    change = LoadChange.of({f.key: to.get(f.key) for f in LOAD_FIGURES}, pins)
    if change.is_empty():
        refuse("it recommends no change", "a recommendation that changes a figure or pins a class")
    reason = str(recommended.get("reason") or "").strip()
    if not reason:
        refuse("it carries no reason")
    measured = document["measured"]
    kept = {k: measured[k] for k in RECORDED_KEYS if isinstance(measured, dict) and k in measured}
    return Saved(change, reason, kept)
