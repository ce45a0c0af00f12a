"""`scale --from-recommendation` recomputes the proposal from the file's own measurements: a file whose
figures or pins were edited, whose measurements were changed without its proposal, or whose shape is
not `recommend --json`'s is refused in one line with both files unchanged. The expected figures are
worked by hand from the step rule (1,000 CCU moves in steps of 100; 50 msg/s in 5; 100 servers in 10)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from synapse_workers.kube import alerts
from tests import test_recommend
from tests.test_recommend import STACK, Answers, refused, run, saved_recommendation

serve = test_recommend.serve
"""The recorded-answers Prometheus fixture, shared."""

Edit = Callable[[dict[str, Any]], None]


def set_path(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split("/")
    node = document
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


DELETE = object()
MEDIA_CPU = f"measured/classes/media-repository/targets/{alerts.CPU_HIGH}"

TAMPERED: list[tuple[str, list[tuple[str, Any]], str]] = [
    # The saved measurements are 1,234 users, 61.2 msg/s, 130 servers, media at 1.05 of its CPU request.
    ("ccu-typed-over", [("recommended/changes/ccu/to", 1500)], "its ccu 1500 does not follow"),
    ("ccu-dropped", [("recommended/changes/ccu/change", "none")], "its ccu no change does not follow"),
    ("rate-typed-over", [("recommended/changes/messagesPerSecond/to", 60)], "its messagesPerSecond 60 does not"),
    ("servers-typed-over", [("recommended/changes/federatedServers/to", 500)], "its federatedServers 500"),
    (
        "measured-ccu-changed",
        [("measured/ccu", 2000)],
        "its ccu 1300 does not follow from its measurements by the step rule (2000 to 2100)",
    ),
    ("pin-added", [("recommended/pins/synchrotron", 9)], "its pin synchrotron=9 does not follow"),
    ("pin-raised", [("recommended/pins/media-repository", 5)], "its pin media-repository=5 does not follow"),
    ("pin-removed", [("recommended/pins/media-repository", DELETE)], "its pin media-repository=none"),
    ("target-lowered", [(f"{MEDIA_CPU}/peak", 0.2)], "its pin media-repository=3 does not follow"),
    ("no-classes", [("measured/classes", DELETE)], "wrong shape: measured.classes is not an object"),
    ("class-missing", [("measured/classes/synchrotron", DELETE)], "no targets for synchrotron"),
    ("limit-changed", [(f"{MEDIA_CPU}/limit", 2)], "is not this program's target"),
    ("peak-text", [(f"{MEDIA_CPU}/peak", "NaN")], 'peak is "NaN", not a figure'),
    ("peak-negative", [("measured/ccu", -1)], "measured.ccu is -1, not a figure"),
    ("processes-negative", [("measured/classes/synchrotron/processes", -1)], "processes is not a count"),
    ("window-garbage", [("measured/window", "soon")], "is not a duration"),
    ("changes-list", [("recommended/changes", [])], "recommended.changes or recommended.pins is not an object"),
    ("pin-text", [("recommended/pins/media-repository", "3")], "recommended.pins.media-repository is not a"),
]


@pytest.mark.parametrize(("name", "edits", "why"), TAMPERED, ids=[t[0] for t in TAMPERED])
def test_a_recommendation_that_does_not_follow_from_its_measurements_is_refused(
    tmp_path: Path,
    serve: Callable[[Answers], str],
    capsys: pytest.CaptureFixture[str],
    name: str,
    edits: list[tuple[str, Any]],
    why: str,
) -> None:
    path, document, _ = saved_recommendation(tmp_path, serve, capsys, {"synapse-media-repository": 1.05})
    # The unedited file pins media (worked in test_recommend): the edits are against a valid base.
    assert document["recommended"]["pins"] == {"media-repository": 3}
    edited = copy.deepcopy(document)
    for where, value in edits:
        set_path(edited, where, value)
    path.write_text(json.dumps(edited))
    argv = ["scale", "--stack", STACK, "--from-recommendation", str(path), "-C", str(tmp_path)]
    err = refused(tmp_path, argv, capsys)
    assert f'--from-recommendation = "{path}"' in err and why in err, err


@pytest.mark.parametrize(
    ("where", "value"),
    [("measured/ccu", 1234.4), ("measured/messagesPerSecond", 61.2004), (f"{MEDIA_CPU}/peak", 1.0504)],
    ids=["ccu", "rate", "target"],
)
def test_a_figure_within_its_rounding_still_follows(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str], where: str, value: float
) -> None:
    """The control: the file keeps peaks rounded, so a peak anywhere in its rounding interval is the
    same measurement, and the unchanged proposal is accepted."""
    path, document, _ = saved_recommendation(tmp_path, serve, capsys, {"synapse-media-repository": 1.05})
    set_path(document, where, value)
    path.write_text(json.dumps(document))
    argv = ["scale", "--stack", STACK, "--from-recommendation", str(path), "-C", str(tmp_path)]
    code, _, err = run(argv, capsys)
    assert code == 0, err
