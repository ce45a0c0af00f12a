"""`render`: every Kubernetes object and every process's Synapse config, as reviewable YAML files.

The objects come from running the real program under Pulumi's mock runtime (not from a second copy of
the logic), and the per-process configs are rebuilt from the ConfigMaps and workloads it registered:
what a reviewer reads is what `pulumi up` would send. Secret values are redacted.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synapse_workers.cli.mock_runtime import REDACTED, Registered, run_program
from synapse_workers.model.worker_classes import MAIN
from synapse_workers.synapse.config_files import from_yaml, merge_process_config, to_yaml


@dataclass(frozen=True)
class Rendered:
    manifests: dict[str, str]
    """File name → YAML, one Kubernetes object each."""
    processes: dict[str, str]
    """File name (pod name) → the merged Synapse config that process loads."""


def manifest_of(resource: Registered) -> dict[str, Any]:
    manifest = dict(resource.inputs)
    if manifest.get("kind") == "Secret":
        # Whatever arrived, no secret value leaves this function.
        for field in ("data", "stringData"):
            if isinstance(manifest.get(field), dict):
                manifest[field] = {k: REDACTED for k in sorted(manifest[field])}
            elif field in manifest:
                manifest[field] = REDACTED
    return manifest


def _file_name(manifest: Mapping[str, Any]) -> str:
    return f"{manifest['kind'].lower()}-{manifest['metadata']['name']}.yaml"


def _volume_configmap(template: Mapping[str, Any], volume: str) -> str:
    for entry in template["spec"]["volumes"]:
        if entry["name"] == volume:
            return str(entry["configMap"]["name"])
    raise ValueError(f"no volume {volume}")


def process_configs(objects: list[dict[str, Any]]) -> dict[str, str]:
    """Merge, per process, the files its pod mounts, as Synapse merges several `-c` files."""
    configmaps = {
        o["metadata"]["name"]: from_yaml(next(iter(o["data"].values())))
        for o in objects
        if o["kind"] == "ConfigMap" and set(o["data"]) & {"shared.yaml", "class.yaml"}
    }
    out: dict[str, str] = {}
    for o in objects:
        if o["kind"] not in ("StatefulSet", "Deployment"):
            continue
        template = o["spec"]["template"]
        if not any(v["name"] == "config-shared" for v in template["spec"]["volumes"]):
            continue  # not a Synapse process (the router)
        shared = configmaps[_volume_configmap(template, "config-shared")]
        own = configmaps[_volume_configmap(template, "config-class")]
        name = o["metadata"]["name"]
        is_main = template["metadata"]["labels"]["app.kubernetes.io/component"] == MAIN.name
        if o["kind"] == "Deployment":
            pods = [(f"{name}.yaml", f"{name}-sample")]
        else:
            pods = [(f"{name}-{i}.yaml", f"{name}-{i}") for i in range(o["spec"]["replicas"])]
        for file_name, pod in pods:
            out[file_name] = merge_process_config(shared, own, None if is_main else pod)
    return out


def render_stack(stack: str, values: Mapping[str, str], secret_keys: Set[str]) -> Rendered:
    # Render shows what would be registered once the prod guards pass: staging has deployed this
    # revision, and nothing was deployed before (so no restart needs a maintenance window).
    registered = run_program(stack, values, secret_keys)
    objects = [manifest_of(r) for r in registered if r.is_kubernetes]
    manifests = {_file_name(o): to_yaml(o) for o in objects}
    if len(manifests) != len(objects):
        raise ValueError("two Kubernetes objects share a kind and name")
    return Rendered(manifests=dict(sorted(manifests.items())), processes=dict(sorted(process_configs(objects).items())))


def write(rendered: Rendered, out: Path) -> None:
    """Replace DIR/manifests and DIR/synapse wholesale, so no file from an earlier render lingers."""
    for sub, files in (("manifests", rendered.manifests), ("synapse", rendered.processes)):
        target = out / sub
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        for name, text in files.items():
            (target / name).write_text(text, encoding="utf-8")
