"""A key that names a secret, set in plain text, is refused without its value: in any namespace or
letter case, nested in an object, through every command that reads a stack file and through the
program under the Pulumi runtime. Each case plants a recognisable value and looks for it everywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest

from synapse_workers.cli.mock_runtime import run_program
from synapse_workers.model.errors import ConfigError, names_secret
from synapse_workers.model.settings import load_settings
from synapse_workers.model.stack_config import PROJECT_DIR
from synapse_workers.ops.files import LOCK_FILE
from tests.conftest import base_values, pulumi_project

LEAK = "LEAKCHECK-9d1e-plain"

PLAIN_SECRETS = [
    # (the key as written in the stack file, its value, the key the refusal names)
    ("synapse-workers:macaroonSecretKey", LEAK, "synapse-workers:macaroonSecretKey"),
    ("SYNAPSE:MacaroonSecretKey", LEAK, "SYNAPSE:MacaroonSecretKey"),
    ("synapse:MACAROON_SECRET_KEY", LEAK, "synapse:MACAROON_SECRET_KEY"),
    ("synapse:macaroonSecretKey", LEAK, "synapse:macaroonSecretKey"),
    ("pulumi:redisPassword", LEAK, "pulumi:redisPassword"),
    ("kubernetes:apiToken", LEAK, "kubernetes:apiToken"),
    ("synapse:signingKey", LEAK, "synapse:signingKey"),
    ("synapse:extraPostgres", {"host": "pg", "password": LEAK}, "synapse:extraPostgres.password"),
    ("other:deep", {"a": [{"Client_Secret": LEAK}]}, "other:deep.a[0].Client_Secret"),
]


def stack_file(folder: Path, key: str, value: object) -> None:
    text = (PROJECT_DIR / "Pulumi.staging.yaml").read_text()
    line = f"  {key}: {json.dumps(value)}\n"
    (folder / "Pulumi.staging.yaml").write_text(text.replace("config:\n", "config:\n" + line, 1))
    pulumi_project(folder)


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synapse_workers", *args, "-C", str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(PROJECT_DIR)},
        check=False,
    )


COMMANDS = [
    ("plan", "--stack", "staging"),
    ("plan", "--stack", "staging", "--json", "--to-ccu", "600"),
    ("render", "--stack", "staging", "--out", "OUT"),
    ("scale", "--stack", "staging", "--ccu", "600", "--reason", "r"),
    ("recommend", "--stack", "staging", "--prometheus", "http://127.0.0.1:9"),
]


@pytest.mark.parametrize(("key", "value", "named"), PLAIN_SECRETS, ids=[k for k, _, _ in PLAIN_SECRETS])
def test_every_command_refuses_a_plain_secret_without_showing_it(
    tmp_path: Path, key: str, value: object, named: str
) -> None:
    stack_file(tmp_path, key, value)
    before = (tmp_path / "Pulumi.staging.yaml").read_bytes()
    for command in COMMANDS:
        args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
        done = cli(tmp_path, *args)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert LEAK not in done.stdout + done.stderr, command
        assert done.stderr.startswith(f"error: stack 'staging': {named} = "), (command, done.stderr)
        assert "given in plain text" in done.stderr and "--secret" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert (tmp_path / "Pulumi.staging.yaml").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != LOCK_FILE) == ["Pulumi.staging.yaml", "Pulumi.yaml"]


def test_names_that_name_a_secret_object_or_a_path_are_not_secrets(tmp_path: Path) -> None:
    """The control: `existingSecret` and `router.tlsSecret` are Kubernetes object names, and the
    shipped stacks (which use both kinds of key) still plan."""
    assert not names_secret("synapse:existingSecret") and not names_secret("synapse:router.tlsSecret")
    assert not names_secret("--bearer-token-file") and not names_secret("macaroon_secret_key_path")
    assert names_secret("SYNAPSE:MacaroonSecretKey") and names_secret("synapse:redis.password")
    shutil.copy(PROJECT_DIR / "Pulumi.staging.yaml", tmp_path / "Pulumi.staging.yaml")
    pulumi_project(tmp_path)
    assert cli(tmp_path, "plan", "--stack", "staging").returncode == 0


@pytest.mark.parametrize(("key", "value", "named"), PLAIN_SECRETS, ids=[k for k, _, _ in PLAIN_SECRETS])
def test_the_program_under_the_pulumi_runtime_refuses_it_too(key: str, value: object, named: str) -> None:
    values = {**base_values(), key: value if isinstance(value, str) else json.dumps(value)}
    with pytest.raises(pulumi.RunError) as caught:
        run_program("prod", values, frozenset())
    assert LEAK not in str(caught.value)
    assert f"{named} = " in str(caught.value) and "given in plain text" in str(caught.value)


@pytest.mark.parametrize(
    "values",
    [
        {"SYNAPSE:MacaroonSecretKey": LEAK},  # refused as an unknown namespace
        {"synapse:macaroonsecretkey": LEAK},  # refused as an unknown key
        {"synapse:postgres": json.dumps({"host": "pg", "password": LEAK})},  # refused as an unknown field
        {"synapse:redis": json.dumps({"host": 5, "authToken": LEAK})},  # refused for the host, object shown
    ],
)
def test_validation_errors_never_carry_a_secret_value(values: dict[str, str]) -> None:
    """Below the stack-file check: whatever refuses the value, the message cannot carry it."""
    with pytest.raises(ConfigError) as caught:
        load_settings("prod", {**base_values(), **values})
    assert LEAK not in str(caught.value)
    assert LEAK not in json.dumps(caught.value.value)
