"""What the engine tier and the node tier do with a stack and check afterwards: an `up` that shows the
engine's output when it fails, the steps the engine took, a refusal's one line, the Kubernetes objects in
the state, and a watcher of the namespace's Synapse pods while an update runs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pytest
from pulumi import automation

from tests.background import Background
from tests.engine.conftest import Engine


def up(engine: Engine, stack: automation.Stack, **kwargs: Any) -> automation.UpResult:
    lines: list[str] = []
    try:
        return stack.up(on_output=lines.append, color="never", **kwargs)
    except automation.CommandError as error:
        said = "\n".join(f"{o.pod}: exit {o.exit_code}: {o.output[-1500:]}" for o in engine.executor.outcomes)
        raise AssertionError("\n".join(lines)[-5000:] + "\ncheck pods:\n" + said) from error


def kubernetes_state(stack: automation.Stack) -> dict[tuple[str, str], dict[str, Any]]:
    """(kind, name) → the state's resource, for every Kubernetes object the stack manages."""
    deployment = stack.export_stack().deployment or {}
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in deployment.get("resources", []):
        if not resource["type"].startswith("kubernetes:") or resource.get("delete"):
            continue
        if resource["type"].startswith("pulumi:providers"):
            continue
        outputs = resource.get("outputs", {})
        found[(outputs["kind"], outputs["metadata"]["name"])] = resource
    return found


@dataclass(frozen=True)
class Step:
    op: str
    kind: str
    name: str
    template_changed: bool


def step_of(event: automation.EngineEvent) -> Step | None:
    pre = event.resource_pre_event
    if pre is None or not pre.metadata.type.startswith("kubernetes:"):
        return None
    meta = pre.metadata
    old = (meta.old.inputs if meta.old else None) or {}
    new = (meta.new.inputs if meta.new else None) or {}
    changed = (old.get("spec") or {}).get("template") != (new.get("spec") or {}).get("template")
    name = (new.get("metadata") or old.get("metadata") or {}).get("name", meta.urn.rsplit("::", 1)[-1])
    return Step(meta.op.value, meta.type.rsplit(":", 1)[-1], name, changed)


def steps(engine: Engine, stack: automation.Stack, action: str = "preview") -> list[Step]:
    """The engine's steps for Kubernetes objects, in the order it took (or would take) them."""
    found: list[Step] = []

    def collect(event: automation.EngineEvent) -> None:
        step = step_of(event)
        if step is not None and step.op != "same":
            found.append(step)

    if action == "preview":
        stack.preview(on_event=collect, color="never")
    else:
        up(engine, stack, on_event=collect)
    return found


def restarted(found: list[Step]) -> set[str]:
    """Synapse workloads whose pods roll: an update or replacement of the pod template."""
    return {
        s.name.removeprefix("synapse-")
        for s in found
        if s.kind in ("StatefulSet", "Deployment")
        and s.op in ("update", "replace", "create-replacement")
        and s.template_changed
        and s.name not in ("synapse-router", "synapse-pgbouncer")
    }


def refused(engine: Engine, stack: automation.Stack, action: str = "preview") -> str:
    """Run and expect the program's one-line refusal; return it."""
    lines: list[str] = []
    with pytest.raises(automation.CommandError):
        if action == "preview":
            stack.preview(on_output=lines.append, color="never")
        else:
            stack.up(on_output=lines.append, color="never")
    text = "\n".join(lines)
    errors = [line.strip() for line in text.splitlines() if line.strip().startswith("error: stack '")]
    assert errors, text[-3000:]
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    message = errors[0].removeprefix("error: ")
    # One refusal. The inline server logs a RunError's message and also hands it back to the engine, which
    # reports it as "an unhandled error occurred: <message>" (README, "One line per refusal"): every error
    # line is that message, with that prefix at most; nothing else is said.
    said = {line.split("error: ", 1)[1].strip() for line in text.splitlines() if "error: " in line}
    assert said <= {message, f"an unhandled error occurred: {message}"}, said
    return message


def ready(pod: dict[str, Any]) -> bool:
    """Ready by its own probes and not on its way out."""
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return conditions.get("Ready") == "True" and "deletionTimestamp" not in pod["metadata"]


def shared_config(pod: dict[str, Any]) -> str | None:
    """The content-named ConfigMap of Synapse's shared config the pod mounts (it names the routing)."""
    return next((v["configMap"]["name"] for v in pod["spec"].get("volumes", []) if v["name"] == "config-shared"), None)


class PodWatcher(Background):
    """Samples the namespace's Synapse server pods while an update runs: for each sample, the shared
    config (its content-addressed ConfigMap, which names the routing) of every pod that exists in phase
    Running, terminating ones included (they may still serve); the config check's Job pod is left out.
    Also the first moment each class had a Ready pod, not terminating, on a given shared config (the order
    in which the stages came up, on a node whose pods really start)."""

    def __init__(self, engine: Engine, namespace: str) -> None:
        super().__init__([self._run])
        self.engine, self.namespace = engine, namespace
        self.samples: list[set[str]] = []
        self.pods: list[list[tuple[str, str, bool]]] = []
        """Per sample: (pod, shared ConfigMap, terminating), to show what overlapped."""
        self.first_ready: dict[tuple[str, str], float] = {}
        """(class, shared ConfigMap) → the monotonic time a sample first saw such a pod Ready."""

    def _run(self) -> None:
        while not self.stop.is_set():
            pods = json.loads(self.engine.kubectl("get", "pods", "-n", self.namespace, "-o", "json"))["items"]
            now = time.monotonic()
            shared = set()
            seen = []
            for pod in pods:
                owners = {o["kind"] for o in pod["metadata"].get("ownerReferences", [])}
                config = shared_config(pod)
                if pod["status"].get("phase") != "Running" or "Job" in owners or config is None:
                    continue  # the config check's pod reads the new config but serves nothing
                shared.add(config)
                seen.append((pod["metadata"]["name"], config, "deletionTimestamp" in pod["metadata"]))
                if ready(pod):
                    component = pod["metadata"]["labels"].get("app.kubernetes.io/component", "")
                    self.first_ready.setdefault((component, config), now)
            self.samples.append(shared)
            self.pods.append(seen)
            self.stop.wait(0.2)
