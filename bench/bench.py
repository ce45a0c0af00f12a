"""Benchmarks: what a preview costs and how it grows with load, and the restart blast radius.

Run:  venv/bin/python bench/bench.py      (about a minute on two cores)

Each measurement runs in a fresh child process, so import time and peak memory (ru_maxrss) are its own.
Prints a table; nothing here is a test, and nothing asserts: targets are printed beside the figures.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loads import prod_values  # noqa: E402 (bench/ is the script's folder)

LOADS = (1000, 20000, 200000)
REPEATS = 3


def measure_one(kind: str, ccu: int) -> dict[str, Any]:
    """Runs in a child: one measurement, wall time from before the imports it needs."""
    start = time.perf_counter()
    count = 0
    if kind == "import":
        import components.program  # noqa: F401, PLC0415
    elif kind == "plan":
        from synapse_workers.cli.report import plan_table  # noqa: PLC0415
        from synapse_workers.model.settings import load_settings  # noqa: PLC0415
        from synapse_workers.plan import build_plan  # noqa: PLC0415

        values, secret_keys = prod_values(ccu)
        plan_table(build_plan(load_settings("prod", values, secret_keys)))
    elif kind == "program":
        from synapse_workers.cli.mock_runtime import run_program  # noqa: PLC0415

        values, secret_keys = prod_values(ccu)
        count = len(run_program("prod", values, secret_keys))
    elif kind == "baseline":
        manifests = json.loads(Path(sys.argv[-1]).read_text())
        start = time.perf_counter()  # the baseline's input is prepared; time only the registrations
        from components import registration as kube  # noqa: PLC0415
        from synapse_workers.cli.mock_runtime import run_program  # noqa: PLC0415

        def baseline() -> None:
            import pulumi  # noqa: PLC0415

            for index, manifest in enumerate(manifests):
                kube.create(f"r{index}", manifest, pulumi.ResourceOptions())

        count = len(run_program("prod", {}, program=baseline))
    elif kind == "render":
        from synapse_workers.cli.render import render_stack  # noqa: PLC0415

        values, secret_keys = prod_values(ccu)
        render_stack("prod", values, secret_keys)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "peak_mb": peak_mb, "resources": count}


def child(kind: str, ccu: int, extra: str = "") -> dict[str, Any]:
    runs = []
    for _ in range(REPEATS):
        args = [sys.executable, __file__, "--one", kind, "--ccu", str(ccu)] + ([extra] if extra else [])
        out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "peak_mb": max(r["peak_mb"] for r in runs)}


def _manifests_for(ccu: int, path: Path) -> None:
    from synapse_workers.cli.mock_runtime import run_program  # noqa: PLC0415

    values, secret_keys = prod_values(ccu)
    registered = run_program("prod", values, secret_keys)
    path.write_text(json.dumps([r.inputs for r in registered if r.is_kubernetes]))


def restart_scenarios() -> list[tuple[str, list[str], list[str]]]:
    """(scenario, restarted by the program, minimum that had to restart)."""
    from synapse_workers.model.settings import load_settings  # noqa: PLC0415
    from synapse_workers.ops.whatif import compare  # noqa: PLC0415
    from synapse_workers.plan import Plan, build_plan  # noqa: PLC0415
    from tests.conftest import base_values  # noqa: PLC0415
    from tests.test_whatif import BASE, SCENARIOS  # noqa: PLC0415

    def plan(change: dict[str, Any]) -> Plan:
        return build_plan(load_settings("prod", base_values(**{**BASE, **change})))

    def loaded(p: Plan) -> dict[str, str]:
        """What each class's processes load and run with: merged configs and container resources."""
        return {
            w.part: json.dumps(
                [w.process_configs()[0][1], w.manifests[0]["spec"]["template"]["spec"]["containers"][0]["resources"]],
                sort_keys=True,
            )
            for w in p.workloads
        }

    rows = []
    for name, change, _restarts, _replaced in SCENARIOS:
        old, new = plan({}), plan(change)
        restarted = list(compare(old, new).restarts)
        before, after = loaded(old), loaded(new)
        minimum = [part for part in after if part in before and before[part] != after[part]]
        rows.append((name, restarted, minimum))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one")
    parser.add_argument("--ccu", type=int, default=20000)
    parser.add_argument("extra", nargs="?")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.ccu)))
        return

    print(f"synapse-workers benchmarks (best of {REPEATS} fresh processes; peak = max RSS)\n")
    imp = child("import", 0)
    print(f"import components.program: {imp['seconds']:.2f} s, {imp['peak_mb']:.0f} MB")
    print(f"\n{'measure':<28}{'CCU':>9}{'seconds':>9}{'peak MB':>9}{'resources':>11}{'vs baseline':>13}")
    program_times = {}
    for ccu in LOADS:
        manifests = ROOT / "bench" / f".manifests-{ccu}.json"
        _manifests_for(ccu, manifests)
        try:
            program = child("program", ccu)
            baseline = child("baseline", ccu, str(manifests))
        finally:
            manifests.unlink()
        ratio = program["seconds"] / baseline["seconds"]
        program_times[ccu] = program["seconds"]
        for label, row, extra in (
            ("program (mocks)", program, f"{ratio:>12.2f}x"),
            ("baseline (no logic)", baseline, ""),
        ):
            print(f"{label:<28}{ccu:>9,}{row['seconds']:>9.2f}{row['peak_mb']:>9.0f}{row['resources']:>11}{extra:>13}")
    for kind in ("plan", "render"):
        for ccu in LOADS:
            row = child(kind, ccu)
            print(f"{kind:<28}{ccu:>9,}{row['seconds']:>9.2f}{row['peak_mb']:>9.0f}")
    growth = program_times[LOADS[-1]] / program_times[LOADS[0]]
    print(f"\ngrowth: program at {LOADS[-1]:,} CCU takes {growth:.2f}x its time at {LOADS[0]:,} CCU")
    print("targets: plan < 0.5 s; program <= 1.3x baseline and < 200 MB; flat in CCU")

    print(f"\n{'restart scenario':<44}{'restarted':>10}{'minimum':>9}{'extra':>7}{'missed':>8}")
    for name, restarted, minimum in restart_scenarios():
        needless = len(set(restarted) - set(minimum))
        missed = len(set(minimum) - set(restarted))
        print(f"{name:<44}{len(restarted):>10}{len(minimum):>9}{needless:>7}{missed:>8}")
    print("target: 0 extra, 0 missed")


if __name__ == "__main__":
    main()
