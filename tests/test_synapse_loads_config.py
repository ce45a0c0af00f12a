"""Every rendered per-process config through real Synapse's own loader (matrix-synapse, as pinned).

Synapse checks its worker topology only at start-up: a config it rejects is a crash loop after the
rollout has begun. Loading the exact files render writes, with nothing but the pod-local paths moved
into a temporary directory, shows what the pods would see, and the assertions compare what Synapse
understood against the plan, not against the rendered text.
"""

from __future__ import annotations

import contextlib
import copy
import json
import secrets
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from signedjson.key import generate_signing_key, write_signing_keys
from synapse.config import ConfigError
from synapse.config.homeserver import HomeServerConfig
from synapse.rest.well_known import ServerWellKnownResource

from synapse_workers.cli.render import Rendered, render_stack
from synapse_workers.model.settings import SECRET_FILES, Settings, load_settings
from synapse_workers.model.stack_config import PROJECT_DIR, read_stack_file
from synapse_workers.model.worker_classes import MAIN, WORKER_CLASSES
from synapse_workers.plan import Plan, build_plan
from synapse_workers.synapse.config_files import MEDIA_DIR, SECRETS_DIR, WORKER_APP
from synapse_workers.synapse.routing import route_request

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
"""libyaml where present: a prod render has hundreds of files (Synapse itself always parses in Python)."""
MASTER = "master"
"""Synapse's instance name for the main process (MAIN_PROCESS_INSTANCE_NAME)."""
FEDERATION_ON = '{"enabled": true, "servers": 200}'
SWEEP_CCU = (100, 1000, 5000, 20000, 50000)


@dataclass(frozen=True)
class Case:
    stack: str
    overrides: tuple[tuple[str, str], ...] = ()
    every_pod: bool = True
    """False: load main and one process per class (see `sampled_files`)."""
    redis_auth: bool = False


CASES: dict[str, Case] = {
    "staging": Case("staging"),
    "prod": Case("prod"),
    "prod-federation": Case("prod", (("synapse:federation", FEDERATION_ON),)),
    # The one case with redis.password_path.
    "staging-redis-auth": Case("staging", every_pod=False, redis_auth=True),
    # At 50,000 CCU prod runs well over 100 Synapse pods; loading each costs ~0.15 s and shows nothing a
    # sample does not, once `test_pods_of_a_class_differ_only_in_worker_name` has shown that every pod of
    # a class reads the same config apart from its name. So the sweep loads main plus one pod per class.
    **{f"prod-ccu-{ccu}": Case("prod", (("synapse:ccu", str(ccu)),), every_pod=False) for ccu in SWEEP_CCU},
}


@dataclass(frozen=True)
class Rendering:
    settings: Settings
    plan: Plan
    rendered: Rendered

    def raw(self, file_name: str) -> dict[str, Any]:
        """A fresh copy of one process's config as rendered."""
        loaded: dict[str, Any] = yaml.load(self.rendered.processes[file_name], Loader=_LOADER)
        return loaded

    def manifest(self, kind: str, name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.load(self.rendered.manifests[f"{kind.lower()}-{name}.yaml"], Loader=_LOADER)
        return loaded


@cache
def rendering(case_id: str) -> Rendering:
    case = CASES[case_id]
    values, secret_keys = read_stack_file(case.stack, PROJECT_DIR / f"Pulumi.{case.stack}.yaml")
    values.update(dict(case.overrides))
    if case.redis_auth:
        values["synapse:redis"] = json.dumps({**json.loads(values["synapse:redis"]), "auth": True})
    settings = load_settings(case.stack, values, secret_keys)
    return Rendering(settings, build_plan(settings), render_stack(case.stack, values, secret_keys))


def class_of(plan: Plan, file_name: str) -> str:
    """The class a process file belongs to, from the plan's pod names (main included)."""
    stem = file_name.removesuffix(".yaml")
    for class_name, pods in plan.topology.members.items():
        if stem in pods:
            return class_name
    for size in plan.sizes:
        if size.deployed and size.spec.kind == "Deployment" and stem == size.spec.workload_name:
            return size.spec.name
    raise AssertionError(f"{file_name}: no process of the plan")


def expected_files(plan: Plan) -> set[str]:
    """One file per StatefulSet pod (main included) and one sample per deployed Deployment class."""
    pods = {f"{pod}.yaml" for members in plan.topology.members.values() for pod in members}
    samples = {f"{s.spec.workload_name}.yaml" for s in plan.sizes if s.deployed and s.spec.kind == "Deployment"}
    return pods | samples


def sampled_files(plan: Plan) -> list[str]:
    """Main, the first pod of each stateful class and each autoscaled class's sample."""
    chosen = [f"{MAIN.pod}.yaml"]
    for size in plan.sizes:
        if not size.deployed:
            continue
        if size.spec.kind == "StatefulSet":
            chosen.append(f"{plan.topology.members[size.spec.name][0]}.yaml")
        else:
            chosen.append(f"{size.spec.workload_name}.yaml")
    return chosen


def expected_secret_files(settings: Settings) -> set[str]:
    """Every secret but PostgreSQL's (libpq reads PGPASSWORD) reaches Synapse as a file."""
    return {
        file
        for key, file in SECRET_FILES.items()
        if key != "postgresPassword" and (key != "redisPassword" or settings.redis.auth)
    }


@dataclass(frozen=True)
class Stubs:
    root: Path
    contents: dict[str, str]
    """Secret file name → what the stub holds."""
    signing_key_version: str


def make_stubs(root: Path) -> Stubs:
    secret_dir = root / "secrets"
    secret_dir.mkdir(parents=True)
    key = generate_signing_key(f"a_{secrets.token_hex(2)}")
    contents: dict[str, str] = {}
    for file in SECRET_FILES.values():
        path = secret_dir / file
        if file == SECRET_FILES["signingKey"]:
            with path.open("w", encoding="utf-8") as stream:
                write_signing_keys(stream, [key])
        else:
            contents[file] = secrets.token_urlsafe(32)
            path.write_text(contents[file] + "\n", encoding="utf-8")
    return Stubs(root, contents, str(key.version))


def _local_secret(path: Any, stubs: Stubs, moved: set[str]) -> str:
    assert isinstance(path, str) and path.startswith(f"{SECRETS_DIR}/"), path
    name = path.removeprefix(f"{SECRETS_DIR}/")
    moved.add(name)
    return str(stubs.root / "secrets" / name)


def localise(config: dict[str, Any], stubs: Stubs) -> tuple[dict[str, Any], set[str]]:
    """Move the pod-local paths (secret files, media store) under `stubs.root`; change nothing else.

    Returns the new config and the secret file names it referred to.
    """
    local = copy.deepcopy(config)
    moved: set[str] = set()
    for key, value in config.items():
        if key.endswith("_path") and isinstance(value, str) and value.startswith(f"{SECRETS_DIR}/"):
            local[key] = _local_secret(value, stubs, moved)
    if "password_path" in config.get("redis", {}):
        local["redis"]["password_path"] = _local_secret(config["redis"]["password_path"], stubs, moved)
    assert config["media_store_path"] == MEDIA_DIR
    local["media_store_path"] = str(stubs.root / "media")
    # Nothing else may still point into the pod's filesystem layout: that would be a path we did not stub.
    text = json.dumps(local)
    assert f'"{SECRETS_DIR}/' not in text and f'"{MEDIA_DIR}' not in text
    return local, moved


def load(config: dict[str, Any], where: Path) -> Any:
    """Synapse's own entry point for workers, as `python -m synapse.app.generic_worker -c …` runs it."""
    where.write_text(yaml.dump(config, Dumper=_DUMPER), encoding="utf-8")
    # Synapse resolves relative defaults against the working directory: keep any it creates in tmp.
    with contextlib.chdir(where.parent):
        return HomeServerConfig.load_config("Synapse", ["-c", str(where)])


@dataclass(frozen=True)
class Loaded:
    case: Case
    r: Rendering
    stubs: Stubs
    configs: dict[str, Any]
    """File name → the HomeServerConfig Synapse built from it."""
    secrets_used: dict[str, set[str]]

    def instance_names(self) -> dict[str, str]:
        return {name: cfg.worker.instance_name for name, cfg in self.configs.items()}


@pytest.fixture(scope="module", params=list(CASES))
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    case_id: str = request.param
    case = CASES[case_id]
    r = rendering(case_id)
    root = tmp_path_factory.mktemp(case_id)
    stubs = make_stubs(root)
    files = sorted(r.rendered.processes) if case.every_pod else sampled_files(r.plan)
    configs: dict[str, Any] = {}
    used: dict[str, set[str]] = {}
    for file_name in files:
        local, used[file_name] = localise(r.raw(file_name), stubs)
        configs[file_name] = load(local, root / file_name)
    return Loaded(case, r, stubs, configs, used)


def test_render_writes_one_config_per_process(loaded: Loaded) -> None:
    """A process without a file would go unchecked here; a stale pod name would be unreachable in the cluster."""
    plan = loaded.r.plan
    assert set(loaded.r.rendered.processes) == expected_files(plan)
    # The pod names the plan wires into instance_map are the ones Kubernetes gives a StatefulSet's pods.
    deployed = {"main"} | {s.spec.name for s in plan.sizes if s.deployed}
    for class_name, pods in plan.topology.members.items():
        if class_name not in deployed:
            assert pods == (), class_name
            continue
        workload = _workload(loaded.r, class_name)
        assert workload["kind"] == "StatefulSet"
        name, replicas = workload["metadata"]["name"], workload["spec"]["replicas"]
        assert list(pods) == [f"{name}-{i}" for i in range(replicas)], class_name
    if loaded.case.every_pod:
        assert set(loaded.configs) == expected_files(plan)
    else:
        assert {class_of(plan, f) for f in loaded.configs} == {"main"} | {s.spec.name for s in plan.sizes if s.deployed}


def test_pods_of_a_class_differ_only_in_worker_name(loaded: Loaded) -> None:
    """What makes loading one pod per class enough; and every process must share the topology keys."""
    plan = loaded.r.plan
    by_class: dict[str, dict[str, Any]] = {}
    for file_name in loaded.r.rendered.processes:
        raw = loaded.r.raw(file_name)
        raw.pop("worker_name", None)
        first = by_class.setdefault(class_of(plan, file_name), raw)
        assert raw == first, file_name
    topology_keys = ("instance_map", "stream_writers", "federation_sender_instances")
    views = {json.dumps({k: c.get(k) for k in topology_keys}, sort_keys=True) for c in by_class.values()}
    assert len(views) == 1


def test_instance_names(loaded: Loaded) -> None:
    """Synapse routes replication by instance name: a pod must know itself by the name the others use."""
    plan = loaded.r.plan
    stateful_pods = {pod for pods in plan.topology.members.values() for pod in pods}
    names = loaded.instance_names()
    for file_name, cfg in loaded.configs.items():
        stem = file_name.removesuffix(".yaml")
        if stem == MAIN.pod:
            assert names[file_name] == MASTER
            assert cfg.worker.worker_app is None
            continue
        assert cfg.worker.worker_app == WORKER_APP
        if stem in stateful_pods:
            assert names[file_name] == stem
        else:
            # A Deployment's pods get their name at start-up; the sample stands for one of them.
            assert names[file_name].startswith(f"{stem}-")
            assert names[file_name] not in stateful_pods
    assert len(set(names.values())) == len(names), "two processes would share an instance name"


def test_stream_writers_are_the_plans_pods(loaded: Loaded) -> None:
    """As Synapse parsed them, not as written: a typo'd stream key would leave the default (main) in place."""
    members = loaded.r.plan.topology.members
    single = {c.stream: c.name for c in WORKER_CLASSES if c.exactly_one and c.stream is not None}
    assert set(single) == {"typing", "to_device", "presence", "account_data", "push_rules"}
    writer_classes = {c.stream: c.name for c in WORKER_CLASSES if c.stream is not None}
    for file_name, cfg in loaded.configs.items():
        writers = cfg.worker.writers
        assert writers.events == list(members["event-persister"]), file_name
        assert writers.receipts == list(members["receipts-writer"]), file_name
        for stream, class_name in writer_classes.items():
            # A class not deployed leaves the stream to main, Synapse's default.
            assert getattr(writers, stream) == list(members[class_name] or (MASTER,)), (file_name, stream)
            if stream in single:
                assert len(getattr(writers, stream)) == 1
        # Quarantines are written by the first media pod (the admin API runs only on media processes)
        # and by main, which runs the schema background update that backfills the stream.
        assert writers.quarantined_media_changes == [MASTER, members["media-repository"][0]]


def test_writers_listen_for_replication_where_the_instance_map_says(loaded: Loaded) -> None:
    """A writer that is in instance_map but serves no replication listener there drops every write."""
    names = loaded.instance_names()
    worker_view = next(c for f, c in loaded.configs.items() if f != f"{MAIN.pod}.yaml").worker.instance_map
    members = loaded.r.plan.topology.members
    expected_in_map = {MASTER} | {
        pod
        for c in WORKER_CLASSES
        if c.needs_instance_map
        for pod in members.get(c.name, ())[: 1 if c.first_pod_writes else None]
    }
    assert set(worker_view) == expected_in_map
    for name, location in worker_view.items():
        # Reachable by name only through the headless Service the StatefulSet names.
        pod = MAIN.pod if name == MASTER else name
        workload = _workload(loaded.r, class_of(loaded.r.plan, f"{pod}.yaml"))
        service = loaded.r.manifest("Service", workload["spec"]["serviceName"])
        assert service["spec"]["clusterIP"] == "None"
        namespace = workload["metadata"]["namespace"]
        assert location.host == f"{pod}.{service['metadata']['name']}.{namespace}.svc.cluster.local", name
    for file_name, cfg in loaded.configs.items():
        name = names[file_name]
        listeners = cfg.server.listeners if name == MASTER else cfg.worker.worker_listeners
        replication_ports = {
            listener.port
            for listener in listeners
            if listener.http_options is not None
            and any("replication" in resource.names for resource in listener.http_options.resources)
        }
        if name in worker_view:
            assert replication_ports == {worker_view[name].port}, file_name
        elif class_of(loaded.r.plan, file_name) == "media-repository":
            # One class file for every media pod: the later pods listen too, though only pod 0 is named.
            assert replication_ports == {worker_view[members["media-repository"][0]].port}, file_name
        else:
            assert replication_ports == set(), file_name


def test_media_repo_only_on_media_workers(loaded: Loaded) -> None:
    """Synapse loads the media repo everywhere unless told not to; elsewhere it would write to a read-only root."""
    plan = loaded.r.plan
    media_pods = plan.topology.members["media-repository"]
    for file_name, cfg in loaded.configs.items():
        is_media = class_of(plan, file_name) == "media-repository"
        assert cfg.media.can_load_media_repo is is_media, file_name
        if is_media:
            assert cfg.media.media_instance_running_background_jobs == media_pods[0]
            assert Path(cfg.media.media_store_path).is_dir()
    # Every media worker must see the same store: the shared claim, mounted where the config points.
    workload = _workload(loaded.r, "media-repository")["spec"]["template"]["spec"]
    store = loaded.r.raw(f"{media_pods[0]}.yaml")["media_store_path"]
    (mount,) = [m for m in workload["containers"][0]["volumeMounts"] if m["mountPath"] == store]
    (volume,) = [v for v in workload["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == loaded.r.settings.media.claim_name


def test_federation_senders(loaded: Loaded) -> None:
    """Every process must agree on the sender list (sharding hashes over it); with federation off, none sends."""
    settings, plan = loaded.r.settings, loaded.r.plan
    senders = list(plan.topology.members.get("federation-sender", ()))
    names = loaded.instance_names()
    for file_name, cfg in loaded.configs.items():
        assert cfg.worker.federation_shard_config.instances == senders, file_name
        assert cfg.worker.send_federation is (names[file_name] in senders), file_name
        if settings.federation.enabled:
            # An empty whitelist would refuse every remote server.
            assert cfg.federation.federation_domain_whitelist is None, file_name
        else:
            # No process sends, none accepts a remote server, none asks a key server.
            assert cfg.federation.federation_domain_whitelist == {}, file_name
            assert cfg.key.key_servers == [], file_name
    if settings.federation.enabled:
        assert senders, "federation enabled but no federation-sender pods"
        if loaded.case.every_pod:
            assert {names[f] for f, c in loaded.configs.items() if c.worker.send_federation} == set(senders)
    else:
        assert senders == []


def test_federation_is_reachable_through_the_ingress(loaded: Loaded) -> None:
    """With federation on, remote servers ask https://<serverName>/.well-known/matrix/server: the Ingress
    must take that host, the router must send the path to main, and main (as Synapse loads its config)
    must answer it with the delegation to port 443 the Ingress serves. With it off, main answers nothing."""
    settings, plan = loaded.r.settings, loaded.r.plan
    main = loaded.configs[f"{MAIN.pod}.yaml"]
    server_host = settings.server_name.split(":", 1)[0]
    ingress = next(m for m in plan.router_manifests if m["kind"] == "Ingress")
    hosts = {rule["host"] for rule in ingress["spec"]["rules"]}
    assert route_request(plan, "GET", "/.well-known/matrix/server") == "main"
    answer = ServerWellKnownResource(SimpleNamespace(config=main)).render_GET(_Request())  # type: ignore[arg-type]
    if settings.federation.enabled:
        assert server_host in hosts
        assert json.loads(answer) == {"m.server": f"{server_host}:443"}
    else:
        assert answer.startswith(b"404.")


class _Request:
    """Just what Synapse's well-known resource calls on a request."""

    def setResponseCode(self, code: int) -> None:  # noqa: N802 (Twisted's name)
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:  # noqa: N802 (Twisted's name)
        pass


def test_secrets_are_read_from_mounted_files(loaded: Loaded) -> None:
    """Synapse read our stub files (so every secret is a file), and the pod mounts each one it names."""
    settings = loaded.r.settings
    expected = expected_secret_files(settings)
    workloads: dict[str, dict[str, Any]] = {}
    for file_name, cfg in loaded.configs.items():
        assert loaded.secrets_used[file_name] == expected, file_name
        stub = loaded.stubs.contents
        assert cfg.key.macaroon_secret_key == stub[SECRET_FILES["macaroonSecretKey"]].encode()
        assert cfg.key.form_secret == stub[SECRET_FILES["formSecret"]]
        assert cfg.registration.registration_shared_secret == stub[SECRET_FILES["registrationSharedSecret"]]
        assert cfg.worker.worker_replication_secret == stub[SECRET_FILES["replicationSecret"]]
        assert [k.version for k in cfg.key.signing_key] == [loaded.stubs.signing_key_version]
        if settings.redis.auth:
            assert cfg.redis.redis_password == stub[SECRET_FILES["redisPassword"]]
        else:
            assert cfg.redis.redis_password is None
        class_name = class_of(loaded.r.plan, file_name)
        workload = workloads.setdefault(class_name, _workload(loaded.r, class_name))
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        mounts = workload["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
        secret_mount = next(m for m in mounts if m["mountPath"] == SECRETS_DIR)
        mounted = {item["path"] for item in volumes[secret_mount["name"]]["secret"]["items"]}
        assert expected <= mounted, file_name


def _workload(r: Rendering, class_name: str) -> dict[str, Any]:
    if class_name == "main":
        return r.manifest("StatefulSet", MAIN.workload_name)
    spec = next(s.spec for s in r.plan.sizes if s.spec.name == class_name)
    return r.manifest(spec.kind, spec.workload_name)


@pytest.mark.parametrize("stream", sorted(c.stream for c in WORKER_CLASSES if c.exactly_one and c.stream))
def test_loader_refuses_a_second_writer_for_a_exactly_one_stream(stream: str, tmp_path: Path) -> None:
    """Proves the loader is strict: the same file with a second writer for the stream must not load."""
    r = rendering("prod")  # 20,000 CCU: every single-writer class is deployed
    stubs = make_stubs(tmp_path)
    config, _ = localise(r.raw(f"{MAIN.pod}.yaml"), stubs)
    load(config, tmp_path / "unchanged.yaml")  # the control: as rendered, it loads

    (writer,) = config["stream_writers"][stream]
    second = f"{writer}-second"
    config["instance_map"][second] = {**config["instance_map"][writer], "host": f"{second}.invalid"}
    config["stream_writers"][stream] = [writer, second]
    # Synapse names the push_rules stream `push` in this one message.
    with pytest.raises(ConfigError, match=f"one instance to handle `{'push' if stream == 'push_rules' else stream}`"):
        load(config, tmp_path / "two-writers.yaml")
