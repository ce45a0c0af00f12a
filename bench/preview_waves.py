"""Where a preview's time goes: when each Kubernetes object's registration is sent and answered.

Run:  make engine cluster-tools && venv/bin/python bench/preview_waves.py [CCU]      (about 30 s)

One preview of the program and one of the no-logic baseline (bench/engine_bench.py's), each in a fresh
child process against the local control plane (started if none runs, stopped after). The child wraps the
SDK's resource monitor (`pulumi.runtime.settings.get_monitor`) to time every `RegisterResource` call, then
prints the objects' registrations grouped into waves: a wave starts when a registration is sent after a
pause of 50 ms or more with nothing sent. The SDK sends an object only once the engine has answered for
everything in its `depends_on`, and in a preview the engine answers only after the provider has previewed
the object, so each step of the rollout order is one wave. Prints figures; asserts nothing.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import engine_bench

GAP = 0.05


def timed_preview(kind: str, ccu: int) -> dict[str, Any]:
    """In a child: one preview with every registration timed from the preview's start."""
    import pulumi.runtime.resource as sdk_resource  # noqa: PLC0415
    import pulumi.runtime.settings as sdk_settings  # noqa: PLC0415
    from pulumi import automation  # noqa: PLC0415

    start = [0.0]
    calls: list[tuple[float, float, str]] = []
    lock = threading.Lock()
    plain_monitor = sdk_settings.get_monitor

    class Timed:
        def __init__(self, monitor: Any) -> None:
            self.monitor = monitor

        def __getattr__(self, name: str) -> Any:
            method = getattr(self.monitor, name)
            if name != "RegisterResource":
                return method

            def register(request: Any, *args: Any, **kwargs: Any) -> Any:
                sent = time.perf_counter() - start[0]
                answer = method(request, *args, **kwargs)
                with lock:
                    calls.append((sent, time.perf_counter() - start[0], request.type))
                return answer

            return register

    wrapped: dict[int, Timed] = {}

    def monitor() -> Any:
        found = plain_monitor()
        if found is None:
            return None
        return wrapped.setdefault(id(found), Timed(found))

    sdk_settings.get_monitor = monitor
    sdk_resource.get_monitor = monitor  # type: ignore[attr-defined]
    preview = automation.Stack.preview

    def started(self: automation.Stack, *args: Any, **kwargs: Any) -> Any:
        start[0] = time.perf_counter()
        return preview(self, *args, **kwargs)

    automation.Stack.preview = started  # type: ignore[method-assign]
    result = engine_bench.measure_preview(kind, ccu)
    objects = sorted(c for c in calls if c[2].startswith("kubernetes:"))
    return {"seconds": result["seconds"], "objects": objects}


def waves(objects: list[list[Any]]) -> list[tuple[float, float, int]]:
    """(first sent, last answered, objects) per wave."""
    found: list[list[Any]] = []
    last_sent = -1.0
    for sent, answered, _ in objects:
        if not found or sent - last_sent >= GAP:
            found.append([sent, answered, 0])
        wave = found[-1]
        wave[1], wave[2] = max(wave[1], answered), wave[2] + 1
        last_sent = sent
    return [(w[0], w[1], w[2]) for w in found]


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(timed_preview(sys.argv[2], int(sys.argv[3]))))
        return
    ccu = int(sys.argv[1]) if len(sys.argv) > 1 else 7000
    engine_bench.write_manifests(ccu)
    engine_bench.warm_bytecode()
    with engine_bench.local_cluster():
        for kind in ("program", "baseline"):
            found = engine_bench.run_child(__file__, "--one", kind, str(ccu))
            objects = found["objects"]
            print(f"{kind} at {ccu:,} CCU: preview {found['seconds']:.2f} s, {len(objects)} objects")
            print(f"  first sent {objects[0][0]:.2f} s, last sent {max(o[0] for o in objects):.2f} s, "
                  f"last answered {max(o[1] for o in objects):.2f} s")  # fmt: skip
            for first, answered, count in waves(objects):
                print(f"  wave at {first:5.2f} s: {count:3d} objects, answered by {answered:5.2f} s")


if __name__ == "__main__":
    main()
