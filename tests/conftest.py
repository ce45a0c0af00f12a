"""Shared test inputs: a valid stack config in the form the Pulumi CLI hands to a program."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import hypothesis  # noqa: F401  (imported at collection on purpose: see below)
import pytest

from synapse_workers.model.settings import SECRET_FILES, Settings, load_settings
from synapse_workers.model.stack_config import PROJECT_DIR


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A SIGTERM (a cancelled CI run, `make` stopped) ends the run as Ctrl-C does, so every fixture's
    teardown runs: the e2e tier's PostgreSQL, Redis and PgBouncer, the local cluster, the node. Python's
    default for SIGTERM is to die on the spot, which left them running."""
    signal.signal(signal.SIGTERM, _interrupt)


# Hypothesis is imported here, while no other thread runs, so that its pytest plugin's import at the
# terminal summary finds it loaded. On Python 3.11 two threads building ASTs at once corrupt a counter the
# interpreter shares (CPython gh-106905) and one of them fails with "SystemError: AST constructor recursion
# depth mismatch". A run of tests/node alone never imported Hypothesis, so pytest parsed its modules (to
# rewrite them) at the summary while another thread of the run was building an AST (3.11's traceback module
# parses the failing line of any traceback it prints), and that run failed at its summary (CI, round 7).
SECRET_KEYS = frozenset(f"synapse:{k}" for k in SECRET_FILES if k != "redisPassword")
"""Pulumi-secret config keys a stack without synapse:existingSecret needs."""


DUTIES_FROM_PHASE_3: dict[str, tuple[bool, int | None]] = {
    "pusher": (False, 10000),
    "background-worker": (True, None),
    "user-directory": (True, None),
    "appservice-sender": (True, None),
    "account-data-writer": (True, None),
    "push-rules-writer": (True, None),
    "device-lists-writer": (False, 10000),
}
"""Main's duties beyond the guide, from the README's table: (one instance only, CCU per replica). On from
the guide's phase 3; thread subscriptions stay off unless pinned (MSC4306 is off)."""


def secret_values() -> dict[str, str]:
    """Recognisable secret values, so a leak scan can look for them."""
    return {key: f"LEAKCHECK-{key.split(':')[1]}-7f3a" for key in sorted(SECRET_KEYS)}


def base_values(**overrides: Any) -> dict[str, str]:
    """A minimal valid stack config; keyword overrides are config keys without the namespace."""
    values: dict[str, Any] = {
        "ccu": "1000",
        "serverName": "example.org",
        # A server big enough for any load the tests size; the budget tests set their own limits.
        "postgres": {"host": "pg.example.org", "maxConnections": 262143},
        "redis": {"host": "redis.example.org"},
        "existingSecret": "synapse-secrets",
    }
    values.update(overrides)
    return {
        f"synapse:{k}": json.dumps(v) if isinstance(v, (dict, list)) else str(v)
        for k, v in values.items()
        if v is not None
    }


def secrets_folder(root: Path) -> Path:
    """`root/secrets` as the pods mount it: every secret file (placeholder values) and a real signing key
    (Synapse loads it while it reads its config)."""
    from signedjson.key import generate_signing_key, write_signing_keys  # noqa: PLC0415 (Synapse's own helper)

    secrets = root / "secrets"
    secrets.mkdir(parents=True)
    for file_name in SECRET_FILES.values():
        (secrets / file_name).write_text("x" * 32)
    with (secrets / "signing.key").open("w") as handle:
        write_signing_keys(handle, [generate_signing_key("a")])
    return secrets


def pulumi_project(folder: Path) -> Path:
    """Make `folder` a Pulumi project (its own `Pulumi.yaml`), which the commands look for as pulumi does."""
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", folder / "Pulumi.yaml")
    return folder


def settings_for(**overrides: Any) -> Settings:
    return load_settings("test", base_values(**overrides))


@pytest.fixture
def make_settings() -> Any:
    return settings_for
