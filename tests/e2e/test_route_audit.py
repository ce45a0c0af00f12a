"""The routing table against what real Synapse serves, in both directions (issue #13, part 2).

Direction 1, nothing routed into a void: for every route of the e2e plan, every alternative of its
pattern (each version in `(api/v1|r0|v3|unstable)`, both sides of `(/|$)`) must reach at least one
servlet on its target class, and every request Synapse serves anywhere that the route takes (first
match, as the router applies the table) must be served on the target class too: a route must not send
a method or a sub-path to a class that answers 404/405 while main or another class would serve it.

Direction 2, no worker work left on main: every request a worker process serves (Synapse's own
registrations on the e2e generic worker, synchrotron, stream writers and media worker) must be routed
to a class that serves it; main only for the few entries of `STAYS_ON_MAIN`, each with its reason.

What "serves" means comes from two places that must agree: the registrations Synapse makes while it
builds each process's listeners (`servlets.py`, run in a subprocess per process against the e2e
database), and a request to the live process itself, bypassing the router (`listing.py`). Paths to
try come from the patterns (`samples.py`): the table's own and Synapse's, never a list kept here.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from synapse_workers.model.settings import Federation
from synapse_workers.model.worker_classes import MAIN as MAIN_PROCESS
from synapse_workers.model.worker_classes import WORKER_CLASSES
from synapse_workers.plan import build_plan
from synapse_workers.synapse.routing import Route, route_request, routes_for_plan
from synapse_workers.synapse.topology import CLIENT_PORT
from tests.e2e.listing import Listing, Verdict, list_processes, parse_listing, probe_all
from tests.e2e.samples import samples
from tests.e2e.services import Postgres
from tests.e2e.topology import MAIN, Homeserver

pytestmark = pytest.mark.e2e

ALL_METHODS = ("GET", "PUT", "POST", "DELETE")
"""The methods Synapse's client, federation and admin servlets register (HEAD is served as GET)."""

# (regex on "METHOD path", why the request stays on main although a worker registers it). Short on
# purpose: each entry is a decision, not a catch-all.
STAYS_ON_MAIN: tuple[tuple[str, str], ...] = (
    (
        r"GET /_matrix/key/v2/server(/[^/]+)?",
        "this server's own signing keys, answered from its config by every process alike; docs/workers.md lists "
        "only /_matrix/key/v2/query for workers",
    ),
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Audit:
    homeserver: Homeserver
    listings: dict[str, Listing]
    """Class name -> the listing of one of its processes."""
    addresses: dict[str, str]
    """Class name -> the loopback address of that process."""
    live: dict[tuple[str, str, str], Verdict]

    def serves(self, class_name: str, request: Request) -> Verdict:
        """Whether the class serves the request: Synapse's registrations, confirmed by the live process.
        A servlet that refuses some methods on workers (`WORKERS_DENIED_METHODS`) decides at request time
        from the writer config, so for those the live answer alone counts."""
        model = self.listings[class_name].dispatch(request.method, request.path)
        key = (self.addresses[class_name], request.method, request.path)
        if key not in self.live:  # not in the batch probed up front: ask now
            self.live.update(probe_all({key}))
        live = self.live[key]
        if model.decided_at_request_time:
            return live
        assert model.served == live.served, f"{class_name}: {request}: registrations say {model}, live says {live}"
        return model


def first_route(routes: tuple[Route, ...], request: Request) -> Route | None:
    """The route the router applies (first match), as `route_request` does."""
    return next((r for r in routes if r.matches(request.method, request.path)), None)


def served_requests(listing: Listing) -> set[Request]:
    """One request per sample of every pattern registered on the listing, kept where the listing's own
    dispatch (mount and first-match order) really reaches that registration."""
    found: set[Request] = set()
    for prefix, registration in listing.registrations():
        for sample in samples(registration.pattern):
            if listing.mount_for(sample.path) != prefix:
                continue  # registered on a resource mounted elsewhere: unreachable this way
            verdict = listing.dispatch(registration.method, sample.path)
            if verdict.served and verdict.why == registration.servlet:
                found.add(Request(registration.method, sample.path))
    return found


def allowlisted(request: Request) -> str | None:
    for pattern, why in STAYS_ON_MAIN:
        if re.fullmatch(pattern, str(request)):
            return why
    return None


@pytest.fixture(scope="module")
def audit(homeserver: Homeserver, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audit]:
    started = time.monotonic()
    plan = homeserver.plan
    classes = [MAIN_PROCESS.name, *dict.fromkeys(r.target for r in routes_for_plan(plan))]
    chosen = {c: (MAIN if c == MAIN_PROCESS.name else homeserver.names_of(c)[0]) for c in classes}
    raw = list_processes(
        {c: homeserver.procs[name][2] for c, name in chosen.items()},
        postgres.password,
        tmp_path_factory.mktemp("listed"),
    )
    listings = {c: parse_listing(chosen[c], c != MAIN_PROCESS.name, raw[c]) for c in classes}
    addresses = {c: homeserver.procs[name][1] for c, name in chosen.items()}
    listed = time.monotonic()
    # Probed up front, in one parallel batch: what each class serves by its registrations, each of those
    # on the class the table routes it to, and every sample of the table on its route's target.
    routes = routes_for_plan(plan)
    probes: set[tuple[str, str, str]] = set()
    for class_name, listing in listings.items():
        for request in served_requests(listing):
            probes.add((addresses[class_name], request.method, request.path))
            target = route_request(plan, request.method, request.path)
            if target is not None:
                probes.add((addresses[target], request.method, request.path))
    for route in routes:
        for sample in samples(route.pattern):
            probes |= {(addresses[route.target], m, sample.path) for m in route.methods or ALL_METHODS}
    live = probe_all(probes)
    print(f"\nroute audit: listing {listed - started:.1f} s, {len(probes)} probes {time.monotonic() - listed:.1f} s")
    yield Audit(homeserver, listings, addresses, live)


def served_anywhere(audit: Audit) -> set[Request]:
    return {r for listing in audit.listings.values() for r in served_requests(listing)}


def test_listings_cover_every_worker_type(audit: Audit) -> None:
    """The listing is real: each process registered its servlets, and the live process agrees with
    Synapse's registrations on a request it serves and on one it does not."""
    for class_name, listing in audit.listings.items():
        served = served_requests(listing)
        assert len(served) > 10, f"{class_name}: only {len(served)} requests served"
    worker = audit.listings["generic-worker"]
    assert worker.dispatch("GET", "/_matrix/client/v3/sync").served
    assert not worker.dispatch("POST", "/_matrix/client/v3/sync").served
    assert not audit.listings["media-repository"].dispatch("GET", "/_matrix/client/v3/sync").served
    # The live processes, asked directly (each call also checks registrations and live agree).
    assert audit.serves("media-repository", Request("GET", "/_matrix/client/v1/media/config")).served
    assert not audit.serves("media-repository", Request("GET", "/_matrix/client/v3/sync")).served
    assert not audit.serves("generic-worker", Request("POST", "/_matrix/client/v3/sync")).served
    assert not audit.serves(MAIN_PROCESS.name, Request("GET", "/_matrix/client/v1/media/config")).served


def test_every_route_reaches_a_servlet_on_its_class(audit: Audit) -> None:
    """Direction 1: no route alternative is dead, and no request a route takes gets 404/405 on its class
    when some process would serve it."""
    routes = routes_for_plan(audit.homeserver.plan)
    # The guide's classes' routes are the fallbacks for plans without the duties beyond the guide (the
    # e2e plan runs every one of them, whose routes come first): judge those as such a plan routes.
    beyond = {c.name for c in WORKER_CLASSES if c.beyond_guide}
    guide_only = tuple(r for r in routes if r.target not in beyond)
    anywhere = served_anywhere(audit)
    problems: list[str] = []
    for route in routes:
        table = routes if route.target in beyond else guide_only
        for sample in samples(route.pattern):
            branch = re.compile(sample.branch)
            taken = sorted(
                (r for r in anywhere if branch.search(r.path) and first_route(table, r) is route),
                key=str,
            )
            if not sample.is_prefix():
                methods = route.methods or ALL_METHODS
                taken += [Request(m, sample.path) for m in methods if Request(m, sample.path) not in taken]
            served = [r for r in taken if audit.serves(route.target, r).served]
            if not served:
                problems.append(f"{route.pattern} -> {route.target}: {sample.path} serves nothing there")
            for method in route.methods:
                if not any(r.method == method for r in served):
                    problems.append(f"{route.pattern} -> {route.target}: {sample.path} ({method}) serves nothing there")
            for request in taken:
                verdict = audit.serves(route.target, request)
                if not verdict.served and request in anywhere:
                    others = sorted(c for c in audit.listings if audit.serves(c, request).served)
                    problems.append(
                        f"{route.pattern} -> {route.target}: {request} gets {verdict.why}; served by {others}"
                    )
    assert not problems, "\n".join(sorted(set(problems)))


def test_every_worker_request_is_routed_to_a_class_that_serves_it(audit: Audit) -> None:
    """Direction 2: what a worker serves is routed to a worker class that serves it (or, allowlisted,
    to main, which must serve it then)."""
    plan = audit.homeserver.plan
    served_by: dict[Request, list[str]] = {}
    for class_name, listing in audit.listings.items():
        if class_name != MAIN_PROCESS.name:
            for request in served_requests(listing):
                if audit.serves(class_name, request).served:
                    served_by.setdefault(request, []).append(class_name)
    problems: list[str] = []
    for request, classes in sorted(served_by.items(), key=lambda item: str(item[0])):
        target = route_request(plan, request.method, request.path)
        assert target is not None, request
        if target == MAIN_PROCESS.name and allowlisted(request) is None:
            problems.append(f"{request}: served by {sorted(classes)}, routed to main")
        verdict = audit.serves(target, request)
        if not verdict.served:
            problems.append(f"{request}: served by {sorted(classes)}, routed to {target}, which answers {verdict.why}")
    assert not problems, "\n".join(problems)


def test_allowlist_entries_are_all_needed(audit: Audit) -> None:
    """An allowlist entry that no worker-served request reaching main uses any more is stale (say, once
    the new writer classes route account data): it must go, or it would hide a later regression."""
    plan = audit.homeserver.plan
    on_main = {
        r
        for c, listing in audit.listings.items()
        if c != MAIN_PROCESS.name
        for r in served_requests(listing)
        if audit.serves(c, r).served and route_request(plan, r.method, r.path) == MAIN_PROCESS.name
    }
    for pattern, why in STAYS_ON_MAIN:
        assert any(re.fullmatch(pattern, str(r)) for r in on_main), f"unused allowlist entry {pattern} ({why})"


# --- what the router blocks with federation off ----------------------------------------------------------

BLOCKED_ON_PURPOSE: tuple[tuple[str, str], ...] = (
    (
        r"GET /_matrix/key/v2/(server|query)(/.*)?",
        "the `keys` resource: signing keys for remote servers, and with federation off there are none",
    ),
    (r"POST /_matrix/key/v2/query", "the `keys` resource: a notary for remote servers' keys, none with federation off"),
)
"""Paths a listener resource serves that the router refuses while federation is off, each a decision."""

LISTENER_RESOURCES = ("client", "health", "keys", "media", "openid", "static")
"""Every listener resource Synapse knows (synapse/config/server.py KNOWN_RESOURCES) but those that are
federation itself, replication and metrics (never routed), and `consent`, which refuses to load without
a `user_consent` section."""


def test_nothing_a_listener_resource_serves_is_blocked_with_federation_off(
    homeserver: Homeserver, postgres: Postgres, tmp_path: Path
) -> None:
    """The class of miss OpenID userinfo was: main issued OpenID tokens, Synapse serves their check on the
    `openid` resource without federation, and the router answered 404 for all of /_matrix/federation/.
    Main built with every routable resource must find each path it serves let through by the router of
    a federation-off plan, or refused by a decision in BLOCKED_ON_PURPOSE."""
    plan = build_plan(homeserver.plan.settings.model_copy(update={"federation": Federation()}))
    config = yaml.safe_load(homeserver.procs[MAIN][2].read_text())
    (client,) = (listener for listener in config["listeners"] if listener["port"] == CLIENT_PORT)
    client["resources"] = [{"names": list(LISTENER_RESOURCES), "compress": False}]
    path = tmp_path / "main-every-resource.yaml"
    path.write_text(yaml.safe_dump(config))
    raw = list_processes({"main": path}, postgres.password, tmp_path)
    served = served_requests(parse_listing(MAIN, False, raw["main"]))
    assert Request("GET", "/_matrix/federation/v1/openid/userinfo") in served
    blocked = sorted((r for r in served if route_request(plan, r.method, r.path) is None), key=str)
    decided = {r for r in blocked if any(re.fullmatch(p, str(r)) for p, _ in BLOCKED_ON_PURPOSE)}
    assert decided, "no blocked path found: the check would pass on anything"
    assert not [str(r) for r in blocked if r not in decided], "served by a listener resource, refused by the router"
    for pattern, why in BLOCKED_ON_PURPOSE:
        assert any(re.fullmatch(pattern, str(r)) for r in decided), f"unused entry {pattern} ({why})"
