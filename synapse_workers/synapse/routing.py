"""Which worker class serves which request path (pure): the routing table and its lookup.

Workers only take load off main when the reverse proxy sends each request to the class that serves it,
so the routing table lives here, as data, in one place: the `plan` command lists it, the router config
(`kube/haproxy.py`) is generated from it, and the tests check it against Synapse's worker documentation.

Sources, read 2026 for Synapse 1.163 (patterns are Synapse's own, written as in `docs/workers.md`):
- `docs/workers.md` in element-hq/synapse: the `synapse.app.generic_worker` endpoint list (sync,
  client, encryption, registration, event sending, federation), the GET-only list, the stream-writer
  sections (typing, to_device, receipts, presence) and the media repository section;
- the Element Server Suite chart (`element-hq/ess-helm`, `_synapse_details.tpl`), which keeps the same
  table per worker type; `SlidingSyncRestServlet` (MSC4186 `/sync`), registered on every process.

What the table does not route goes to main, which serves every client endpoint except media (main runs
with `enable_media_repo: false`). Classes that serve no client HTTP (event persisters, federation
senders) never appear as targets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Protocol

from synapse_workers.model.settings import Settings
from synapse_workers.model.sizing import ClassSize
from synapse_workers.model.worker_classes import MAIN
from synapse_workers.synapse.topology import Topology


class Routed(Protocol):
    """What routing needs of a plan: the stack's settings, its class sizes and its pods. The plan
    satisfies this by its shape, so routing stays below the plan that uses it."""

    @property
    def settings(self) -> Settings: ...

    @property
    def sizes(self) -> tuple[ClassSize, ...]: ...

    @property
    def topology(self) -> Topology: ...


BalanceKey = Literal["user", "room", "origin"]
"""What a request is hashed on when its class runs several pods:
`user`: the access token (Authorization header, else the `access_token` query parameter), so one user's
`/sync` stays on one synchrotron, whose caches hold that user's state (Synapse's docs);
`room`: the room id in the path, so one room's pagination and writes stay on one process (the docs say
pagination must, and event sending may, be balanced by room);
`origin`: the origin server in a federation request's X-Matrix Authorization, for inbound transactions:
behind an Ingress the TCP source is the Ingress pod, so the docs' "by source IP" would pile every
remote server onto as few workers as there are Ingress pods."""

FIRST_POD_SUFFIX = "-first"
"""A router backend holding only a class's first pod is named after the class with this suffix."""

_V = "(api/v1|r0|v3|unstable)"
_V3 = "(r0|v3|unstable)"


@dataclass(frozen=True)
class Route:
    """One path pattern and the class that serves it."""

    pattern: str
    """A regular expression on the request path (no query string), as Synapse's docs write them."""
    target: str
    """A worker class name, or `main`."""
    key: BalanceKey = "user"
    methods: tuple[str, ...] = ()
    """Only these HTTP methods take this route (empty: all); the rest go on down the table."""
    federation: bool = False
    """Routed only when federation is enabled; without it no process serves these paths."""
    why: str = ""
    first_pod: bool = False
    """Only the target class's first pod takes it: the one of its pods that writes a stream the others
    do not (`WorkerClass.first_pod_writes`)."""

    @property
    def backend(self) -> str:
        """The router backend: the class, or its first pod alone."""
        return f"{self.target}{FIRST_POD_SUFFIX}" if self.first_pod else self.target

    def matches(self, method: str, path: str) -> bool:
        if self.methods and method.upper() not in self.methods:
            return False
        return re.search(self.pattern, path) is not None


def _routes(target: str, key: BalanceKey, why: str, *patterns: str, methods: tuple[str, ...] = ()) -> list[Route]:
    return [Route(p, target, key, methods, False, why) for p in patterns]


def _federation(target: str, key: BalanceKey, why: str, *patterns: str) -> list[Route]:
    return [Route(p, target, key, (), True, why) for p in patterns]


def _first_pod(target: str, why: str, *patterns: str) -> list[Route]:
    return [Route(p, target, "user", (), False, why, first_pod=True) for p in patterns]


# Order matters: the first route that matches wins, as in the HAProxy frontend. Stream writers and media
# come first, so the generic worker's broad patterns never shadow them.
ROUTES: tuple[Route, ...] = (
    *_routes(
        "synchrotron",
        "user",
        "sync requests (docs/workers.md, generic_worker: sync requests; sticky per user)",
        # `unstable` too: Synapse registers every one of these under it as well (`client_patterns`'
        # default in rest/client/_base.py; sync.py SyncRestServlet, events.py, initial_sync.py, room.py
        # RoomInitialSyncRestServlet); docs/workers.md's nginx example leaves it out, to main.
        f"^/_matrix/client/{_V3}/sync$",
        f"^/_matrix/client/{_V}/events$",
        f"^/_matrix/client/{_V}/initialSync$",
        f"^/_matrix/client/{_V}/rooms/[^/]+/initialSync$",
        "^/_matrix/client/unstable/org.matrix.simplified_msc3575/sync$",
    ),
    *_routes(
        "typing-writer",
        "user",
        "the typing stream writer (docs/workers.md: the `typing` stream)",
        f"^/_matrix/client/{_V}/rooms/.*/typing",
    ),
    *_routes(
        "todevice-writer",
        "user",
        "the to_device stream writer (docs/workers.md: the `to_device` stream)",
        f"^/_matrix/client/{_V3}/sendToDevice/",
    ),
    *_routes(
        "receipts-writer",
        "room",
        "a receipts stream writer (docs/workers.md: the `receipts` stream, several writers)",
        f"^/_matrix/client/{_V3}/rooms/.*/receipt",
        f"^/_matrix/client/{_V3}/rooms/.*/read_markers",
    ),
    *_routes(
        "presence-writer",
        "user",
        "the presence stream writer (docs/workers.md: the `presence` stream)",
        f"^/_matrix/client/{_V}/presence/",
    ),
    *_first_pod(
        "media-repository",
        "media admin calls that (un)quarantine: they write the `quarantined_media_changes` stream, which only "
        "the first media pod writes (synapse/rest/admin/media.py; docs/workers.md: that stream)",
        "^/_synapse/admin/v1/room/[^/]*/media/quarantine$",
        "^/_synapse/admin/v1/quarantine_media/[^/]*$",
        "^/_synapse/admin/v1/user/[^/]*/media/quarantine$",
        "^/_synapse/admin/v1/media/(quarantine|unquarantine)/[^/]*/[^/]*$",
    ),
    *_routes(
        "media-repository",
        "user",
        "media (docs/workers.md: synapse.app.media_repository; main runs without the media repo). Not the docs'"
        " /_synapse/media/: Synapse 1.163 mounts nothing there (app/generic_worker.py, media resource)",
        "^/_matrix/media/",
        "^/_matrix/client/v1/media/",
        "^/_synapse/admin/v1/purge_media_cache$",
        "^/_synapse/admin/v1/room/.*/media.*$",
        "^/_synapse/admin/v1/media/.*$",
        "^/_synapse/admin/v1/users/.*/media$",
    ),
    *_federation(
        "media-repository",
        "user",
        "federation media (docs/workers.md: synapse.app.media_repository)",
        "^/_matrix/federation/v1/media/",
    ),
    *_routes(
        "account-data-writer",
        "user",
        "the account_data stream writer (docs/workers.md: the `account_data` stream); without it, GETs go to "
        "generic workers and writes to main",
        f"^/_matrix/client/{_V3}/.*/tags",
        f"^/_matrix/client/{_V3}/.*/account_data",
    ),
    *_routes(
        "push-rules-writer",
        "user",
        "the push_rules stream writer (docs/workers.md: the `push_rules` stream)",
        f"^/_matrix/client/{_V}/pushrules/",
    ),
    *_routes(
        "device-lists-writer",
        "user",
        "a device_lists stream writer (docs/workers.md: the `device_lists` stream, several writers)",
        # The versions Synapse registers (see the generic worker's copy below), not the docs' wider ones.
        f"^/_matrix/client/{_V3}/delete_devices$",
        f"^/_matrix/client/{_V3}/devices(/|$)",
        f"^/_matrix/client/{_V3}/keys/upload",
        "^/_matrix/client/(v3|unstable)/keys/device_signing/upload$",
        f"^/_matrix/client/{_V3}/keys/signatures/upload$",
    ),
    *_routes(
        "thread-subscriptions-writer",
        "user",
        "a thread_subscriptions stream writer: Synapse's MSC4306/MSC4308 servlets "
        "(synapse/rest/client/thread_subscriptions.py)",
        "^/_matrix/client/unstable/io.element.msc4306/rooms/[^/]*/thread/[^/]*/subscription$",
        "^/_matrix/client/unstable/io.element.msc4308/thread_subscriptions$",
    ),
    *_routes(
        "user-directory",
        "user",
        "the user directory worker (docs/workers.md: updating the user directory)",
        f"^/_matrix/client/{_V3}/user_directory/search$",
    ),
    *_routes(
        "generic-worker",
        "room",
        "room-bound client requests (docs/workers.md: balance event sending and pagination by room)",
        f"^/_matrix/client/{_V}/rooms/.*/joined_members$",
        f"^/_matrix/client/{_V}/rooms/.*/context/.*$",
        f"^/_matrix/client/{_V}/rooms/.*/members$",
        f"^/_matrix/client/{_V}/rooms/.*/state$",
        "^/_matrix/client/v1/rooms/.*/hierarchy$",
        "^/_matrix/client/(v1|unstable)/rooms/.*/relations/",
        "^/_matrix/client/v1/rooms/.*/threads$",
        f"^/_matrix/client/{_V}/rooms/.*/event/",
        "^/_matrix/client/v1/rooms/.*/timestamp_to_event$",
        # No api/v1: RoomAliasListServlet registers (r0|v3) and unstable/org.matrix.msc2432 (rest/client/room.py).
        "^/_matrix/client/(r0|v3|unstable/.*)/rooms/.*/aliases",
        f"^/_matrix/client/{_V}/rooms/.*/redact",
        f"^/_matrix/client/{_V}/rooms/.*/send",
        f"^/_matrix/client/{_V}/rooms/.*/state/",
        # (/|$): the PUT form with a transaction id (room.py RoomMembershipRestServlet, register_txn_path).
        f"^/_matrix/client/{_V}/rooms/.*/(join|invite|leave|ban|unban|kick)(/|$)",
        f"^/_matrix/client/{_V}/rooms/.*/messages$",
    ),
    *_routes(
        "generic-worker",
        "user",
        "client requests any worker serves (docs/workers.md, synapse.app.generic_worker)",
        # (/|$): the PUT form with a transaction id (rest/client/room.py RoomCreateRestServlet).
        f"^/_matrix/client/{_V}/createRoom(/|$)",
        f"^/_matrix/client/{_V}/publicRooms$",
        "^/_matrix/client/unstable/im.nheko.summary/summary/.*$",
        # The other two forms RoomSummaryRestServlet registers (rest/client/room.py).
        "^/_matrix/client/unstable/im.nheko.summary/rooms/.*/summary$",
        "^/_matrix/client/v1/room_summary/.*$",
        # GET /events/{eventId} (rest/client/events.py EventRestServlet, registered on workers).
        f"^/_matrix/client/{_V}/events/",
        # Registered on workers (rest/client/appservice_ping.py; rest/client/delayed_events.py keeps
        # only restart and the reads on workers; rest/admin/__init__.py UserRestServletV2Get).
        "^/_matrix/client/(v1|unstable)/appservice/.*/ping$",
        "^/_matrix/client/unstable/org.matrix.msc4140/delayed_events/[^/]+/restart$",
        f"^/_matrix/client/{_V3}/account/3pid$",
        f"^/_matrix/client/{_V3}/account/whoami$",
        f"^/_matrix/client/{_V3}/account/deactivate$",
        f"^/_matrix/client/{_V3}/delete_devices$",
        # No api/v1 on devices, signatures or knock; device_signing is v3 only (rest/client/devices.py,
        # keys.py SignaturesUploadServlet, SigningKeyUploadServlet releases=("v3",), knock.py).
        f"^/_matrix/client/{_V3}/devices(/|$)",
        "^/_matrix/client/versions$",
        f"^/_matrix/client/{_V}/voip/turnServer$",
        f"^/_matrix/client/{_V}/joined_rooms$",
        f"^/_matrix/client/{_V}/search$",
        f"^/_matrix/client/{_V3}/user/.*/filter(/|$)",
        f"^/_matrix/client/{_V}/directory/room/.*$",
        f"^/_matrix/client/{_V3}/capabilities$",
        f"^/_matrix/client/{_V3}/notifications$",
        "^/_synapse/admin/v1/rooms/[^/]+$",
        f"^/_matrix/client/{_V3}/keys/query$",
        f"^/_matrix/client/{_V3}/keys/changes$",
        f"^/_matrix/client/{_V3}/keys/claim$",
        f"^/_matrix/client/{_V3}/room_keys/",
        f"^/_matrix/client/{_V3}/keys/upload",
        "^/_matrix/client/(v3|unstable)/keys/device_signing/upload$",
        f"^/_matrix/client/{_V3}/keys/signatures/upload$",
        f"^/_matrix/client/{_V}/login$",
        f"^/_matrix/client/{_V3}/register$",
        f"^/_matrix/client/{_V3}/register/available$",
        "^/_matrix/client/(v1|unstable)/register/m.login.registration_token/validity$",
        f"^/_matrix/client/{_V3}/password_policy$",
        f"^/_matrix/client/{_V}/join/",
        f"^/_matrix/client/{_V3}/knock/",
        f"^/_matrix/client/{_V}/profile/",
        f"^/_matrix/client/{_V3}/user_directory/search$",
    ),
    *_routes(
        "generic-worker",
        "user",
        "GET-only on workers (docs/workers.md); writes stay on main, the writer of these streams here",
        f"^/_matrix/client/{_V}/pushrules/",
        "^/_matrix/client/unstable/org.matrix.msc4140/delayed_events",
        f"^/_matrix/client/{_V3}/.*/tags",
        f"^/_matrix/client/{_V3}/.*/account_data",
        methods=("GET",),
    ),
    *_routes(
        "generic-worker",
        "user",
        "reads a worker serves; writes stay on main (rest/admin/__init__.py: UserRestServletV2Get on workers)",
        "^/_synapse/admin/v2/users/[^/]+$",
        methods=("GET",),
    ),
    *_federation(
        "generic-worker",
        "origin",
        "inbound federation transactions, by origin server (docs/workers.md says source IP; see BalanceKey)",
        "^/_matrix/federation/v1/send/",
    ),
    *_federation(
        "generic-worker",
        "user",
        "federation requests (docs/workers.md, synapse.app.generic_worker)",
        "^/_matrix/federation/v1/version$",
        "^/_matrix/federation/v1/event/",
        "^/_matrix/federation/v1/state/",
        "^/_matrix/federation/v1/state_ids/",
        "^/_matrix/federation/v1/backfill/",
        "^/_matrix/federation/v1/get_missing_events/",
        "^/_matrix/federation/v1/publicRooms",
        "^/_matrix/federation/v1/query/",
        "^/_matrix/federation/v1/make_join/",
        "^/_matrix/federation/v1/make_leave/",
        "^/_matrix/federation/(v1|v2)/send_join/",
        "^/_matrix/federation/(v1|v2)/send_leave/",
        "^/_matrix/federation/v1/make_knock/",
        "^/_matrix/federation/v1/send_knock/",
        "^/_matrix/federation/(v1|v2)/invite/",
        "^/_matrix/federation/v1/event_auth/",
        "^/_matrix/federation/v1/timestamp_to_event/",
        "^/_matrix/federation/v1/exchange_third_party_invite/",
        "^/_matrix/federation/v1/user/devices/",
        # Registered on workers though the docs do not list them; the client forms are on their list.
        "^/_matrix/federation/v1/user/keys/(query|claim)$",
        "^/_matrix/key/v2/query",
        "^/_matrix/federation/v1/hierarchy/",
        # Registered on workers, not in docs/workers.md (federation/transport/server/federation.py
        # RoomComplexityServlet, On3pidBindServlet; __init__.py OpenIdUserInfo).
        "^/_matrix/federation/unstable/rooms/.*/complexity$",
        "^/_matrix/federation/v1/3pid/onbind$",
        "^/_matrix/federation/v1/openid/userinfo$",
    ),
)

FEDERATION_PATHS: tuple[str, ...] = ("^/_matrix/federation/", "^/_matrix/key/")
"""Refused at the router (404) when federation is disabled, but for `OPENID_PATHS`."""
OPENID_PATHS: tuple[str, ...] = ("^/_matrix/federation/v1/openid/userinfo$",)
"""Served with federation off too, by main's `openid` listener resource (config_files.main_config):
no route takes them then, so they reach main."""


def refused(plan: Routed, path: str) -> bool:
    """The router answers 404 itself: a federation path while federation is off (OpenID aside)."""
    if plan.settings.federation.enabled:
        return False
    return any(re.search(p, path) for p in FEDERATION_PATHS) and not any(re.search(p, path) for p in OPENID_PATHS)


def _deployed(plan: Routed) -> set[str]:
    return {MAIN.name, *(size.spec.name for size in plan.sizes if size.deployed)}


def routes_for_plan(plan: Routed) -> tuple[Route, ...]:
    """The table as this plan uses it: routes to classes the plan deploys, federation routes only with
    federation on. What no route takes goes to main (`default_backend`)."""
    deployed = _deployed(plan)
    federation = plan.settings.federation.enabled
    return tuple(r for r in ROUTES if r.target in deployed and (federation or not r.federation))


def route_request(plan: Routed, method: str, path: str) -> str | None:
    """The class a request reaches under this plan, `main` for the rest, None when the router refuses it.

    The same first-match order as the generated HAProxy frontend; tests and `plan` use it."""
    if refused(plan, path):
        return None
    for route in routes_for_plan(plan):
        if route.matches(method, path):
            return route.target
    return MAIN.name
