"""One-shot Synapse pods: a workload's pod template turned into a Job that runs once and stops.

The config check and the schema preparation both run the deployment's own image with the mounts a
Synapse process has (config, secrets, the writable folders), but no server: no ports, no probes, no
restarts. Each Job is named after its whole pod template, because a Job's template is immutable and a new
image or config must run the step again; the same template keeps the same name, so an unchanged stack
shows no diff.
"""

from __future__ import annotations

from typing import Any

from synapse_workers.kube import manifests as k8s
from synapse_workers.model.settings import Settings
from synapse_workers.synapse.config_files import MEDIA_DIR, canonical_json, content_hash


def one_shot(template: dict[str, Any], script: str) -> dict[str, Any]:
    """`template` with its container running `script` once. Synapse creates its media store while it loads
    config, even where it serves no media, and the root filesystem is read-only: an empty folder does."""
    pod = template["spec"]
    container = pod["containers"][0]
    container["command"] = ["/bin/sh", "-c", script]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        container.pop(probe)
    container.pop("ports")
    container["volumeMounts"].append({"name": "media-check", "mountPath": MEDIA_DIR})
    pod["volumes"].append({"name": "media-check", "emptyDir": {"sizeLimit": "1Mi"}})
    pod["restartPolicy"] = "Never"
    return template


def job(settings: Settings, prefix: str, component: str, template: dict[str, Any], deadline: int) -> k8s.Manifest:
    """`deadline`: seconds before Kubernetes stops the Job (and pulumi-kubernetes reports it failed)."""
    name = f"{prefix}-{content_hash(canonical_json(template))}"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": k8s.metadata(settings, name, component),
        "spec": {"backoffLimit": 0, "activeDeadlineSeconds": deadline, "template": template},
    }
