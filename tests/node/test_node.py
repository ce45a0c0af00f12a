"""`pulumi up` onto a real node: pods that really start, a client through the router's Service, the HPA
for real, a load change that crosses a sizing step, an `up` killed mid-rollout, and `destroy`.

One stack for the module (tests/node/deployment.py says what it changes for a 2-CPU node); the tests
run in order and build on each other, as an operator's first week would. The database starts empty, as
on a first `up`: the program's schema Job prepares it with the image's own `update_synapse_database`
before the stream writers start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from pulumi import automation

from synapse_workers.kube.rollout import STAGES
from synapse_workers.model.stack_config import PROJECT_DIR
from synapse_workers.plan import Plan
from synapse_workers.synapse.routing import route_request
from tests.background import Background
from tests.e2e.client import eventually
from tests.e2e.exchange import client_for, converse, full_exchange
from tests.e2e.topology import register, wait_router
from tests.engine.conftest import TEST_SECRETS, Engine, scratch_stack, shipped_config, wait_for
from tests.engine.executor import CheckExecutor, ingress_controller, kubectl
from tests.engine.operations import PodWatcher, kubernetes_state, ready, refused, shared_config, up
from tests.node.conftest import BIN, TOOLS
from tests.node.deployment import (
    NAMESPACE,
    SYNC_MAX,
    Node,
    connect,
    external_service,
    overrides,
    router_address,
)

pytestmark = pytest.mark.node

READY_TIMEOUT = 900
REGISTRATION = TEST_SECRETS["registrationSharedSecret"]


def wait_ready(node: Node, what: str, timeout: float = READY_TIMEOUT) -> float:
    """Wait until every pod of the namespace is Ready by its own probes; the seconds it took."""
    started = time.monotonic()
    while waiting := node.not_ready():
        assert time.monotonic() - started < timeout, f"{what}: not Ready after {timeout} s: {waiting}"
        time.sleep(2)
    return time.monotonic() - started


def session() -> requests.Session:
    http = requests.Session()
    http.trust_env = False
    return http


def query(node: Node, sql: str) -> list[tuple[Any, ...]]:
    """A query on the stack's database as the synapse role."""
    with contextlib.closing(connect(node.env, "synapse", "synapse", TEST_SECRETS["postgresPassword"])) as db:
        cur = db.cursor()
        cur.execute(sql)
        return list(cur.fetchall())


@pytest.fixture(scope="module")
def node(node_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    scratch = tmp_path_factory.mktemp("node")
    (scratch / "state").mkdir()
    (scratch / "home").mkdir()
    saved = dict(os.environ)
    os.environ.update(
        {
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "PULUMI_BACKEND_URL": (scratch / "state").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": "node-tests",
            "PULUMI_HOME": str(scratch / "home"),
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "KUBECONFIG": node_env["KUBECONFIG"],
        }
    )
    # Nothing runs the config check by hand here: the node runs its Job in the real image.
    engine = Engine(
        backend=scratch / "state", projects=scratch / "projects", executor=CheckExecutor(str(BIN / "kubectl"))
    )
    admin = connect(node_env, "postgres")
    admin.autocommit = True
    stopped = threading.Event()
    stack: automation.Stack | None = None
    ingress: threading.Thread | None = None
    try:
        with admin.cursor() as cur:
            cur.execute("CREATE ROLE synapse LOGIN PASSWORD %s", (TEST_SECRETS["postgresPassword"],))
            cur.execute("CREATE DATABASE synapse OWNER synapse ENCODING 'UTF8' LOCALE 'C' TEMPLATE template0")
        engine.kubectl("create", "namespace", NAMESPACE)
        objects = external_service("postgresql", 5432, node_env["NODE_PG_HOST"], int(node_env["NODE_PG_PORT"]))
        objects += external_service("redis", 6379, node_env["NODE_REDIS_HOST"], int(node_env["NODE_REDIS_PORT"]))
        kubectl(
            str(BIN / "kubectl"),
            "apply",
            "-f",
            "-",
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}),
        )
        stack = scratch_stack("staging", engine.project_for("staging"), {**shipped_config("staging"), **overrides()})
        engine.stacks["staging"] = stack
        ingress = threading.Thread(
            target=ingress_controller, args=(str(BIN / "kubectl"), stopped, router_address), daemon=True
        )
        ingress.start()
        yield Node(engine=engine, env=node_env, stack=stack)
    finally:
        stopped.set()
        if ingress is not None:
            ingress.join(timeout=10)  # no thread of ours outlives the tier (see tests/conftest.py)
        if stack is not None:
            with contextlib.suppress(automation.CommandError):  # a lock a failed test left
                stack.cancel()
            with contextlib.suppress(automation.CommandError):
                stack.destroy(color="never")
        engine.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=true", "--timeout=180s")
        with admin.cursor() as cur:
            cur.execute("DROP DATABASE IF EXISTS synapse WITH (FORCE)")
            cur.execute("DROP ROLE IF EXISTS synapse")
        admin.close()
        os.environ.clear()
        os.environ.update(saved)


def test_first_up_from_empty_every_pod_ready(node: Node, record_property: Any) -> None:
    started = time.monotonic()
    assert up(node.engine, node.stack).summary.result == "succeeded"
    took = time.monotonic() - started + wait_ready(node, "the first up")
    record_property("first_up_to_ready_seconds", round(took))
    print(f"node tier: first up, every pod Ready after {took:.0f} s")
    jobs = node.json("get", "jobs", "-n", NAMESPACE)["items"]
    done = sorted((j["metadata"]["labels"]["app.kubernetes.io/component"], j["status"].get("succeeded")) for j in jobs)
    assert done == [("config-check", 1), ("schema", 1)]
    assert query(node, "SELECT upgraded FROM schema_version") == [(True,)]
    plan = node.plan()
    expected = {w.part: w.size.replicas if w.size else 1 for w in plan.workloads}
    running = Counter(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in node.pods())
    assert dict(running) == {part: count for part, count in expected.items() if count}, running
    assert len(running) == 1 + 16, "main and every class but thread subscriptions (off unless MSC4306 is on)"
    images = {c["image"] for p in node.json("get", "pods", "-n", NAMESPACE)["items"] for c in p["spec"]["containers"]}
    assert {"ghcr.io/element-hq/synapse:v1.163.2", "docker.io/library/haproxy:3.2"} <= images
    assert "ghcr.io/cloudnative-pg/pgbouncer:1.24.1" in images
    versions = session().get(f"{node.router()}/_matrix/client/versions", timeout=10)
    assert "v1.1" in versions.json()["versions"]
    assert set(node.stack.preview(expect_no_changes=True, color="never").change_summary) == {"same"}


def log_in(base: str, account: dict[str, Any], device: str) -> dict[str, Any]:
    body = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": account["user_id"]},
        "password": account["password"],
        "device_id": device,
    }
    answer = session().post(f"{base}/_matrix/client/v3/login", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def check_routed(plan: Plan, served: dict[str, list[tuple[str, str, str]]]) -> set[str]:
    """Every request a Synapse pod served on its client listener reached the class the routing table
    names for it; the classes that served any."""
    wrong = []
    classes = set()
    for pod, requests_served in served.items():
        for component, method, path in requests_served:
            classes.add(component)
            expected = route_request(plan, method, path)
            if expected != component:
                wrong.append(f"{pod}: {method} {path} (the table says {expected})")
    assert not wrong, wrong[:10]
    return classes


def test_a_client_reaches_the_class_the_routing_table_names(node: Node) -> None:
    base = node.router()
    alice = register(base, REGISTRATION, "alice")
    bob = register(base, REGISTRATION, "bob")
    phones = [log_in(base, alice, f"ALICEPHONE{i}") for i in range(2)]
    assert len({alice["device_id"], *(p["device_id"] for p in phones)}) == 3
    asyncio.run(full_exchange(base, alice, bob))
    http = session()
    auth = {"Authorization": f"Bearer {alice['access_token']}"}
    user = alice["user_id"]
    # Account data and push rules: written by their own stream writers, read back through the router.
    data = {"theme": "dark", "nonce": os.urandom(4).hex()}
    put = http.put(f"{base}/_matrix/client/v3/user/{user}/account_data/org.example.node", json=data, headers=auth)
    assert put.status_code == 200, put.text
    assert http.get(f"{base}/_matrix/client/v3/user/{user}/account_data/org.example.node", headers=auth).json() == data
    rule = {"conditions": [{"kind": "event_match", "key": "content.body", "pattern": "node*"}], "actions": []}
    put = http.put(f"{base}/_matrix/client/v3/pushrules/global/override/node.quiet", json=rule, headers=auth)
    assert put.status_code == 200, put.text
    rules = http.get(f"{base}/_matrix/client/v3/pushrules/", headers=auth).json()
    assert "node.quiet" in {r["rule_id"] for r in rules["global"]["override"]}
    # The user directory (kept by its own worker) finds Bob, who shares a room with Alice.
    eventually(
        "the user directory lists bob",
        lambda: (
            bob["user_id"]
            in {
                r["user_id"]
                for r in http.post(
                    f"{base}/_matrix/client/v3/user_directory/search", json={"search_term": "bob"}, headers=auth
                ).json()["results"]
            }
        ),
    )
    # Every device of Alice's syncs.
    for token in (alice["access_token"], *(p["access_token"] for p in phones)):
        answer = http.get(f"{base}/_matrix/client/v3/sync?timeout=0", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200 and answer.json()["rooms"]["join"], answer.text[:300]
    classes = check_routed(node.plan(), node.served())
    wanted = {
        "main", "synchrotron", "generic-worker", "media-repository", "typing-writer", "receipts-writer",
        "todevice-writer", "presence-writer", "account-data-writer", "push-rules-writer",
    }  # fmt: skip
    assert wanted <= classes, f"no request reached {sorted(wanted - classes)}"


class SyncLoad(Background):
    """Full initial syncs through the router, users taken in turn: real work for the synchrotrons (each
    user's rooms, state and timeline), not idle long-polls. Counts every answer by status."""

    def __init__(self, base: str, tokens: list[str], threads: int, pause: float = 0.0) -> None:
        super().__init__([functools.partial(self._run, i) for i in range(threads)])
        self.base, self.tokens, self.pause = base, tokens, pause
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def _run(self, offset: int) -> None:
        http = session()
        turn = offset
        while not self.stop.is_set():
            token = self.tokens[turn % len(self.tokens)]
            turn += 1
            try:
                answer = http.get(
                    f"{self.base}/_matrix/client/v3/sync?timeout=0",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
                status = answer.status_code
            except requests.RequestException as error:
                status = 0
                with self.lock:
                    self.failures.append(str(error)[:200])
            with self.lock:
                self.statuses[status] += 1
            if self.pause:
                self.stop.wait(self.pause)


def bearer(account: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['access_token']}"}


def patiently(call: Callable[[], requests.Response], timeout: float = 120) -> requests.Response:
    """Synapse's rate limits (joins per room, messages per user) answer 429 with how long to wait: wait."""
    deadline = time.monotonic() + timeout
    while (answer := call()).status_code == 429 and time.monotonic() < deadline:
        time.sleep(answer.json().get("retry_after_ms", 1000) / 1000 + 0.1)
    return answer


def hpa_status(node: Node) -> dict[str, Any]:
    return dict(node.json("get", "hpa", "synapse-synchrotron", "-n", NAMESPACE)["status"])


def sync_pods(node: Node) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in node.pods("app.kubernetes.io/component=synchrotron")}


def ready_sync_pods(node: Node) -> set[str]:
    return {name for name, pod in sync_pods(node).items() if ready(pod)}


def test_the_hpa_adds_synchrotrons_under_sync_load_and_removes_them_after(node: Node, record_property: Any) -> None:
    base = node.router()
    wait_for("the synchrotrons at their floor of 2", lambda: len(sync_pods(node)) == 2, 300, every=2)
    first = set(sync_pods(node))
    owner = register(base, REGISTRATION, "loadowner")
    users = [owner] + [register(base, REGISTRATION, f"load{i}") for i in range(15)]
    http = session()
    auth = {"Authorization": f"Bearer {owner['access_token']}"}
    room = http.post(f"{base}/_matrix/client/v3/createRoom", json={"preset": "public_chat"}, headers=auth).json()
    join = f"{base}/_matrix/client/v3/join/{room['room_id']}"
    for member in users[1:]:
        joined = patiently(functools.partial(http.post, join, headers=bearer(member), json={}))
        assert joined.status_code == 200, joined.text
    for i in range(30):
        send = f"{base}/_matrix/client/v3/rooms/{room['room_id']}/send/m.room.message/load{i}"
        body = {"msgtype": "m.text", "body": f"load {i}"}
        sent = patiently(functools.partial(http.put, send, json=body, headers=bearer(users[i % len(users)])))
        assert sent.status_code == 200, sent.text
    tokens = [u["access_token"] for u in users]
    peak_utilisation = 0
    with SyncLoad(base, tokens, threads=3) as load:
        started = time.monotonic()

        def scaled_up() -> bool:
            nonlocal peak_utilisation
            for metric in hpa_status(node).get("currentMetrics") or []:
                peak_utilisation = max(peak_utilisation, metric["resource"]["current"].get("averageUtilization", 0))
            return len(ready_sync_pods(node)) > 2

        wait_for("the HPA adding synchrotrons under /sync load", scaled_up, 420, every=2)
        reacted = time.monotonic() - started
        added = ready_sync_pods(node) - first
        # The router finds the new pods through cluster DNS and hashes some users onto them.
        wait_for(
            "a new synchrotron serving /sync through the router",
            lambda: any(
                method == "GET" and path.endswith("/sync")
                for pod, served in node.served().items()
                if pod in added
                for _, method, path in served
            ),
            120,
            every=2,
        )
    target = node.plan().settings.hpa.target_cpu_utilization
    assert peak_utilisation > target, f"the load reached {peak_utilisation} % of the request, not over {target} %"
    assert load.statuses[200] > 0 and set(load.statuses) == {200}, (load.statuses, load.failures[:3])
    # After the load: a light client keeps syncing while the HPA removes the pods it added.
    with SyncLoad(base, tokens[:4], threads=1, pause=2.0) as light:
        settled = wait_for("the HPA back at 2 synchrotrons", lambda: len(sync_pods(node)) == 2, 420, every=2)
        time.sleep(5)
    assert light.statuses[200] > 0 and set(light.statuses) == {200}, (light.statuses, light.failures[:3])
    record_property("hpa_scale_up_seconds", round(reacted))
    record_property("hpa_scale_down_seconds", round(settled))
    print(
        f"node tier: HPA added {len(added)} synchrotron(s) {reacted:.0f} s into the load (peak {peak_utilisation} % "
        f"of the request, {sum(load.statuses.values())} syncs), back at 2 {settled:.0f} s after it"
    )
    assert len(added) <= SYNC_MAX - 2


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synapse_workers", *args], capture_output=True, text=True, check=False, cwd=PROJECT_DIR
    )


def test_a_load_change_across_a_sizing_step_rolls_in_stage_order(node: Node, record_property: Any) -> None:
    base = node.router()
    alice = register(base, REGISTRATION, "carol")
    bob = register(base, REGISTRATION, "dave")
    before = node.plan()
    done = cli("scale", "--stack", "staging", "-C", str(node.engine.stack_file(node.stack).parent), "--ccu", "3000",
               "--reason", "node tier: more users")  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = node.plan()
    sizes = {s.spec.name: s.replicas for s in after.sizes}
    assert sizes["event-persister"] == 3 and sizes["media-repository"] == 3, sizes
    assert {s.spec.name: s.replicas for s in before.sizes}["event-persister"] == 2
    started = time.monotonic()
    with PodWatcher(node.engine, NAMESPACE) as watcher:
        assert up(node.engine, node.stack).summary.result == "succeeded"
        took = time.monotonic() - started + wait_ready(node, "after the load change")
    record_property("load_change_seconds", round(took))
    print(f"node tier: a CCU change from 500 to 3000 (three persisters, three media workers) in {took:.0f} s")
    # The routing changed (a third persister): a quiesce, so no sample shows pods of both shared configs.
    mixed = [pods for sample, pods in zip(watcher.samples, watcher.pods, strict=True) if len(sample) > 1]
    assert not mixed, mixed[:2]
    shared_configs = [next(iter(sample)) for sample in watcher.samples if sample]
    new_shared = shared_configs[-1]
    assert len(set(shared_configs)) == 2 and any(not sample for sample in watcher.samples)
    # The new pods became Ready stage by stage: every writer before main, main before every reader.
    stage = {w.part: w.rules.stage for w in after.workloads}
    first = {part: t for (part, shared), t in watcher.first_ready.items() if shared == new_shared}
    assert set(first) == set(stage), sorted(set(stage) - set(first))
    for earlier, earlier_at in first.items():
        for later, later_at in first.items():
            if stage[earlier] < stage[later]:
                assert earlier_at < later_at, f"{later} ({STAGES[stage[later]]}) Ready before {earlier}"
    assert len(node.pods("app.kubernetes.io/component=event-persister")) == 3
    # The client keeps working on the new routing, in a new room and its conversation, once the router has
    # marked the new pods up (HAProxy's `rise 2` health checks: until then, the quiesce's 503s go on).
    wait_router(base, alice["access_token"], timeout=120)
    asyncio.run(full_exchange(base, alice, bob))
    check_routed(after, node.served())
    assert set(node.stack.preview(expect_no_changes=True, color="never").change_summary) == {"same"}


def test_rollout_undo_brings_back_a_revision_whose_config_was_kept(node: Node) -> None:
    """A config change of the generic workers, then `kubectl rollout undo`: the previous revision's pods
    mount the earlier ConfigMap, which the update kept (README, "Earlier configs are kept"), and become
    Ready through their real probes; `up` then puts the stack file's revision back."""

    def generic_worker_config() -> str:
        found = node.json("get", "deployment", "synapse-generic-worker", "-n", NAMESPACE)
        volumes = found["spec"]["template"]["spec"]["volumes"]
        return str(next(v["configMap"]["name"] for v in volumes if v["name"] == "config-class"))

    earlier = generic_worker_config()
    workers = node.engine.value(node.stack, "workers")
    workers["generic-worker"] = {**workers["generic-worker"], "database": {"cpMax": 4}}
    node.engine.set(node.stack, "workers", workers)
    assert up(node.engine, node.stack).summary.result == "succeeded"
    changed = generic_worker_config()
    assert changed != earlier
    node.engine.kubectl("rollout", "undo", "deployment/synapse-generic-worker", "-n", NAMESPACE)
    node.engine.kubectl("rollout", "status", "deployment/synapse-generic-worker", "-n", NAMESPACE, "--timeout=300s")
    assert generic_worker_config() == earlier
    wait_ready(node, "after the rollback")
    assert up(node.engine, node.stack, refresh=True).summary.result == "succeeded"
    assert generic_worker_config() == changed
    wait_ready(node, "after the stack file's revision came back")


def engine_process() -> int | None:
    """The `pulumi` CLI the Automation API started for this test process (the engine)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == os.getpid() and cmdline and cmdline[0].endswith(b"/pulumi") and b"up" in cmdline:
            return int(entry.name)
    return None


def test_an_up_killed_mid_rollout_is_recovered_and_the_guard_holds(node: Node) -> None:
    """SIGKILL of the engine while the writers roll: the lock and the pending operations it leaves are
    cleared by the README's procedure (`pulumi cancel`, then `pulumi up`); meanwhile the
    maintenance-window guard reads what is deployed, so it still refuses what the killed run had planned."""
    base = node.router()
    erin = register(base, REGISTRATION, "erin")
    frank = register(base, REGISTRATION, "frank")

    async def before() -> str:
        a, b = await client_for(base, erin), await client_for(base, frank)
        try:
            created = await a.room_create(name="kept", invite=[b.user_id])
            await b.join(created.room_id)
            await converse(a, b, created.room_id, "before the kill")
            return str(created.room_id)
        finally:
            await a.close()
            await b.close()

    room = asyncio.run(before())
    main_before = node.json("get", "statefulset", "synapse-main", "-n", NAMESPACE)["spec"]["template"]
    node.engine.set(node.stack, "requireMaintenanceWindow", "true")
    node.engine.set(node.stack, "maintenanceWindow", "true")
    node.engine.set(node.stack, "media", {"claimName": "synapse-media", "size": "1Gi", "maxUploadSize": "60M"})
    outcome: dict[str, Any] = {}

    def run_up() -> None:
        try:
            node.stack.up(color="never")
            outcome["result"] = "succeeded"
        except automation.CommandError as error:
            outcome["error"] = str(error)

    runner = threading.Thread(target=run_up)
    runner.start()
    writer_sets = [p for p in node.plan().workloads if p.rules.stage == STAGES.index("writers")]
    generations = {
        w.name: node.json("get", "statefulset", w.name, "-n", NAMESPACE)["metadata"]["generation"] for w in writer_sets
    }

    def writers_rolling() -> bool:
        return any(
            node.json("get", "statefulset", name, "-n", NAMESPACE)["metadata"]["generation"] != generation
            for name, generation in generations.items()
        )

    wait_for("the writers starting to roll", writers_rolling, 300, every=2)
    pid = engine_process()
    assert pid is not None, "no pulumi engine process found"
    os.kill(pid, signal.SIGKILL)
    runner.join(timeout=120)
    assert "error" in outcome, outcome
    # What the kill left: main not rolled, the stack locked.
    assert node.json("get", "statefulset", "synapse-main", "-n", NAMESPACE)["spec"]["template"] == main_before
    node.engine.set(node.stack, "maintenanceWindow", "false")
    with pytest.raises(automation.CommandError) as locked:
        node.stack.up(color="never")
    assert "the stack is currently locked" in str(locked.value), str(locked.value)[-2000:]
    # The guard, reading the deployed main (not the killed run's plan), refuses the restart it still needs.
    assert "this change restarts synapse-main" in refused(node.engine, node.stack)
    # The README's procedure after a killed `up`: cancel (the lock), then `up` again, no refresh.
    node.stack.cancel()
    node.engine.set(node.stack, "maintenanceWindow", "true")
    with PodWatcher(node.engine, NAMESPACE) as watcher:
        assert up(node.engine, node.stack).summary.result == "succeeded"
        wait_ready(node, "after the recovery")
    wait_router(base, erin["access_token"], timeout=120)
    # Still in stage order: main's new pod Ready only after every writer's new pods were.
    new_shared = shared_config(node.json("get", "pod", "synapse-main-0", "-n", NAMESPACE))
    ready = {part: t for (part, config), t in watcher.first_ready.items() if config == new_shared}
    writers = [w.part for w in writer_sets]
    assert set(writers) | {"main"} <= set(ready), sorted(ready)
    assert max(ready[w] for w in writers) < ready["main"]
    node.engine.set(node.stack, "maintenanceWindow", "false")
    assert set(node.stack.preview(expect_no_changes=True, color="never").change_summary) == {"same"}
    state = json.dumps(node.stack.export_stack().deployment)
    assert '"pending_operations"' not in state or '"pending_operations": []' in state

    async def after() -> None:
        a, b = await client_for(base, erin), await client_for(base, frank)
        try:
            await converse(a, b, room, "after the recovery")
        finally:
            await a.close()
            await b.close()

    asyncio.run(after())


def namespace_containers() -> list[str]:
    listed = subprocess.run(
        [str(BIN / "ctr"), "--address", str(TOOLS / "node" / "containerd" / "containerd.sock"), "-n", "k8s.io",
         "containers", "ls", "-q", f'labels."io.kubernetes.pod.namespace"=={NAMESPACE}'],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    return listed.stdout.split()


def test_destroy_leaves_nothing_behind_but_what_the_readme_keeps(node: Node) -> None:
    node.stack.destroy(color="never")
    assert kubernetes_state(node.stack) == {}
    left = node.engine.kubectl(
        "get", "all,configmap,secret,pvc,ingress,networkpolicy,pdb,hpa,job,serviceaccount,role,rolebinding",
        "-n", NAMESPACE, "-o", "name",
    ).split()  # fmt: skip
    # Kept: what this test made (the namespace, the external services' Services and EndpointSlices), and
    # what Kubernetes makes in every namespace.
    kept = {"service/postgresql", "service/redis", "configmap/kube-root-ca.crt", "serviceaccount/default"}
    assert set(left) <= kept, sorted(set(left) - kept)
    wait_for("every pod gone", lambda: not node.json("get", "pods", "-n", NAMESPACE)["items"], 180, every=2)
    # And on the node itself: no container of the namespace is left in containerd.
    wait_for("every container of the namespace removed", lambda: not namespace_containers(), 180, every=2)
    # The database is the operator's: destroy leaves it, with its users.
    assert query(node, "SELECT count(*) >= 20 FROM users") == [(True,)]
