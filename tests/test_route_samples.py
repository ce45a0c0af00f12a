"""The sample-path generator the route audit relies on (`tests/e2e/samples.py`).

The audit tries only paths generated from patterns, so the generator must give paths the patterns
really match, one for every alternative, and must refuse syntax it does not understand rather than
guess. Inputs are the routing table itself and servlet patterns read from the installed Synapse.
"""

from __future__ import annotations

import re

import pytest
from synapse.rest.client.auth import AuthRestServlet
from synapse.rest.client.relations import RelationPaginationServlet
from synapse.rest.client.room import RoomSummaryRestServlet
from synapse.rest.client.room_keys import RoomKeysServlet

from synapse_workers.synapse.routing import ROUTES
from tests.e2e.samples import Sample, UnsupportedPatternError, samples

SIMPLE_GROUP = re.compile(r"\((?!\?)([^()]*)\)")
"""A group without nesting or extensions, like `(api/v1|r0|v3|unstable)` or `(/|$)`."""


@pytest.mark.parametrize("pattern", sorted({r.pattern for r in ROUTES}))
def test_every_route_pattern_is_sampled_alternative_by_alternative(pattern: str) -> None:
    found = samples(pattern)
    assert found
    for sample in found:
        assert re.search(pattern, sample.path), sample
        assert re.search(sample.branch, sample.path), sample
    for group in SIMPLE_GROUP.finditer(pattern):
        for alternative in group.group(1).split("|"):
            assert any(f"(?:{alternative})" in s.branch for s in found), (pattern, alternative)
    # Without an end anchor, or ending in `.*$`, a pattern takes any longer path too.
    if not pattern.endswith(("$", "(/|$)")) or pattern.endswith(".*$"):
        assert all(s.is_prefix() for s in found), found
    elif pattern.endswith("$"):
        assert not any(s.is_prefix() for s in found), found


def test_either_side_of_slash_or_end() -> None:
    """`(/|$)` is a prefix on one side and a whole path on the other."""
    found = samples("^/_matrix/client/(r0|v3)/devices(/|$)")
    assert {(s.path, s.is_prefix()) for s in found} == {
        ("/_matrix/client/r0/devices/", True),
        ("/_matrix/client/v3/devices/", True),
        ("/_matrix/client/r0/devices", False),
        ("/_matrix/client/v3/devices", False),
    }


@pytest.mark.parametrize(
    "servlet", [RoomSummaryRestServlet, RelationPaginationServlet, AuthRestServlet, RoomKeysServlet]
)
def test_synapse_servlet_patterns(servlet: type) -> None:
    """Named groups, optional (nested) groups and classes such as `[\\w\\.]*`, as Synapse writes them:
    every sample matches the compiled pattern the way Synapse dispatches (`match` from the start)."""
    for compiled in servlet.PATTERNS:  # type: ignore[attr-defined]
        found = samples(compiled.pattern)
        assert found
        for sample in found:
            assert compiled.match(sample.path), (compiled.pattern, sample)


def test_optional_parts_give_a_sample_with_and_without_them() -> None:
    """RelationPaginationServlet: `…/relations/{parent}(/{type}(/{event_type})?)?$`."""
    (compiled,) = RelationPaginationServlet.PATTERNS
    depths = {s.path.split("/relations/", 1)[1].count("/") for s in samples(compiled.pattern) if "/v1/" in s.path}
    assert depths == {0, 1, 2}


@pytest.mark.parametrize("pattern", ["^/a{2}$", "^/(?=x)y", "^/a\\d$", "^/(a)*$", "^/a**", "^/(a"])
def test_unknown_syntax_is_refused(pattern: str) -> None:
    with pytest.raises(UnsupportedPatternError):
        samples(pattern)


def test_sample_prefix_rule() -> None:
    assert Sample("/a/", "^/a/").is_prefix()
    assert not Sample("/a", "^/a$").is_prefix()
