"""A Job that lets real Synapse check the new config in the cluster before anything rolls.

The Job runs the deployment's own image and loads main's and every worker class's merged config with
Synapse's own loader (`python -m synapse.config`), so a config Synapse rejects stops `pulumi up` with
Synapse's message and restarts nothing: every workload depends on this Job, and pulumi-kubernetes waits
for a Job to complete. It is named after the config's content, so it runs again exactly when the config
changes (or the image does).
"""

from __future__ import annotations

from typing import Any

from synapse_workers.kube import manifests as k8s
from synapse_workers.kube.jobs import job, one_shot
from synapse_workers.model.settings import Settings
from synapse_workers.model.worker_classes import MAIN, Resources
from synapse_workers.synapse.config_files import (
    CLASS_FILE,
    SECRETS_DIR,
    SHARED_FILE,
    WORKER_NAME_DIR,
    WORKER_NAME_FILE,
    ConfigFile,
    content_hash,
)

CHECK_COMPONENT = "config-check"
CHECK_WORKER_NAME = "synapse-config-check"


def _class_dir(part: str) -> str:
    return f"/config/{part}"


def check_script(parts: list[str]) -> str:
    """Load every part's merged config in turn; the first failure ends the Job with Synapse's message."""
    lines = ["set -eu", f"printf 'worker_name: {CHECK_WORKER_NAME}\\n' > {WORKER_NAME_FILE}"]
    class_name = CLASS_FILE.rsplit("/", 1)[1]
    for part in parts:
        extra = "" if part == MAIN.name else f" -c {WORKER_NAME_FILE}"
        lines.append(f"echo 'checking {part}'")
        lines.append(f"python -m synapse.config -c {SHARED_FILE} -c {_class_dir(part)}/{class_name}{extra}")
    return "\n".join(lines) + "\n"


def config_check_job(settings: Settings, shared: ConfigFile, files: list[ConfigFile]) -> k8s.Manifest:
    parts = [f.part for f in files]
    digest = content_hash(shared.digest, *(f.digest for f in files))
    template = k8s.pod_template(
        settings,
        CHECK_COMPONENT,
        shared,
        files[0],
        Resources("100m", "256Mi", "1", "1Gi"),
        replication=False,
        media=False,
    )
    pod = template["spec"]
    container = pod["containers"][0]
    mounts: list[dict[str, Any]] = [m for m in container["volumeMounts"] if m["name"] != "config-class"]
    volumes: list[dict[str, Any]] = [v for v in pod["volumes"] if v["name"] != "config-class"]
    for f in files:
        mounts.append({"name": f"config-{f.part}", "mountPath": _class_dir(f.part), "readOnly": True})
        volumes.append(
            {
                "name": f"config-{f.part}",
                "configMap": {"name": f.configmap_name, "items": [{"key": "class.yaml", "path": "class.yaml"}]},
            }
        )
    container["volumeMounts"] = mounts
    pod["volumes"] = volumes
    one_shot(template, check_script(parts))
    assert any(m["mountPath"] == SECRETS_DIR for m in mounts) and any(m["mountPath"] == WORKER_NAME_DIR for m in mounts)
    template["metadata"]["annotations"] = {k8s.CONFIG_DIGEST_ANNOTATION: digest}
    # A new Synapse version must check the config again too: the name covers the image.
    return job(settings, "synapse-config-check", CHECK_COMPONENT, template, deadline=600)
