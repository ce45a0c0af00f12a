"""`recommend` as operators read it: the stack's figures beside the measured peaks, the targets, what the
change would do, and the command that applies it."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime

from synapse_workers.ops.recommend.measure import Reading
from synapse_workers.ops.recommend.proposal import STEP_RULE, Recommendation
from synapse_workers.ops.whatif import whatif_table


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")


def _reading(reading: Reading) -> str:
    target, peak = reading.target, reading.peak
    if peak is None:
        return f"{target.what}: no requests in the window"
    if target.unit == "ratio":
        shown, limit = f"{peak:.0%}", f"{target.limit:.0%}"
    elif target.unit == "seconds":
        shown, limit = f"{peak * 1000:.0f} ms", f"{target.limit * 1000:g} ms"
    else:
        shown, limit = f"{peak:.1f} {target.unit}", f"{target.limit:g} {target.unit}"
    mark = "  BROKEN" if reading.broken else ""
    return f"{target.what} {shown} (target {limit}){mark}"


def recommendation_table(rec: Recommendation) -> str:
    measured = rec.measured
    window = measured.window
    at = datetime.fromtimestamp(measured.at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        f"Stack {rec.stack}: peak over the last {window.text} to {at} (averages over {window.rate_range}, "
        f"scraped every {window.step})",
        "",
    ]
    rows = [("figure", "stack", "measured peak", "step", "recommended")]
    for p in rec.proposals:
        change = "no change" if p.change == "none" else f"{_figure(float(p.value))} ({p.change})"
        rows.append((p.figure, _figure(float(p.current)), _figure(p.peak), str(p.step), change))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    lines += ["", "Targets (peak over the window):"]
    for c in measured.classes:
        lines.append(f"  {c.part} ({c.processes} processes): " + "; ".join(_reading(r) for r in c.readings))
    if rec.flags:
        lines += ["", "Broken targets:"]
        lines += [f"  {f.part}: {_reading(f.reading).removesuffix('  BROKEN')}: {f.advice}" for f in rec.flags]
    if rec.result is not None:
        lines.append(whatif_table(rec.result).rstrip("\n"))
    lines += ["", "Step rule: " + STEP_RULE, ""]
    if rec.command:
        lines += [
            "Apply with:",
            "  " + shlex.join(rec.command),
            f"or save `recommend --json` and run: synapse-workers scale --stack {rec.stack} --from-recommendation FILE",
        ]
    else:
        lines.append("No change recommended.")
    if rec.last_change is not None:
        last = rec.last_change
        lines += ["", f"Since the last recorded change ({last['date']}: {last['reason']}), targets before -> now:"]
        for part, found in last["targets"].items():
            shown = [f"{alert} {v['before']} -> {v['after']} (limit {v['limit']:g})" for alert, v in found.items()]
            lines.append(f"  {part}: " + "; ".join(shown))
    return "\n".join(lines) + "\n"
