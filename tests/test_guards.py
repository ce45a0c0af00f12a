"""The prod guards: main restarts only in a maintenance window, and prod deploys only what staging has.

Both read what the stacks' states say is deployed (the workload annotations the provider applied), fed
here from a table; `tests/engine` runs them against the real engine, after failed updates too.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.deployed import FixedStates
from synapse_workers.cli.mock_runtime import RecordingMocks, run_program
from synapse_workers.model.settings import load_settings
from synapse_workers.ops.guards import (
    DIGEST_ANNOTATION,
    REVISION_ANNOTATION,
    Deployed,
    deployed_from_state,
    gate_refusal,
)
from synapse_workers.ops.revision import program_revision, template_digests
from synapse_workers.plan import build_plan
from tests.conftest import base_values, settings_for
from tests.mocks import stack_values

GUARDED: dict[str, Any] = {"requireMaintenanceWindow": "true", "stagingGate": "staging"}


def _digests(**overrides: Any) -> dict[str, str]:
    """What a prod deployment with these settings runs (labels name the stack, so prod it is)."""
    return template_digests(build_plan(load_settings("prod", base_values(**overrides))))


def staged(revision: str | None = None, result: str = "succeeded") -> Deployed:
    return Deployed(
        revisions={"main": revision or program_revision(), "synchrotron": revision or program_revision()},
        last_result=result,
    )


def _run(values: dict[str, str], states: FixedStates) -> RecordingMocks:
    mocks = RecordingMocks()
    run_program("prod", values, mocks=mocks, states=states)
    return mocks


def _kubernetes(mocks: RecordingMocks) -> list[str]:
    return [r.name for r in mocks.registered if r.is_kubernetes]


def test_restart_of_main_refused_outside_a_window_and_nothing_registered() -> None:
    deployed = Deployed(digests=_digests(ccu="3000"), last_result="succeeded")
    values = base_values(ccu="3000", messagesPerSecond="400", **GUARDED)  # more persisters: main restarts
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_program("prod", values, mocks=mocks, states=FixedStates({"prod": deployed, "staging": staged()}))
    message = str(caught.value)
    assert "restarts synapse-main" in message and "event-persister" in message
    assert "pulumi config set synapse:maintenanceWindow true" in message
    assert "\n" not in message
    assert _kubernetes(mocks) == []


def test_restart_of_main_allowed_in_a_window() -> None:
    deployed = Deployed(digests=_digests(ccu="3000"))
    values = base_values(ccu="3000", messagesPerSecond="400", maintenanceWindow="true", **GUARDED)
    mocks = _run(values, FixedStates({"prod": deployed, "staging": staged()}))
    assert "synapse-main" in _kubernetes(mocks)


def test_change_that_leaves_main_alone_needs_no_window() -> None:
    deployed = Deployed(digests=_digests(ccu="3000"))
    values = base_values(ccu="3100", **GUARDED)  # synchrotrons only
    mocks = _run(values, FixedStates({"prod": deployed, "staging": staged()}))
    assert "synapse-synchrotron" in _kubernetes(mocks)


def test_first_deploy_needs_no_window() -> None:
    mocks = _run(base_values(**GUARDED), FixedStates({"staging": staged()}))
    assert "synapse-main" in _kubernetes(mocks)


@pytest.mark.parametrize(
    ("gate", "fragment"),
    [
        (Deployed(), "it has no deployed revision"),
        (staged("0123456789abcdef"), "it last deployed 0123456789abcdef"),
        (staged(result="failed"), "the last update of 'staging' failed"),
        (
            Deployed(revisions={"main": program_revision(), "synchrotron": "0123456789abcdef"}),
            "only some of its workloads run it; others still run 0123456789abcdef",
        ),
    ],
)
def test_prod_refuses_what_staging_has_not_deployed(gate: Deployed, fragment: str) -> None:
    states = FixedStates({"staging": gate})
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError, match="staging") as caught:
        run_program("prod", base_values(stagingGate="staging"), mocks=mocks, states=states)
    assert fragment in str(caught.value)
    assert _kubernetes(mocks) == []
    # its own state (for the configs it keeps), then the gate's
    assert states.asked == ["organization/synapse-workers/prod", "organization/synapse-workers/staging"]


def test_a_gate_stack_that_does_not_exist_is_one_line() -> None:
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        run_program(
            "prod",
            base_values(stagingGate="staging"),
            mocks=mocks,
            states=FixedStates({}, absent=frozenset({"staging"})),
        )
    assert str(caught.value) == (
        "stack 'prod': a guard cannot read what is deployed: "
        "stack 'organization/synapse-workers/staging' does not exist in this backend"
    )
    assert _kubernetes(mocks) == []


def test_gate_can_name_another_stack_in_full() -> None:
    states = FixedStates({"canary": staged()})
    mocks = _run(base_values(stagingGate="acme/synapse-workers/canary"), states)
    assert "synapse-main" in _kubernetes(mocks)
    assert states.asked == ["organization/synapse-workers/prod", "acme/synapse-workers/canary"]


def test_staging_has_no_guards() -> None:
    """No other stack is read; its own state is, for the earlier config contents it keeps."""
    values, secret_keys = stack_values("staging")
    states = FixedStates({})
    mocks = RecordingMocks()
    run_program("staging", values, secret_keys, mocks=mocks, states=states)
    assert states.asked == ["organization/synapse-workers/staging"]
    assert _kubernetes(mocks)


def test_its_own_state_unreadable_is_one_line_and_registers_nothing() -> None:
    values, secret_keys = stack_values("staging")
    mocks = RecordingMocks()
    with pytest.raises(pulumi.RunError) as caught:
        states = FixedStates({}, absent=frozenset({"staging"}))
        run_program("staging", values, secret_keys, mocks=mocks, states=states)
    assert str(caught.value) == (
        "stack 'staging': cannot read what it has deployed: "
        "stack 'organization/synapse-workers/staging' does not exist in this backend"
    )
    assert _kubernetes(mocks) == []


def test_prod_stack_file_turns_both_guards_on() -> None:
    values, _ = stack_values("prod")
    assert values["synapse:requireMaintenanceWindow"] == "true"
    assert values["synapse:stagingGate"] == "staging"


def test_template_digests_change_exactly_with_the_pod_templates() -> None:
    a, b = _digests(ccu="3000"), _digests(ccu="3000", messagesPerSecond="400")
    assert a["main"] != b["main"] and a["synchrotron"] != b["synchrotron"]
    c = _digests(ccu="3100")
    assert a == c


def test_workloads_carry_what_the_guards_read_back() -> None:
    """Each Synapse workload object is annotated with its template digest and the revision; the router and
    PgBouncer are not Synapse and carry neither. Read back from an exported state, they give the same."""
    values, secret_keys = stack_values("prod")
    mocks = RecordingMocks()
    run_program("prod", values, secret_keys, mocks=mocks)
    workloads = [
        r.inputs for r in mocks.registered if r.is_kubernetes and r.inputs["kind"] in ("StatefulSet", "Deployment")
    ]
    state = {
        "resources": [{"type": f"kubernetes:apps/v1:{w['kind']}", "outputs": w} for w in workloads]
        + [{"type": "kubernetes:apps/v1:StatefulSet", "delete": True, "outputs": {"metadata": {"labels": {}}}}]
    }
    deployed = deployed_from_state(state, "succeeded")
    plan = build_plan(load_settings("prod", values, secret_keys))
    assert deployed.digests == dict(sorted(template_digests(plan).items()))
    assert set(deployed.revisions.values()) == {program_revision()}
    router = next(w for w in workloads if w["metadata"]["name"] == "synapse-router")
    assert DIGEST_ANNOTATION not in router["metadata"].get("annotations", {})
    main = next(w for w in workloads if w["metadata"]["name"] == "synapse-main")
    assert REVISION_ANNOTATION not in main["spec"]["template"]["metadata"]["annotations"]


def test_gate_refusal_is_pure() -> None:
    settings = settings_for(stagingGate="staging")
    assert gate_refusal(settings, staged(), program_revision()) is None
    assert gate_refusal(settings_for(), Deployed(), "x") is None  # no gate configured
