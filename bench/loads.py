"""The stack both benchmarks measure: prod as shipped, at a given load."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def prod_values(ccu: int) -> tuple[dict[str, str], frozenset[str]]:
    """Prod's stack file at `ccu`, as the CLI hands it to the program."""
    from synapse_workers.model.stack_config import read_stack_file  # noqa: PLC0415

    values, secret_keys = read_stack_file("prod", ROOT / "Pulumi.prod.yaml")
    values["synapse:ccu"] = str(ccu)
    # 200,000 CCU opens ~21,000 Synapse connections at the HPA maximums: let PgBouncer take them.
    postgres = json.loads(values["synapse:postgres"])
    postgres["pooler"]["maxClientConnections"] = 100000
    values["synapse:postgres"] = json.dumps(postgres)
    return values, secret_keys
