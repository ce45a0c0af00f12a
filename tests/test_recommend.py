"""`recommend` and `scale --from-recommendation` against a Prometheus that answers recorded responses.

A real HTTP server on loopback answers in Prometheus' own response format (bodies as
`tests/data/prometheus/*.json`, recorded from Debian's Prometheus 2.42 in the e2e run), so the client,
the refusals and the logic are exercised as a user runs them. The expected figures are worked by hand
from the step rule, never copied from the output under test.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Iterator
from fractions import Fraction
from http.server import BaseHTTPRequestHandler
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml

from synapse_workers.cli.main import main
from synapse_workers.kube import alerts, monitoring, targets
from synapse_workers.kube import queries as promql
from synapse_workers.model.settings import load_settings
from synapse_workers.model.stack_config import read_stack_file
from synapse_workers.model.worker_classes import BY_NAME, WorkerClass
from synapse_workers.ops.recommend.measure import event_writers, sync_workloads
from synapse_workers.ops.recommend.proposal import propose, step_for
from synapse_workers.plan import Plan, build_plan
from tests.conftest import base_values, pulumi_project
from tests.prometheus_stub import Behaviour, Server, send

DATA = Path(__file__).parent / "data" / "prometheus"
STACK = "lab"
NAMESPACE = "matrix"
SCRAPE = "30s"
AT = 1_764_400_000.0


def vector(value: float | str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A one-series instant vector, in the shape of the recorded query response."""
    body: dict[str, Any] = json.loads((DATA / "query-vector.json").read_text())
    body["data"]["result"] = [{"metric": labels or {}, "value": [AT, str(value)]}]
    return body


EMPTY: dict[str, Any] = {"status": "success", "data": {"resultType": "vector", "result": []}}


def targets_body(plan: Plan, interval: str = SCRAPE, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The recorded targets response, one active target per workload of the plan."""
    recorded: dict[str, Any] = json.loads((DATA / "targets.json").read_text())
    (template,) = recorded["data"]["activeTargets"][:1]
    active = []
    for workload in plan.workloads:
        job = promql.scrape_job(workload)
        if job in skip:
            continue
        target = json.loads(json.dumps(template))
        target["labels"] = {**target["labels"], "job": job, "namespace": plan.settings.namespace}
        target["scrapeInterval"] = interval
        active.append(target)
    recorded["data"]["activeTargets"] = active
    return recorded


def job_of(query: str) -> str:
    found = re.search(r'job=~?"([^"]+)"', query)
    return found.group(1) if found else ""


class Answers:
    """What the fake Prometheus says: a function from the query to a response body."""

    def __init__(self, plan: Plan, figures: dict[str, float], cpu: dict[str, float] | None = None) -> None:
        self.plan = plan
        self.figures = figures
        self.cpu = cpu or {}
        self.asked: list[str] = []
        self.targets = targets_body(plan)
        self.empty: set[str] = set()

    def __call__(self, query: str) -> dict[str, Any]:
        self.asked.append(query)
        for metric in self.empty:
            if metric in query:
                return EMPTY
        if not query.startswith("max_over_time(("):
            # Only peaks over the window are answered: an instant value would be a wrong answer.
            return vector(999_999)
        if query.startswith("max_over_time((sum(up{"):
            return vector(2)
        if "synapse_notifier_users" in query:
            return vector(self.figures["ccu"])
        if "persisted_events_sep_total" in query:
            return vector(self.figures["messagesPerSecond"])
        if "synapse_federation_known_servers" in query:
            return vector(self.figures["knownServers"])
        if "process_cpu_user_seconds_total" in query:
            return vector(self.cpu.get(job_of(query), 0.2))
        if "response_time_seconds_bucket" in query:
            return vector("NaN")
        if "persisted_events_total" in query:
            return vector(5)
        return EMPTY


def answering(answers: Answers) -> Behaviour:
    """The Prometheus HTTP API's two endpoints `recommend` reads, answered from `answers`."""

    def behaviour(handler: BaseHTTPRequestHandler, _: Server) -> None:
        url = urllib.parse.urlsplit(handler.path)
        if url.path == "/api/v1/targets":
            send(handler, json.dumps(answers.targets).encode())
        elif url.path == "/api/v1/query":
            send(handler, json.dumps(answers(urllib.parse.parse_qs(url.query)["query"][0])).encode())
        else:
            handler.send_error(404)

    return behaviour


@pytest.fixture
def serve() -> Iterator[Callable[[Answers], str]]:
    servers: list[Server] = []

    def start(answers: Answers) -> str:
        servers.append(Server(answering(answers)))
        return servers[-1].url

    yield start
    for server in servers:
        server.close()


def write_stack(root: Path, **overrides: Any) -> Plan:
    values = base_values(**{"ccu": 1000, "federation": {"enabled": True, "servers": 100}, **overrides})
    config = {k: json.loads(v) if v.startswith("{") else v for k, v in values.items()}
    (root / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump({"config": config}))
    pulumi_project(root)
    read, secret_keys = read_stack_file(STACK, root / f"Pulumi.{STACK}.yaml")
    return build_plan(load_settings(STACK, read, secret_keys))


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def recommend_args(root: Path, url: str, *extra: str) -> list[str]:
    return ["recommend", "--stack", STACK, "--prometheus", url, "-C", str(root), *extra]


def files(root: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(root.iterdir())}


# --- the step rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("figure", "current", "step"),
    [
        ("ccu", 100, 10),  # a tenth is 10: the minimum
        ("ccu", 50, 10),  # below the minimum: still 10
        ("ccu", 1000, 100),
        ("ccu", 2500, 200),  # a tenth is 250: 200 is the largest 1-2-5 value not above it
        ("ccu", 20000, 2000),
        ("ccu", 60000, 5000),
        ("messagesPerSecond", 10, 1),
        ("messagesPerSecond", 800, 50),
        ("federatedServers", 100, 10),
        ("federatedServers", 3, 1),
    ],
)
def test_step_is_the_largest_1_2_5_value_within_a_tenth(figure: Any, current: int, step: int) -> None:
    assert step_for(figure, Fraction(current)) == step


@pytest.mark.parametrize(
    ("current", "peak", "value", "change"),
    [
        (1000, 1010, 1100, "up"),  # above the stack: rounded up to the next step
        (1000, 1000, 1000, "none"),  # exactly the stack
        (1000, 901, 1000, "none"),  # rounds up to 1,000: no change
        (1000, 850, 1000, "none"),  # rounds to 900: one step below, inside the band
        (1000, 800, 800, "down"),  # two steps below
        (1100, 1010, 1100, "none"),  # after going up, the same load does not bring it back down
        (1100, 880, 900, "down"),
        (100, 12, 20, "down"),
        (100, 0, 10, "down"),  # nobody syncing: the floor is one step, never zero
        # The README's examples at 20,000 CCU (step 2,000).
        (20000, 21300, 22000, "up"),
        (20000, 16500, 20000, "none"),
        (20000, 15900, 16000, "down"),
    ],
)
def test_proposal_follows_the_step_rule(current: int, peak: float, value: int, change: Any) -> None:
    proposal = propose("ccu", Fraction(current), peak)
    assert (proposal.value, proposal.change) == (Fraction(value), change)


def test_a_load_hovering_at_a_boundary_does_not_flap() -> None:
    """Up once, then the same wobble in either direction is no change."""
    current = Fraction(1000)
    seen = []
    for peak in (990, 1010, 995, 1005, 980, 1020, 1000):
        proposal = propose("ccu", current, peak)
        current = proposal.value
        seen.append(int(current))
    assert seen == [1000, 1100, 1100, 1100, 1100, 1100, 1100]


# --- metric names in the installed Synapse -------------------------------------------------------------


@pytest.fixture(scope="module")
def synapse_source() -> str:
    spec = find_spec("synapse")
    assert spec is not None and spec.origin is not None
    return "\n".join(p.read_text(encoding="utf-8") for p in sorted(Path(spec.origin).parent.rglob("*.py")))


def _declared(source: str, name: str) -> set[str]:
    pattern = r"\b(Counter|Histogram|Gauge|LaterGauge|GaugeMetricFamily|CounterMetricFamily)\(\s*(?:name=)?\""
    return set(re.findall(pattern + re.escape(name) + '"', source))


def all_queries(plan: Plan) -> list[str]:
    ns = plan.settings.namespace
    queries = [
        promql.sync_users(sync_workloads(plan), ns),
        promql.messages_rate(event_writers(plan), ns, "5m"),
        promql.known_servers(plan.workloads, ns),
    ]
    queries += [t.expr for w in plan.workloads for t in targets.targets(w, ns, "5m")]
    return queries


def test_every_metric_recommend_reads_exists_in_the_installed_synapse(synapse_source: str) -> None:
    """A misspelt name is "no data" at best and a wrong figure at worst; the suffix must fit the type."""
    plan = build_plan(load_settings("t", base_values(ccu=5000, federation={"enabled": True, "servers": 10})))
    used = {m for q in all_queries(plan) for m, _ in re.findall(r"([a-z_:]+)\{([^}]*)\}", q)}
    assert {"synapse_notifier_users", "synapse_federation_known_servers"} <= used
    for metric in sorted(used):
        if metric.endswith("_bucket"):
            kinds, want = _declared(synapse_source, metric.removesuffix("_bucket")), {"Histogram"}
        elif metric.startswith("process_cpu_"):
            # Synapse's own CPUMetrics collector writes these whole names (synapse/metrics/__init__.py).
            kinds, want = _declared(synapse_source, metric), {"GaugeMetricFamily"}
        elif metric.endswith("_total"):
            kinds, want = _declared(synapse_source, metric.removesuffix("_total")), {"Counter"}
        else:
            kinds, want = _declared(synapse_source, metric), {"Gauge", "LaterGauge"}
        assert kinds and kinds <= want, (metric, kinds)


def test_label_values_and_flags_recommend_relies_on_exist(synapse_source: str) -> None:
    # The message types are among the types the `_sep` counter tracks by name (the rest is "*other*").
    assert "TRACKED_EVENT_TYPES = {" in synapse_source
    tracked = synapse_source.split("TRACKED_EVENT_TYPES = {", 1)[1].split("}", 1)[0]
    assert "EventTypes.Message" in tracked and "EventTypes.Encrypted" in tracked
    assert 'Message: Final = "m.room.message"' in synapse_source
    assert 'Encrypted: Final = "m.room.encrypted"' in synapse_source
    assert promql.MESSAGE_TYPES == ("m.room.message", "m.room.encrypted")
    # The known-servers gauge is registered only with the flag the program turns on with federation.
    assert "metrics_flags.known_servers" in synapse_source
    assert "known_servers: bool = attr.ib(" in synapse_source
    # The CCU gauge counts user streams, one per user (keyed by user id), on the notifier.
    assert "hook=lambda: {(self.server_name,): len(self.user_to_user_stream)}" in synapse_source


def test_the_ccu_and_message_queries_follow_the_class_table_not_names() -> None:
    plan = build_plan(load_settings("t", base_values(ccu=5000)))
    (syncer,) = sync_workloads(plan)
    assert syncer.spec.name == "synchrotron"
    assert [w.spec.stream for w in event_writers(plan) if isinstance(w.spec, WorkerClass)] == ["events"]
    assert BY_NAME[syncer.part].scaling == "hpa"


# --- recommend through the CLI --------------------------------------------------------------------------


def test_recommend_reads_the_peak_over_the_window_and_proposes_the_change(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_stack(tmp_path)
    answers = Answers(plan, {"ccu": 1234, "messagesPerSecond": 61.2, "knownServers": 131})
    url = serve(answers)
    before = files(tmp_path)
    code, out, err = run(recommend_args(tmp_path, url, "--window", "15m", "--json"), capsys)
    assert code == 0, err
    document = json.loads(out)
    assert set(document) == {"measured", "stack", "recommended", "whatIf", "command"}
    assert files(tmp_path) == before, "recommend writes nothing"
    # Every figure was read as a peak of 5-minute averages over the window, at the scrape interval.
    loads = answers.asked
    assert loads and all(q.startswith("max_over_time((") and q.endswith("[900s:30s])") for q in loads)
    assert all("[300s]" in q for q in loads if "rate(" in q)
    measured = document["measured"]
    assert (measured["ccu"], measured["messagesPerSecond"], measured["federatedServers"]) == (1234, 61.2, 130)
    # Processes too: the most scraped at once over the window (the fake answers `up` only as a peak).
    assert {c["processes"] for c in measured["classes"].values()} == {2}
    # By hand: ccu 1,000 (step 100) → 1,234 rounds up to 1,300; msg/s at 1,000 CCU is estimated at 50
    # (step 5) → 61.2 rounds to 65; servers 100 (step 10) → 130 is 130.
    changes = document["recommended"]["changes"]
    assert changes["ccu"] == {"from": 1000, "to": 1300, "step": 100, "change": "up"}
    assert changes["messagesPerSecond"] == {"from": 50, "to": 65, "step": 5, "change": "up"}
    assert changes["federatedServers"] == {"from": 100, "to": 130, "step": 10, "change": "up"}
    command = document["command"]
    assert command[:4] == ["synapse-workers", "scale", "--stack", STACK]
    for flag, value in (("--ccu", "1300"), ("--messages-per-second", "65"), ("--federated-servers", "130")):
        assert command[command.index(flag) + 1] == value
    reason = command[command.index("--reason") + 1]
    assert "1234 users syncing" in reason and "61.2 msg/s" in reason and "130 federated servers" in reason
    # The what-if is the plan's: synchrotrons at ceil(1300 / 250) = 6 from ceil(1000 / 250) = 4.
    assert document["whatIf"]["changes"]["synchrotron"]["old"]["replicas"] == 4
    assert document["whatIf"]["changes"]["synchrotron"]["new"]["replicas"] == 6
    # Deterministic: the same answers give the same bytes.
    again = run(recommend_args(tmp_path, url, "--window", "15m", "--json"), capsys)
    assert again == (0, out, "")


def test_a_broken_target_is_reported_with_a_pin_when_sizing_says_enough(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_stack(tmp_path)
    # Load as configured, but the media workers at 1.05 of their CPU request and the typing writer (one
    # writer only) at 0.9: by hand, media's 2 pods x 1.05 / 0.7 = 3 → pin 3; typing gets advice, no pin.
    cpu = {"synapse-media-repository": 1.05, "synapse-typing-writer": 0.9}
    answers = Answers(plan, {"ccu": 1000, "messagesPerSecond": 50, "knownServers": 101}, cpu)
    url = serve(answers)
    code, out, err = run(recommend_args(tmp_path, url, "--json"), capsys)
    assert code == 0, err
    document = json.loads(out)
    recommended = document["recommended"]
    assert {c["change"] for c in recommended["changes"].values()} == {"none"}
    flags = {f["class"]: f for f in recommended["flags"]}
    assert set(flags) == {"media-repository", "typing-writer"}
    assert flags["media-repository"]["pin"] == 3 and "formula is wrong" in flags["media-repository"]["advice"]
    assert flags["typing-writer"]["pin"] is None and "CPU" in flags["typing-writer"]["advice"]
    assert recommended["pins"] == {"media-repository": 3}
    assert document["command"][document["command"].index("--pin") + 1] == "media-repository=3"
    assert document["whatIf"]["changes"]["media-repository"]["new"]["replicas"] == 3
    code, text, _ = run(recommend_args(tmp_path, url), capsys)
    assert code == 0 and "Broken targets:" in text and "media-repository" in text


def test_no_change_gives_no_command(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_stack(tmp_path)
    url = serve(Answers(plan, {"ccu": 950, "messagesPerSecond": 48, "knownServers": 96}))
    code, out, err = run(recommend_args(tmp_path, url, "--json"), capsys)
    assert code == 0, err
    document = json.loads(out)
    assert document["command"] == [] and document["whatIf"] is None
    code, text, _ = run(recommend_args(tmp_path, url), capsys)
    assert "No change recommended." in text


# --- refusals: one line, exit 2, nothing written ---------------------------------------------------------


def refused(root: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    before = files(root)
    code, out, err = run(argv, capsys)
    assert code == 2, err
    assert out == "" and err.count("\n") == 1 and err.startswith(f"error: stack '{STACK}': "), err
    assert "Traceback" not in err
    assert files(root) == before
    return err


def test_unreachable_prometheus_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_stack(tmp_path)
    err = refused(tmp_path, recommend_args(tmp_path, "http://127.0.0.1:9"), capsys)
    assert '--prometheus = "http://127.0.0.1:9"' in err and "unreachable" in err and "allowed:" in err


def test_a_query_with_no_data_names_the_metric_and_the_job(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_stack(tmp_path)
    answers = Answers(plan, {"ccu": 1000, "messagesPerSecond": 50, "knownServers": 101})
    answers.empty = {"persisted_events_sep_total"}
    err = refused(tmp_path, recommend_args(tmp_path, serve(answers)), capsys)
    assert "no data for metric synapse_storage_events_persisted_events_sep_total" in err
    assert "scrape job synapse-event-persister" in err and "namespace matrix" in err


def test_known_servers_without_the_flag_is_refused_naming_it(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_stack(tmp_path)
    answers = Answers(plan, {"ccu": 1000, "messagesPerSecond": 50, "knownServers": 101})
    answers.empty = {"synapse_federation_known_servers"}
    err = refused(tmp_path, recommend_args(tmp_path, serve(answers)), capsys)
    assert "synapse_federation_known_servers" in err and "metrics_flags.known_servers" in err


@pytest.mark.parametrize(("window", "why"), [("45s", "at least 4 scrape intervals (120s"), ("soon", "not a duration")])
def test_a_window_too_short_or_malformed_is_refused(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str], window: str, why: str
) -> None:
    plan = write_stack(tmp_path)
    url = serve(Answers(plan, {"ccu": 1000, "messagesPerSecond": 50, "knownServers": 101}))
    err = refused(tmp_path, recommend_args(tmp_path, url, "--window", window), capsys)
    assert f'--window = "{window}"' in err and why in err


def test_a_stack_with_no_deployment_is_refused(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_stack(tmp_path)
    answers = Answers(plan, {"ccu": 1000, "messagesPerSecond": 50, "knownServers": 101})
    answers.targets = targets_body(plan, skip=tuple(promql.scrape_job(w) for w in plan.workloads))
    err = refused(tmp_path, recommend_args(tmp_path, serve(answers)), capsys)
    assert "no scrape target of this stack in namespace matrix" in err and "nothing is deployed" in err


def test_a_workload_nobody_scrapes_is_refused_naming_its_job(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_stack(tmp_path)
    answers = Answers(plan, {"ccu": 1000, "messagesPerSecond": 50, "knownServers": 101})
    answers.targets = targets_body(plan, skip=("synapse-receipts-writer",))
    err = refused(tmp_path, recommend_args(tmp_path, serve(answers)), capsys)
    assert "no data for metric up from scrape job synapse-receipts-writer" in err


def test_a_missing_token_file_is_refused(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_stack(tmp_path)
    url = serve(Answers(plan, {"ccu": 1000, "messagesPerSecond": 50, "knownServers": 101}))
    missing = tmp_path / "nope" / "token"
    err = refused(tmp_path, recommend_args(tmp_path, url, "--bearer-token-file", str(missing)), capsys)
    assert f'--bearer-token-file = "{missing}"' in err and "cannot read it" in err


def test_the_bearer_token_is_sent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from synapse_workers.ops.prometheus import Prometheus, PrometheusError  # noqa: PLC0415

    def refusing(handler: BaseHTTPRequestHandler, _: Server) -> None:
        send(handler, json.dumps({"status": "error", "errorType": "bad_data", "error": "nope"}).encode(), 400)

    server = Server(refusing)
    try:
        token = tmp_path / "token"
        token.write_text("s3cret\n")
        client = Prometheus(server.url, token)
        with pytest.raises(PrometheusError) as caught:
            client.query("up")
        assert [authorization for _, authorization in server.requests] == ["Bearer s3cret"]
        assert "bad_data: nope" in str(caught.value)
    finally:
        server.close()


# --- scale --from-recommendation -----------------------------------------------------------------------


def saved_recommendation(
    root: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str], cpu: dict[str, float] | None = None
) -> tuple[Path, dict[str, Any], str]:
    plan = write_stack(root)
    url = serve(Answers(plan, {"ccu": 1234, "messagesPerSecond": 61.2, "knownServers": 131}, cpu))
    code, out, err = run(recommend_args(root, url, "--json"), capsys)
    assert code == 0, err
    path = root / "recommendation.json"
    path.write_text(out)
    return path, json.loads(out), url


def test_scale_from_a_recommendation_writes_the_change_and_the_measurements(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str]
) -> None:
    cpu = {"synapse-media-repository": 1.05}
    path, document, url = saved_recommendation(tmp_path, serve, capsys, cpu)
    argv = ["scale", "--stack", STACK, "--from-recommendation", str(path), "-C", str(tmp_path)]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    values, _ = read_stack_file(STACK, tmp_path / f"Pulumi.{STACK}.yaml")
    assert values["synapse:ccu"] == "1300"
    assert values["synapse:messagesPerSecond"] == "65"
    assert json.loads(values["synapse:federation"])["servers"] == 130
    # Media at 1.05 of its request: 1,300 CCU still sizes it at max(2, ceil(1.3)) = 2, so it is pinned.
    assert json.loads(values["synapse:workers"])["media-repository"]["replicas"] == 3
    (record,) = yaml.safe_load((tmp_path / "scaling-history.yaml").read_text())
    assert record["reason"] == document["recommended"]["reason"]
    assert record["measured"]["ccu"] == 1234
    assert record["measured"]["targets"]["media-repository"][alerts.CPU_HIGH] == 1.05
    assert record["load"]["ccu"] == "1000 -> 1300"
    # The same file again: the stack moved since it was measured, so it is refused.
    err = refused(tmp_path, argv, capsys)
    assert "changed since it was measured" in err and "ccu 1000 then, 1300 now" in err
    # The next recommend shows the targets before (recorded) and now.
    code, out, err = run(recommend_args(tmp_path, url, "--json"), capsys)
    assert code == 0, err
    last = json.loads(out)["lastChange"]
    assert last["reason"] == record["reason"]
    assert last["targets"]["media-repository"][alerts.CPU_HIGH]["before"] == 1.05


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda d: {**d, "stack": {**d["stack"], "name": "prod"}}, 'it was made for stack "prod"'),
        (lambda d: {"hello": 1}, "not a saved recommendation"),
        (
            lambda d: {
                **d,
                "recommended": {
                    **d["recommended"],
                    "changes": {k: {**v, "change": "none"} for k, v in d["recommended"]["changes"].items()},
                    "pins": {},
                },
            },
            "it recommends no change",
        ),
    ],
)
def test_a_bad_saved_recommendation_is_refused(
    tmp_path: Path,
    serve: Callable[[Answers], str],
    capsys: pytest.CaptureFixture[str],
    edit: Callable[[dict[str, Any]], dict[str, Any]],
    why: str,
) -> None:
    path, document, _ = saved_recommendation(tmp_path, serve, capsys)
    path.write_text(json.dumps(edit(document)))
    argv = ["scale", "--stack", STACK, "--from-recommendation", str(path), "-C", str(tmp_path)]
    err = refused(tmp_path, argv, capsys)
    assert f'--from-recommendation = "{path}"' in err and why in err


def test_from_recommendation_takes_no_other_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_stack(tmp_path)
    argv = ["scale", "--stack", STACK, "--from-recommendation", "x.json", "--ccu", "5", "-C", str(tmp_path)]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "--from-recommendation" in err


def test_static_scrape_jobs_are_the_service_monitors() -> None:
    """A Prometheus without the Operator, configured from `static_scrape_configs`, labels its targets as
    the Operator labels the ServiceMonitors' targets, so every query here reads the same in both."""
    plan = build_plan(load_settings("t", base_values(ccu=5000, monitoring={"enabled": True}, namespace="chat")))
    addresses = {w.part: [(f"{w.name}-0", f"10.0.0.{i}:9090")] for i, w in enumerate(plan.workloads)}
    configs = monitoring.static_scrape_configs(plan, addresses, "15s")
    monitors = [m for m in monitoring.monitoring_manifests(plan) if m["kind"] == "ServiceMonitor"]
    assert sorted(c["job_name"] for c in configs) == sorted(m["metadata"]["name"] for m in monitors)
    for config in configs:
        assert config["metrics_path"] == promql.METRICS_PATH and config["scrape_interval"] == "15s"
        (static,) = config["static_configs"]
        assert static["labels"]["namespace"] == "chat" and static["labels"]["pod"].endswith("-0")


def test_without_federation_no_server_count_is_asked_or_proposed(
    tmp_path: Path, serve: Callable[[Answers], str], capsys: pytest.CaptureFixture[str]
) -> None:
    plan = write_stack(tmp_path, federation={"enabled": False})
    answers = Answers(plan, {"ccu": 2600, "messagesPerSecond": 40})
    code, out, err = run(recommend_args(tmp_path, serve(answers), "--json"), capsys)
    assert code == 0, err
    document = json.loads(out)
    assert not any("known_servers" in q for q in answers.asked)
    assert "federatedServers" not in document["measured"] and "federatedServers" not in document["stack"]
    assert set(document["recommended"]["changes"]) == {"ccu", "messagesPerSecond"}
    # By hand: 1,000 CCU (step 100): 2,600 is 2,600, up. 50 msg/s (step 5): 40 is 40, two steps down.
    assert document["recommended"]["changes"]["ccu"]["to"] == 2600
    assert document["recommended"]["changes"]["messagesPerSecond"] == {
        "from": 50,
        "to": 40,
        "step": 5,
        "change": "down",
    }
    assert "--federated-servers" not in document["command"]
