"""Benchmarks with the real engine: `pulumi preview` against a no-logic program, and `up` on a local cluster.

Run:  make engine cluster-tools && venv/bin/python bench/engine_bench.py      (about 6 minutes on two cores)

Preview: the project's program (inline, through the Automation API) against a program that registers the
same Kubernetes manifests with no logic, through the same explicit provider, and against a third that
registers them with the program's `depends_on` between them and nothing else (the rollout order's own
cost), at 1,000, 7,000, 20,000 and 200,000 CCU (the guide's phases 1, 3 and 4, and beyond it), each in a
fresh child process (best wall time of 3; peak memory = the child's own maximum RSS, the Pulumi CLI's and
the provider's beside it). All three preview against the local control plane (started if none runs,
stopped after), as the program's provider takes its cluster from the environment; a fresh stack each
time, so every object is a `create`.

Up: the local control plane (started if none runs, stopped after), a 20,000-CCU stack from empty, then
a CCU change to 25,000, with the engine tests' check executor and stand-in ingress controller running
(kwok completes no config-check pod by itself). Prints figures; asserts nothing: targets are printed beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOOLS = ROOT / ".tools"

LOADS = (1000, 7000, 20000, 200000)
REPEATS = 3


def _environment(scratch: Path) -> None:
    os.environ.update(
        {
            "PATH": f"{TOOLS / 'bin'}:{os.environ['PATH']}",
            "PULUMI_BACKEND_URL": (scratch / "state").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": "bench",
            "PULUMI_HOME": str(scratch / "home"),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "KUBECONFIG": str(TOOLS / "kubeconfig"),
        }
    )
    (scratch / "state").mkdir(exist_ok=True)
    (scratch / "home").mkdir(exist_ok=True)


def _stack(name: str, work: Path, program: Callable[[], None], ccu: int) -> Any:
    """Prod at `ccu`, without the guards (they read other stacks), with the engine tests' secrets."""
    from tests.engine.conftest import scratch_stack, shipped_config  # noqa: PLC0415

    config = shipped_config("prod")
    for key in ("synapse:stagingGate", "synapse:requireMaintenanceWindow"):
        config.pop(key)
    config["synapse:ccu"] = str(ccu)
    config["synapse:postgres"]["pooler"]["maxClientConnections"] = 100000
    return scratch_stack(name, work, config, program)


def measure_preview(kind: str, ccu: int) -> dict[str, Any]:
    """In a child: one preview of `kind` (program or baseline) at `ccu`, timed from before the imports
    (the program's own imports are part of its cost) to the end of the preview."""
    from pulumi import automation  # noqa: F401, PLC0415 (both kinds need it before anything is timed)

    start = time.perf_counter()
    from components.program import run  # noqa: PLC0415

    imports = time.perf_counter() - start

    scratch = Path(tempfile.mkdtemp(prefix="engine-bench-"))
    try:
        _environment(scratch)
        program: Callable[[], None] = run
        if kind in ("baseline", "ordered"):
            saved = json.loads((scratch.parent / f"engine-bench-manifests-{ccu}.json").read_text())
            manifests = saved["manifests"]
            after = saved["after"] if kind == "ordered" else None

            def baseline() -> None:
                import pulumi  # noqa: PLC0415

                from components import registration  # noqa: PLC0415
                from components.provider import kubernetes_provider  # noqa: PLC0415

                provider = kubernetes_provider()
                created: list[pulumi.CustomResource] = []
                for index, manifest in enumerate(manifests):
                    extra = {}
                    if manifest["kind"] == "Secret":  # secret values as the program's: Pulumi secrets
                        data = manifest.pop("stringData", {})
                        extra["string_data"] = {k: pulumi.Output.secret(v) for k, v in data.items()}
                    depends_on = [created[i] for i in after[index]] if after is not None else None
                    opts = pulumi.ResourceOptions(provider=provider, depends_on=depends_on)
                    created.append(registration.create(f"r{index}", manifest, opts, **extra))

            program = baseline
        stack = _stack("bench", scratch / "project", program, ccu)
        start = time.perf_counter()
        result = stack.preview(color="never")
        seconds = time.perf_counter() - start + (imports if kind == "program" else 0.0)
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        return {
            "seconds": seconds,
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children_peak_mb": children,
            "creates": sum(v for k, v in result.change_summary.items() if str(getattr(k, "value", k)) == "create"),
        }
    finally:  # the stack's state and project: nothing of a child outlives it
        shutil.rmtree(scratch, ignore_errors=True)


def write_manifests(ccu: int) -> None:
    """The program's objects at `ccu` (as the mock runtime resolves them), in the order the program
    registers them, and for each the objects its `depends_on` waits for (a component stands for every
    object it registered): the no-logic baselines replay them, one with that order and one without."""
    import pulumi  # noqa: PLC0415
    from loads import prod_values  # noqa: PLC0415

    from components import registration  # noqa: PLC0415
    from synapse_workers.cli.mock_runtime import run_program  # noqa: PLC0415

    order: list[tuple[tuple[str, str], pulumi.ResourceOptions]] = []
    index_of: dict[int, int] = {}
    original = registration.create

    def create(
        logical_name: str, manifest: dict[str, Any], opts: pulumi.ResourceOptions, **extra: Any
    ) -> pulumi.CustomResource:
        resource = original(logical_name, manifest, opts, **extra)
        index_of[id(resource)] = len(order)
        order.append(((manifest["kind"], manifest["metadata"]["name"]), opts))
        return resource

    values, secret_keys = prod_values(ccu)
    registration.create = create
    try:
        found = {(r.inputs["kind"], r.inputs["metadata"]["name"]): r.inputs for r in run_program(
            "prod", values, secret_keys) if r.is_kubernetes}  # fmt: skip
    finally:
        registration.create = original
    children: dict[int, list[int]] = {}
    for index, (_, opts) in enumerate(order):
        children.setdefault(id(opts.parent), []).append(index)

    def objects_of(dependency: pulumi.Resource) -> list[int]:
        """A component stands for every object it registered, as the SDK expands it; an object for itself."""
        if id(dependency) in children:
            return children[id(dependency)]
        return [index_of[id(dependency)]]  # a KeyError here: a dependency the replay could not name

    manifests, after = [], []
    for key, opts in order:
        manifest = found[key]
        if manifest["kind"] == "Secret":
            manifest["stringData"] = {k: "bench" for k in manifest.get("stringData", {})}
        manifests.append(manifest)
        deps = opts.depends_on if isinstance(opts.depends_on, list) else []
        after.append(sorted({index for dependency in deps for index in objects_of(dependency)}))
    path = Path(tempfile.gettempdir()) / f"engine-bench-manifests-{ccu}.json"
    path.write_text(json.dumps({"manifests": manifests, "after": after}))


def child_environment() -> dict[str, str]:
    """The children import from cached bytecode, as an operator's second run does, whatever this shell says
    (with PYTHONDONTWRITEBYTECODE every child compiles the program's modules again: about 0.1 s). The
    checkout's `__pycache__` folders are ignored by git; the installed packages have theirs from pip."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def warm_bytecode() -> None:
    """Bytecode for every module a child imports, before any child is timed."""
    imports = "import components.program, tests.engine.conftest"
    subprocess.run([sys.executable, "-c", imports], check=True, cwd=ROOT, env=child_environment())


def run_child(script: str, *args: str) -> dict[str, Any]:
    """`script` with `args` in a fresh process; what it printed last, as JSON."""
    command = [sys.executable, script, *args]
    out = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, env=child_environment())
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def child(kind: str, ccu: int) -> dict[str, Any]:
    runs = []
    for _ in range(REPEATS):
        runs.append(run_child(__file__, "--one", kind, "--ccu", str(ccu)))
    best = min(runs, key=lambda r: r["seconds"])
    return {**best, "peak_mb": max(r["peak_mb"] for r in runs)}


def measure_up() -> tuple[float, float, int]:
    """A 20,000-CCU stack from empty on the local cluster, then a CCU change: (seconds, seconds, objects)."""
    from components.program import run  # noqa: PLC0415

    scratch = Path(tempfile.mkdtemp(prefix="engine-bench-up-"))
    _environment(scratch)
    from tests.engine.executor import CheckExecutor, ingress_controller  # noqa: PLC0415

    kubectl = str(TOOLS / "bin" / "kubectl")
    executor, stopped = CheckExecutor(kubectl), threading.Event()
    helpers = [
        threading.Thread(target=executor.loop, daemon=True),
        threading.Thread(target=ingress_controller, args=(kubectl, stopped), daemon=True),
    ]
    for helper in helpers:
        helper.start()
    try:
        stack = _stack("bench", scratch / "project", run, 20000)
        start = time.perf_counter()
        result = stack.up(color="never")
        first = time.perf_counter() - start
        objects = sum(v for k, v in (result.summary.resource_changes or {}).items() if k == "create")
        path = scratch / "project" / "Pulumi.bench.yaml"
        path.write_text(path.read_text().replace("synapse:ccu: '20000'", "synapse:ccu: '25000'"))
        start = time.perf_counter()
        stack.up(color="never")
        second = time.perf_counter() - start
        stack.destroy(color="never")
        return first, second, objects
    finally:
        executor.stopped.set()
        stopped.set()
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def local_cluster() -> Iterator[None]:
    """The local control plane for the whole run: started if none runs, and then stopped after."""
    started = not (TOOLS / "cluster" / "pids").exists()
    if started:
        subprocess.run(["bash", str(ROOT / "scripts/cluster/cluster-up.sh")], check=True, capture_output=True)
    try:
        yield
    finally:
        if started:
            subprocess.run(["bash", str(ROOT / "scripts/cluster/cluster-down.sh")], check=False, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one")
    parser.add_argument("--ccu", type=int)
    parser.add_argument("--skip-up", action="store_true")
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_preview(args.one, args.ccu)))
        return
    for ccu in LOADS:
        write_manifests(ccu)
    warm_bytecode()
    with local_cluster():
        previews_then_up(args.skip_up)


def previews_then_up(skip_up: bool) -> None:
    print(
        f"{'preview':<12}{'CCU':>9}{'program':>10}{'baseline':>10}{'ratio':>8}{'peak MB':>9}{'creates':>9}"
        f"{'ordered':>10}{'ratio':>8}"
    )
    for ccu in LOADS:
        program, baseline, ordered = child("program", ccu), child("baseline", ccu), child("ordered", ccu)
        ratio = program["seconds"] / baseline["seconds"]
        print(
            f"{'':<12}{ccu:>9,}{program['seconds']:>9.2f}s{baseline['seconds']:>9.2f}s{ratio:>7.2f}x"
            f"{program['peak_mb']:>9.0f}{program['creates']:>9}"
            f"{ordered['seconds']:>9.2f}s{ordered['seconds'] / baseline['seconds']:>7.2f}x"
        )
    print("target: program <= 1.2x the no-logic baseline at every load, flat in CCU")
    print("ordered: the baseline's objects with the program's depends_on between them (no logic, no components)")
    if not skip_up:
        first, second, objects = measure_up()
        print(f"\nup, 20,000 CCU from empty on the local cluster: {first:.1f} s ({objects} creates); target < 60 s")
        print(f"up, CCU 20,000 -> 25,000: {second:.1f} s")


if __name__ == "__main__":
    main()
