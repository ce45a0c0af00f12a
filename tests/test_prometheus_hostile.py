"""`recommend` against a Prometheus that misbehaves: a server on loopback that drips, stalls, floods,
redirects, echoes the token, answers the wrong shape or impossible figures. Each case must end in one
line naming what went wrong (the metric and scrape job for a figure), within the deadline, with the
token nowhere in the output and nothing written; flags and the token file are refused before any
request reaches the server."""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from synapse_workers.ops.prometheus import MAX_ANSWER_BYTES
from tests.prometheus_stub import Behaviour, Server, send
from tests.test_recommend import AT, Answers, recommend_args, refused, vector, write_stack

TOKEN = "eyJhbGciOi.TOKENCHECK-4b7c.sig"


@pytest.fixture
def hostile() -> Iterator[Callable[[Behaviour], Server]]:
    started: list[Server] = []

    def start(behaviour: Behaviour) -> Server:
        server = Server(behaviour)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def drip_body(handler: BaseHTTPRequestHandler, server: Server) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "100000")
    handler.end_headers()
    while not server.stop.wait(0.2):
        handler.wfile.write(b" ")
        handler.wfile.flush()


def drip_headers(handler: BaseHTTPRequestHandler, server: Server) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100000:
        if server.stop.wait(0.2):
            return
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()


def silent(handler: BaseHTTPRequestHandler, server: Server) -> None:
    server.stop.wait(60)


def flood(handler: BaseHTTPRequestHandler, server: Server) -> None:
    handler.send_response(200)
    handler.end_headers()  # no Content-Length: read until the server closes
    chunk = b" " * 65536
    for _ in range(MAX_ANSWER_BYTES // len(chunk) + 64):
        handler.wfile.write(chunk)
    handler.close_connection = True


def huge_declared(handler: BaseHTTPRequestHandler, server: Server) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", str(10**12))
    handler.end_headers()
    handler.wfile.write(b"{")
    server.stop.wait(60)


def not_json(handler: BaseHTTPRequestHandler, server: Server) -> None:
    send(handler, b"<html>hello</html>")


def echo_token_in_error(handler: BaseHTTPRequestHandler, server: Server) -> None:
    said = handler.headers.get("Authorization") or ""
    body = {"status": "error", "errorType": "bad_data", "error": f"refused {said}\nsecond line\x1b[31m"}
    send(handler, json.dumps(body).encode(), 400, f"no {said}")


def echo_token_in_reason(handler: BaseHTTPRequestHandler, server: Server) -> None:
    send(handler, b"oops", 500, f"go away {handler.headers.get('Authorization')}")


TRANSPORT: list[tuple[str, Behaviour, str]] = [
    ("drip-body", drip_body, "gave no complete answer within --timeout 1 s"),
    ("drip-headers", drip_headers, "gave no complete answer within --timeout 1 s"),
    ("silent", silent, "gave no complete answer within --timeout 1 s"),
    ("flood", flood, f"answered more than {MAX_ANSWER_BYTES // 2**20} MiB"),
    ("huge-declared", huge_declared, f"answered more than {MAX_ANSWER_BYTES // 2**20} MiB"),
    ("not-json", not_json, "did not answer JSON"),
    ("token-echoed-in-error", echo_token_in_error, "bad_data: refused Bearer <token> second line"),
    ("token-echoed-in-reason", echo_token_in_reason, "HTTP 500 go away Bearer <token>"),
]


@pytest.mark.parametrize(("name", "behaviour", "said"), TRANSPORT, ids=[t[0] for t in TRANSPORT])
def test_a_hostile_transport_ends_in_one_line_within_the_deadline(
    tmp_path: Path,
    hostile: Callable[[Behaviour], Server],
    capsys: pytest.CaptureFixture[str],
    name: str,
    behaviour: Behaviour,
    said: str,
) -> None:
    write_stack(tmp_path)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    server = hostile(behaviour)
    started = time.monotonic()
    args = recommend_args(tmp_path, server.url, "--timeout", "1", "--bearer-token-file", str(token))
    err = refused(tmp_path, args, capsys)
    elapsed = time.monotonic() - started
    assert said in err, err
    assert TOKEN not in err
    assert elapsed < 4, f"{name}: {elapsed:.1f} s against a deadline of 1 s"
    assert server.requests and server.requests[0][1] == f"Bearer {TOKEN}"


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("where", ["another-origin", "same-origin"])
def test_a_redirect_is_refused_and_the_token_goes_nowhere_else(
    tmp_path: Path, hostile: Callable[[Behaviour], Server], capsys: pytest.CaptureFixture[str], status: int, where: str
) -> None:
    write_stack(tmp_path)
    token = tmp_path / "token"
    token.write_text(TOKEN)
    elsewhere = hostile(not_json)
    target = f"{elsewhere.url}/api/v1/targets" if where == "another-origin" else "/other/api/v1/targets"

    def redirect(handler: BaseHTTPRequestHandler, server: Server) -> None:
        handler.send_response(status)
        handler.send_header("Location", target)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server = hostile(redirect)
    err = refused(tmp_path, recommend_args(tmp_path, server.url, "--bearer-token-file", str(token)), capsys)
    assert f"answered a redirect (HTTP {status}) to {target}" in err and "give the final URL" in err
    assert TOKEN not in err
    assert elsewhere.requests == []
    assert len(server.requests) == 1


def answering(queries: Callable[[str], Any], targets: Any = None) -> Callable[[Any], Behaviour]:
    """A server that answers /api/v1/targets well (or with `targets`) and queries with `queries`."""

    def make(good_targets: Any) -> Behaviour:
        def behaviour(handler: BaseHTTPRequestHandler, server: Server) -> None:
            url = urllib.parse.urlsplit(handler.path)
            if url.path == "/api/v1/targets":
                body = good_targets if targets is None else targets
            else:
                body = queries(urllib.parse.parse_qs(url.query)["query"][0])
            send(handler, json.dumps(body).encode())

        return behaviour

    return make


def result(items: Any, kind: str = "vector") -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": kind, "result": items}}


SHAPES: list[tuple[str, Callable[[Any], Behaviour], str]] = [
    ("matrix", answering(lambda q: result([], "matrix")), "data.resultType is not vector or scalar"),
    ("result-object", answering(lambda q: result({})), "data.result is not a list"),
    ("series-not-object", answering(lambda q: result([1])), "a series is not an object"),
    ("labels-not-strings", answering(lambda q: result([{"metric": {"a": 1}, "value": [AT, "1"]}])), "labels"),
    ("value-null", answering(lambda q: result([{"metric": {}, "value": None}])), "not a [time, value] pair"),
    ("value-number", answering(lambda q: result([{"metric": {}, "value": [AT, 5]}])), "value is 5, not a number"),
    ("value-null-text", answering(lambda q: result([{"metric": {}, "value": [AT, None]}])), "value is null"),
    ("value-word", answering(lambda q: result([{"metric": {}, "value": [AT, "lots"]}])), '"lots" is not a number'),
    ("time-text", answering(lambda q: result([{"metric": {}, "value": ["now", "1"]}])), "time is not a number"),
    ("no-data", answering(lambda q: {"status": "success"}), "data.resultType"),
    ("targets-list", answering(lambda q: result([]), {"status": "success", "data": []}), "data is not an object"),
    (
        "active-not-list",
        answering(lambda q: result([]), {"status": "success", "data": {"activeTargets": "x"}}),
        "activeTargets is not a list",
    ),
    (
        "interval-number",
        answering(
            lambda q: result([]),
            {"status": "success", "data": {"activeTargets": [{"labels": {}, "scrapeInterval": 30}]}},
        ),
        "scrapeInterval is not a duration",
    ),
]


@pytest.mark.parametrize(("name", "make", "said"), SHAPES, ids=[s[0] for s in SHAPES])
def test_an_answer_of_the_wrong_shape_is_refused(
    tmp_path: Path,
    hostile: Callable[[Behaviour], Server],
    capsys: pytest.CaptureFixture[str],
    name: str,
    make: Callable[[Any], Behaviour],
    said: str,
) -> None:
    plan = write_stack(tmp_path)
    good = Answers(plan, {"ccu": 1000, "messagesPerSecond": 50, "knownServers": 101}).targets
    server = hostile(make(good))
    err = refused(tmp_path, recommend_args(tmp_path, server.url), capsys)
    assert said in err, err
    assert "not a Prometheus answer" in err or "did not answer" in err
    if not name.startswith(("targets", "active", "interval")):
        # The first query is the CCU's: the refusal names its metric and the job it reads.
        assert "for metric synapse_notifier_users from scrape job synapse-synchrotron" in err, err


IMPOSSIBLE: list[tuple[str, str, float | str, str, str]] = [
    # (case, the metric the bad figure answers for, the figure, the metric named, the job named)
    ("negative-ccu", "synapse_notifier_users", -5, "synapse_notifier_users", "synapse-synchrotron"),
    ("nan-ccu", "synapse_notifier_users", "NaN", "synapse_notifier_users", "synapse-synchrotron"),
    ("inf-messages", "persisted_events_sep_total", "+Inf", "synapse_storage_events_persisted_events_sep_total", ""),
    ("neg-inf-servers", "synapse_federation_known_servers", "-Inf", "synapse_federation_known_servers", ""),
    ("negative-cpu", "process_cpu_user_seconds_total", -0.5, "process_cpu_user_seconds_total", "synapse-main"),
    ("nan-cpu", "process_cpu_user_seconds_total", "NaN", "process_cpu_user_seconds_total", "synapse-main"),
    ("negative-latency", "response_time_seconds_bucket", -1, "response_time_seconds_bucket", "synapse-synchrotron"),
    ("inf-latency", "response_time_seconds_bucket", "+Inf", "response_time_seconds_bucket", "synapse-synchrotron"),
    ("nan-up", "sum(up{", "NaN", "metric up", "synapse-main"),
]


@pytest.mark.parametrize(("name", "metric", "figure", "named", "job"), IMPOSSIBLE, ids=[i[0] for i in IMPOSSIBLE])
def test_an_impossible_figure_is_refused_naming_the_metric_and_the_job(
    tmp_path: Path,
    hostile: Callable[[Behaviour], Server],
    capsys: pytest.CaptureFixture[str],
    name: str,
    metric: str,
    figure: float | str,
    named: str,
    job: str,
) -> None:
    plan = write_stack(tmp_path)
    answers = Answers(plan, {"ccu": 1000, "messagesPerSecond": 50, "knownServers": 101})

    def queries(query: str) -> Any:
        if metric in query:
            return vector(figure)
        return answers(query)

    server = hostile(answering(queries)(answers.targets))
    err = refused(tmp_path, recommend_args(tmp_path, server.url), capsys)
    shown = figure if isinstance(figure, str) else f"{figure:g}"
    assert f"an impossible figure {shown.lstrip('+')}" in err.replace("inf", "Inf").replace("nan", "NaN"), err
    assert named in err and f"scrape job {job}" in err, err


def test_a_latency_with_no_requests_is_not_impossible(
    tmp_path: Path, hostile: Callable[[Behaviour], Server], capsys: pytest.CaptureFixture[str]
) -> None:
    """The control: a p95 over a window without requests is NaN in Prometheus, and means just that."""
    plan = write_stack(tmp_path)
    answers = Answers(plan, {"ccu": 1000, "messagesPerSecond": 50, "knownServers": 101})
    assert math.isnan(float(answers("max_over_time((response_time_seconds_bucket")["data"]["result"][0]["value"][1]))
    server = hostile(answering(answers)(answers.targets))
    from synapse_workers.cli.main import main  # noqa: PLC0415

    assert main(recommend_args(tmp_path, server.url, "--json")) == 0
    document = json.loads(capsys.readouterr().out)
    targets = document["measured"]["classes"]["synchrotron"]["targets"].values()
    latencies = [t for t in targets if t["unit"] == "seconds"]
    assert latencies and all(t["peak"] is None for t in latencies)


FLAGS: list[tuple[list[str], str]] = [
    (["--timeout", "0"], '--timeout = "0"'),
    (["--timeout", "-3"], '--timeout = "-3"'),
    (["--timeout", "nan"], '--timeout = "nan"'),
    (["--timeout", "inf"], '--timeout = "inf"'),
    (["--timeout", "301"], '--timeout = "301"'),
    (["--window", "soon"], '--window = "soon"'),
    (["--window", "0s"], '--window = "0s"'),
    (["--window", ""], '--window = ""'),
]


@pytest.mark.parametrize(("extra", "said"), FLAGS, ids=[" ".join(f[0]) for f in FLAGS])
def test_bad_flags_are_refused_before_any_request(
    tmp_path: Path,
    hostile: Callable[[Behaviour], Server],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    said: str,
) -> None:
    write_stack(tmp_path)
    server = hostile(not_json)
    err = refused(tmp_path, recommend_args(tmp_path, server.url, *extra), capsys)
    assert said in err, err
    assert server.requests == []


def test_bad_urls_are_refused_before_any_request_without_their_credentials(
    tmp_path: Path, hostile: Callable[[Behaviour], Server], capsys: pytest.CaptureFixture[str]
) -> None:
    write_stack(tmp_path)
    server = hostile(not_json)
    port = server.url.rsplit(":", 1)[1]
    for url, said in (
        (f"http://admin:PASSWORDCHECK@127.0.0.1:{port}", f'--prometheus = "http://127.0.0.1:{port}"'),
        (f"http://127.0.0.1:{port}/?x=1", "no ?query"),
        (f"ftp://127.0.0.1:{port}", "not an http:// or https:// URL"),
        ("http://127.0.0.1:99999", "not a URL"),
        ("http://", "not an http:// or https:// URL"),
    ):
        err = refused(tmp_path, recommend_args(tmp_path, url), capsys)
        assert said in err and "PASSWORDCHECK" not in err, err
    assert server.requests == []


TOKEN_FILES: list[tuple[str, bytes, str]] = [
    ("empty", b"", "the file is empty"),
    ("only-newline", b"\n", "the file is empty"),
    ("two-lines", TOKEN.encode() + b"\nsecond\n", "more than one line"),
    ("two-newlines", TOKEN.encode() + b"\n\n", "more than one line"),
    ("crlf", TOKEN.encode() + b"\r\n", "more than one line"),
    ("trailing-space", TOKEN.encode() + b" \n", "characters a bearer token cannot hold"),
    ("nul", TOKEN.encode() + b"\x00", "characters a bearer token cannot hold"),
    ("non-ascii", TOKEN.encode() + "é".encode(), "characters a bearer token cannot hold"),
    ("not-utf8", TOKEN.encode() + b"\xff\xfe", "not UTF-8"),
]


@pytest.mark.parametrize(("name", "content", "said"), TOKEN_FILES, ids=[t[0] for t in TOKEN_FILES])
def test_a_token_file_is_read_strictly_and_never_quoted(
    tmp_path: Path,
    hostile: Callable[[Behaviour], Server],
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes,
    said: str,
) -> None:
    project = tmp_path / "project"  # the token lies outside it: `refused` reads every project file as text
    project.mkdir()
    write_stack(project)
    token = tmp_path / "token"
    token.write_bytes(content)
    server = hostile(not_json)
    err = refused(project, recommend_args(project, server.url, "--bearer-token-file", str(token)), capsys)
    assert said in err and f'--bearer-token-file = "{token}"' in err, err
    assert "TOKENCHECK" not in err
    assert server.requests == []


def test_a_well_formed_token_file_is_sent_as_is(
    tmp_path: Path, hostile: Callable[[Behaviour], Server], capsys: pytest.CaptureFixture[str]
) -> None:
    """The control: one line with a single trailing newline is the token, newline dropped."""
    write_stack(tmp_path)
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    server = hostile(not_json)
    refused(tmp_path, recommend_args(tmp_path, server.url, "--bearer-token-file", str(token)), capsys)
    assert server.requests[0][1] == f"Bearer {TOKEN}"
