"""Runs the config-check Job's real command for the fake cluster, and sets the pod's phase from its exit code.

kwok fakes every pod but never completes a config-check pod (scripts/cluster/kwok-stages.yaml), so a
check Job cannot pass just because kwok completes pods. This executor finds each running check pod,
reads its volumes back from the API as deployed (ConfigMaps and the Secret, through `kubectl`), lays
them out under a scratch folder, and runs the container's own command with the installed Synapse.
Mount paths are moved under the scratch folder, in the command and in the files alike: the one change
to what the pod would run.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHECK_SELECTOR = "app.kubernetes.io/component=config-check"


@dataclass(frozen=True)
class Outcome:
    pod: str
    exit_code: int
    output: str


def kubectl(kubectl_bin: str, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([kubectl_bin, *args], input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _relocate(text: str, moves: list[tuple[str, str]]) -> str:
    """One pass, longest mount first, whole path segments only (a target may contain another mount)."""
    targets = dict(moves)
    pattern = "|".join(re.escape(mount) for mount, _ in moves)
    return re.sub(rf"(?<![\w/.])(?:{pattern})(?=[/\s'\"]|$)", lambda m: targets[m.group(0)], text, flags=re.MULTILINE)


@dataclass
class CheckExecutor:
    kubectl_bin: str
    outcomes: list[Outcome] = field(default_factory=list)
    handled: set[str] = field(default_factory=set)
    stopped: threading.Event = field(default_factory=threading.Event)
    errors: list[str] = field(default_factory=list)

    def loop(self) -> None:
        while not self.stopped.wait(0.5):
            try:
                pods = json.loads(kubectl(self.kubectl_bin, "get", "pods", "-A", "-l", CHECK_SELECTOR, "-o", "json"))
            except (RuntimeError, json.JSONDecodeError) as error:
                self.errors.append(str(error))
                continue
            for pod in pods["items"]:
                uid = pod["metadata"]["uid"]
                if uid in self.handled or pod.get("status", {}).get("phase") != "Running":
                    continue
                self.handled.add(uid)
                try:
                    self.execute(pod)
                except Exception as error:
                    self.errors.append(f"{pod['metadata']['name']}: {error}")
                    self._finish(pod, 99, f"executor error: {error}")

    def _files(self, namespace: str, volume: dict[str, Any]) -> dict[str, bytes]:
        if "configMap" in volume:
            name, kind = volume["configMap"]["name"], "configmap"
            items = volume["configMap"].get("items")
        elif "secret" in volume:
            name, kind = volume["secret"]["secretName"], "secret"
            items = volume["secret"].get("items")
        else:
            return {}
        obj = json.loads(kubectl(self.kubectl_bin, "get", kind, name, "-n", namespace, "-o", "json"))
        data = obj.get("data") or {}
        raw = {k: (base64.b64decode(v) if kind == "secret" else v.encode()) for k, v in data.items()}
        if items is None:
            return raw
        return {item["path"]: raw[item["key"]] for item in items}

    def execute(self, pod: dict[str, Any]) -> None:
        namespace = pod["metadata"]["namespace"]
        spec = pod["spec"]
        container = spec["containers"][0]
        volumes = {v["name"]: v for v in spec["volumes"]}
        root = Path(tempfile.mkdtemp(prefix="check-pod-"))
        try:
            moves = sorted(
                ((m["mountPath"], str(root / m["mountPath"].lstrip("/"))) for m in container["volumeMounts"]),
                key=lambda pair: -len(pair[0]),
            )
            written: list[Path] = []
            for mount in container["volumeMounts"]:
                target = root / mount["mountPath"].lstrip("/")
                target.mkdir(parents=True, exist_ok=True)
                for rel, content in self._files(namespace, volumes[mount["name"]]).items():
                    path = target / rel
                    path.write_bytes(content)
                    written.append(path)
            for path in written:
                with contextlib.suppress(UnicodeDecodeError):  # a binary file names no paths
                    path.write_text(_relocate(path.read_text(), moves))
            command = [_relocate(part, moves) for part in container["command"]]
            env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HOME": str(root)}
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, timeout=300, check=False)
            self._finish(pod, done.returncode, done.stdout + done.stderr)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _finish(self, pod: dict[str, Any], exit_code: int, output: str) -> None:
        name, namespace = pod["metadata"]["name"], pod["metadata"]["namespace"]
        self.outcomes.append(Outcome(name, exit_code, output))
        container = pod["spec"]["containers"][0]["name"]
        started = (pod.get("status", {}).get("startTime")) or "2026-01-01T00:00:00Z"
        status = {
            "status": {
                "phase": "Succeeded" if exit_code == 0 else "Failed",
                "containerStatuses": [
                    {
                        "name": container,
                        "image": pod["spec"]["containers"][0]["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "started": False,
                        "state": {
                            "terminated": {
                                "exitCode": exit_code,
                                "reason": "Completed" if exit_code == 0 else "Error",
                                "startedAt": started,
                                "finishedAt": started,
                            }
                        },
                    }
                ],
            }
        }
        kubectl(
            self.kubectl_bin,
            "patch",
            "pod",
            name,
            "-n",
            namespace,
            "--subresource=status",
            "--type=merge",
            "-p",
            json.dumps(status),
        )


def ingress_controller(
    kubectl_bin: str, stopped: threading.Event, address: Callable[[dict[str, Any]], str] = lambda _: "192.0.2.10"
) -> None:
    """Stands in for an ingress controller: gives every Ingress an address, as pulumi-kubernetes waits for.
    `address`: the address for an Ingress (default one of TEST-NET-1's, where nothing answers)."""
    while not stopped.wait(1.0):
        try:
            ingresses = json.loads(kubectl(kubectl_bin, "get", "ingress", "-A", "-o", "json"))["items"]
        except (RuntimeError, json.JSONDecodeError):
            continue
        for ingress in ingresses:
            if ingress.get("status", {}).get("loadBalancer", {}).get("ingress"):
                continue
            meta = ingress["metadata"]
            with contextlib.suppress(RuntimeError):  # gone meanwhile: nothing to report
                status = {"status": {"loadBalancer": {"ingress": [{"ip": address(ingress)}]}}}
                kubectl(
                    kubectl_bin, "patch", "ingress", meta["name"], "-n", meta["namespace"], "--subresource=status",
                    "--type=merge", "-p", json.dumps(status),
                )  # fmt: skip
