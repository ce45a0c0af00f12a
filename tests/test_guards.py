"""The prod guards: main restarts only in a maintenance window, and prod deploys only what staging has."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from synapse_workers.cli.mock_runtime import RecordingMocks, run_program
from synapse_workers.model.settings import load_settings
from synapse_workers.ops.revision import program_revision, template_digests
from synapse_workers.plan import build_plan
from tests.conftest import base_values
from tests.mocks import stack_values

GUARDED: dict[str, Any] = {"requireMaintenanceWindow": "true", "stagingGate": "staging"}


def _digests(**overrides: Any) -> dict[str, str]:
    """What a prod deployment with these settings exported (labels name the stack, so prod it is)."""
    return template_digests(build_plan(load_settings("prod", base_values(**overrides))))


def _run(values: dict[str, str], outputs: dict[str, dict[str, Any]]) -> RecordingMocks:
    """Run prod with StackReferences answered from `outputs` (by stack name's last part)."""
    mocks = RecordingMocks(lambda name: outputs.get(name.rsplit("/", 1)[1], {}))
    run_program("prod", values, mocks=mocks)
    return mocks


def _kubernetes(mocks: RecordingMocks) -> list[str]:
    return [r.name for r in mocks.registered if r.is_kubernetes]


def test_restart_of_main_refused_outside_a_window_and_nothing_registered() -> None:
    before = _digests(ccu="3000")
    values = base_values(ccu="3000", messagesPerSecond="400", **GUARDED)  # more persisters: main restarts
    outputs: dict[str, dict[str, Any]] = {
        "prod": {"podTemplateDigests": before},
        "staging": {"revision": program_revision()},
    }
    mocks = RecordingMocks(lambda name: outputs[name.rsplit("/", 1)[1]])
    with pytest.raises(pulumi.RunError) as caught:
        run_program("prod", values, mocks=mocks)
    message = str(caught.value)
    assert "restarts synapse-main" in message and "event-persister" in message
    assert "pulumi config set synapse:maintenanceWindow true" in message
    assert _kubernetes(mocks) == []


def test_restart_of_main_allowed_in_a_window() -> None:
    before = _digests(ccu="3000")
    values = base_values(ccu="3000", messagesPerSecond="400", maintenanceWindow="true", **GUARDED)
    mocks = _run(values, {"prod": {"podTemplateDigests": before}, "staging": {"revision": program_revision()}})
    assert "synapse-main" in _kubernetes(mocks)


def test_change_that_leaves_main_alone_needs_no_window() -> None:
    before = _digests(ccu="3000")
    values = base_values(ccu="3100", **GUARDED)  # synchrotrons only
    mocks = _run(values, {"prod": {"podTemplateDigests": before}, "staging": {"revision": program_revision()}})
    assert "synapse-synchrotron" in _kubernetes(mocks)


def test_first_deploy_needs_no_window() -> None:
    mocks = _run(base_values(**GUARDED), {"staging": {"revision": program_revision()}})
    assert "synapse-main" in _kubernetes(mocks)


@pytest.mark.parametrize("staging_revision", [None, "0123456789abcdef"])
def test_prod_refuses_a_revision_staging_has_not_deployed(staging_revision: str | None) -> None:
    staging = {} if staging_revision is None else {"revision": staging_revision}
    mocks = RecordingMocks(lambda name: staging if name.endswith("/staging") else {})
    with pytest.raises(pulumi.RunError, match="has not been deployed to 'staging'"):
        run_program("prod", base_values(stagingGate="staging"), mocks=mocks)
    assert _kubernetes(mocks) == []
    references = [r.inputs["name"] for r in mocks.registered if r.type == "pulumi:pulumi:StackReference"]
    assert references == ["organization/synapse-workers/staging"]


def test_gate_can_name_another_stack_in_full() -> None:
    mocks = _run(base_values(stagingGate="acme/synapse-workers/canary"), {"canary": {"revision": program_revision()}})
    assert "synapse-main" in _kubernetes(mocks)


def test_staging_has_no_guards() -> None:
    values, secret_keys = stack_values("staging")
    mocks = RecordingMocks()
    run_program("staging", values, secret_keys, mocks=mocks)
    assert not [r for r in mocks.registered if r.type == "pulumi:pulumi:StackReference"]
    assert _kubernetes(mocks)


def test_prod_stack_file_turns_both_guards_on() -> None:
    values, _ = stack_values("prod")
    assert values["synapse:requireMaintenanceWindow"] == "true"
    assert values["synapse:stagingGate"] == "staging"


def test_template_digests_change_exactly_with_the_pod_templates() -> None:
    a, b = _digests(ccu="3000"), _digests(ccu="3000", messagesPerSecond="400")
    assert a["main"] != b["main"] and a["synchrotron"] != b["synchrotron"]
    c = _digests(ccu="3100")
    assert a == c
