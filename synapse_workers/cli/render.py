"""`render`: every Kubernetes object and every process's Synapse config, as reviewable YAML files.

The objects come from running the real program under Pulumi's mock runtime (not from a second copy of
the logic), and the per-process configs are rebuilt from the ConfigMaps and workloads it registered:
what a reviewer reads is what `pulumi up` would send. Secret values are redacted.
"""

from __future__ import annotations

import json
import os
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


OWNED = ".synapse-workers-render"
"""The list, in the output folder, of the files the last render wrote: the only ones a render replaces."""
PARTS = ("manifests", "synapse")


class RenderOutError(Exception):
    """`--out` cannot take the render: one line, and the folder is left as it was."""

    def __init__(self, out: Path, problem: str, allowed: str = "a folder this user can write, or a new path") -> None:
        super().__init__(f"--out = {json.dumps(str(out))} is not allowed ({problem}); allowed: {allowed}")


def check_out(out: Path) -> None:
    """`--out` is a folder or does not exist yet; refused before anything is rendered."""
    if out.exists() and not out.is_dir():
        raise RenderOutError(out, "it is a file, not a folder")


def _owned(out: Path) -> set[str]:
    try:
        return set((out / OWNED).read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        return set()


def _foreign(out: Path) -> list[str]:
    """Files under manifests/ and synapse/ that no earlier render wrote: a render must not delete them."""
    owned = _owned(out)
    found = []
    for part in PARTS:
        folder = out / part
        if folder.is_dir():
            found += [p.relative_to(out).as_posix() for p in sorted(folder.rglob("*")) if not p.is_dir()]
        elif folder.exists():
            found.append(part)
    return [name for name in found if name not in owned]


def write(rendered: Rendered, out: Path) -> None:
    """Build the new manifests/ and synapse/ in a temporary sibling, then swap each in.

    A render replaces only what renders wrote (listed in `OWNED`); a file anyone else put there is
    refused, never deleted. A failure on the way leaves the folder as it was.
    """
    check_out(out)
    try:
        foreign = _foreign(out) if out.exists() else []
    except OSError as error:
        raise RenderOutError(out, f"cannot read it: {error.strerror}") from None
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise RenderOutError(
            out,
            f"it holds files render did not write: {shown}",
            "a folder only render writes into (move those files, or give another --out)",
        )
    staging = out.parent / f".{out.name}.render-{os.getpid()}"
    swapped: list[str] = []
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        names = []
        for part, files in zip(PARTS, (rendered.manifests, rendered.processes), strict=True):
            (staging / part).mkdir(parents=True)
            for name, text in files.items():
                (staging / part / name).write_text(text, encoding="utf-8")
                names.append(f"{part}/{name}")
        (staging / OWNED).write_text("".join(f"{n}\n" for n in sorted(names)), encoding="utf-8")
        if not out.exists():
            os.rename(staging, out)
            return
        for part in (*PARTS, OWNED):
            if (out / part).exists():
                os.rename(out / part, staging / f"{part}.old")
            os.rename(staging / part, out / part)
            swapped.append(part)
    except OSError as error:
        for part in reversed(swapped):  # put back what was there
            os.rename(out / part, staging / part)
            if (staging / f"{part}.old").exists():
                os.rename(staging / f"{part}.old", out / part)
        raise RenderOutError(out, f"cannot write it: {error.strerror or error}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
