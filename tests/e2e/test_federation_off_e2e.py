"""A homeserver with federation off, behind the generated router: what still has to work without it.

Main issues OpenID tokens (`/user/{userId}/openid/request_token`); integration managers, widgets and
call token services verify them at `/_matrix/federation/v1/openid/userinfo`. With federation off the
router refuses every other federation path, and main serves this one on its `openid` listener resource.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from synapse_workers.model.settings import SECRET_FILES
from synapse_workers.plan import Plan, build_plan
from synapse_workers.synapse.topology import CLIENT_PORT
from tests.conftest import settings_for
from tests.e2e.services import MAX_CONNECTIONS, Loopback, Postgres, Processes
from tests.e2e.topology import POOLER, SERVER_NAME, Homeserver, check_served_by, register, start_homeserver

pytestmark = pytest.mark.e2e


def federation_off_plan(loopback: Loopback) -> Plan:
    """The guide's classes at their floors, federation off (the default), behind PgBouncer."""
    return build_plan(
        settings_for(
            ccu=100,
            serverName=SERVER_NAME,
            postgres={"host": loopback.services, "port": 5432, "maxConnections": MAX_CONNECTIONS, "pooler": POOLER},
            redis={"host": loopback.services, "port": 6379},
        )
    )


@pytest.fixture(scope="module")
def homeserver(
    postgres: Postgres, redis: tuple[str, int], loopback: Loopback, processes: Processes, workdir: Path
) -> Homeserver:
    plan = federation_off_plan(loopback)
    assert not plan.settings.federation.enabled
    return start_homeserver(plan, postgres, loopback, processes, workdir)


def test_openid_tokens_main_issues_are_verified_through_the_router(
    homeserver: Homeserver, loopback: Loopback, processes: Processes, workdir: Path
) -> None:
    base = f"http://{loopback.services}:{CLIENT_PORT}"
    secret = (workdir / "secrets" / SECRET_FILES["registrationSharedSecret"]).read_text()
    alice = register(base, secret, "alice")
    session = requests.Session()
    session.trust_env = False
    issued = session.post(
        f"{base}/_matrix/client/v3/user/{quote(alice['user_id'])}/openid/request_token",
        json={},
        headers={"Authorization": f"Bearer {alice['access_token']}"},
        timeout=30,
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    assert issued.json()["matrix_server_name"] == SERVER_NAME

    userinfo = session.get(f"{base}/_matrix/federation/v1/openid/userinfo", params={"access_token": token}, timeout=30)
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json() == {"sub": alice["user_id"]}
    forged = session.get(
        f"{base}/_matrix/federation/v1/openid/userinfo", params={"access_token": "not-" + token}, timeout=30
    )
    assert forged.status_code == 401, forged.text
    # Every other federation path is still refused by the router itself.
    refused = session.get(f"{base}/_matrix/federation/v1/version", timeout=30)
    assert refused.status_code == 404
    assert "M_UNRECOGNIZED" not in refused.text, "the 404 must come from the router, not a Synapse process"
    check_served_by(
        processes,
        homeserver,
        (
            (r"POST /_matrix/client/v3/user/.*/openid/request_token", "main"),
            (r"GET /_matrix/federation/v1/openid/userinfo", "main"),
        ),
        "the router sends it to",
    )
