"""Running the program under Pulumi's mocks, and reading back what it registered."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any

from synapse_workers.cli.mock_runtime import Registered, run_program
from synapse_workers.model.stack_config import PROJECT_DIR, read_stack_file


@dataclass(frozen=True)
class Run:
    registered: list[Registered]

    def objects(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [r.inputs for r in self.registered if r.is_kubernetes and (kind is None or r.inputs["kind"] == kind)]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.objects(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} registered"
        return found[0]

    def resource(self, kind: str, name: str) -> Registered:
        return next(
            r
            for r in self.registered
            if r.is_kubernetes and r.inputs["kind"] == kind and r.inputs["metadata"]["name"] == name
        )

    def configmap_text(self, name: str) -> str:
        data = self.one("ConfigMap", name)["data"]
        return str(next(iter(data.values())))


def run(stack: str, values: Mapping[str, str], secret_keys: Set[str] = frozenset()) -> Run:
    """Run with the prod guards satisfied: staging deployed this revision, no earlier deployment."""
    return Run(run_program(stack, values, secret_keys))


def stack_values(stack: str, **overrides: str) -> tuple[dict[str, str], frozenset[str]]:
    values, secret_keys = read_stack_file(stack, PROJECT_DIR / f"Pulumi.{stack}.yaml")
    values.update({f"synapse:{k}": v for k, v in overrides.items()})
    return values, secret_keys
