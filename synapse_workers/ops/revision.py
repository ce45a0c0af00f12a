"""What a stack deployed, as digests: the program's revision and each workload's pod template.

Exported as stack outputs so later runs (this stack's next `up`, prod's gate on staging) can compare
without the Pulumi engine's state. No secret and no config value goes in: only code and templates.
"""

from __future__ import annotations

import hashlib
import json

from synapse_workers.model.stack_config import PROJECT_DIR
from synapse_workers.plan import Plan

PROGRAM_FILES = ("Pulumi.yaml", "__main__.py", "requirements.txt", "pyproject.toml")
PROGRAM_PACKAGES = ("components", "synapse_workers")


def program_revision() -> str:
    """A digest of the program itself (its code fixes the config schema too), not of any stack's values."""
    digest = hashlib.sha256()
    paths = [PROJECT_DIR / name for name in PROGRAM_FILES]
    for package in PROGRAM_PACKAGES:
        paths += sorted((PROJECT_DIR / package).rglob("*.py"))
    for path in paths:
        digest.update(str(path.relative_to(PROJECT_DIR)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def template_digests(plan: Plan) -> dict[str, str]:
    """Per workload part, a digest of its pod template: it changes exactly when those pods roll."""
    return {
        w.part: hashlib.sha256(json.dumps(w.manifests[0]["spec"]["template"], sort_keys=True).encode()).hexdigest()[:16]
        for w in plan.workloads
    }
