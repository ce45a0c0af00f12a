"""The Synapse config files: one shared by every process, one per class, merged per process for review.

Each process loads `-c shared.yaml -c <class>.yaml -c worker_name.yaml`. Keeping the shared file
separate is what lets a change roll exactly the processes that read it: a class's own settings live only
in that class's file. Secrets are never inline: every secret is a file under SECRETS_DIR, referenced
with Synapse's `*_path` options (the PostgreSQL password comes from libpq's PGPASSWORD).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import yaml

from synapse_workers.model.settings import SECRET_FILES, SYNAPSE_MAX_UPLOAD_SIZE, Settings
from synapse_workers.model.worker_classes import MAIN, Process, WorkerClass
from synapse_workers.synapse.topology import (
    CLIENT_PORT,
    METRICS_PORT,
    POOLER_NAME,
    POOLER_PORT,
    REPLICATION_PORT,
    Topology,
)

CONFIG_DIR = "/config"
SHARED_FILE = f"{CONFIG_DIR}/shared/shared.yaml"
CLASS_FILE = f"{CONFIG_DIR}/class/class.yaml"
WORKER_NAME_DIR = "/run/synapse"
WORKER_NAME_FILE = f"{WORKER_NAME_DIR}/worker_name.yaml"
SECRETS_DIR = "/secrets"
MEDIA_DIR = "/media"
WORKER_APP = "synapse.app.generic_worker"


def secret_path(config_key: str) -> str:
    return f"{SECRETS_DIR}/{SECRET_FILES[config_key]}"


def shared_config(settings: Settings, topology: Topology) -> dict[str, Any]:
    """What every process reads: server identity, stores, secrets by path, and the topology."""
    redis: dict[str, Any] = {"enabled": True, "host": settings.redis.host, "port": settings.redis.port}
    if settings.redis.auth:
        redis["password_path"] = secret_path("redisPassword")
    config: dict[str, Any] = {
        "server_name": settings.server_name,
        "public_baseurl": settings.public_baseurl or f"https://{settings.server_name}/",
        "report_stats": False,
        "enable_metrics": True,
        "signing_key_path": secret_path("signingKey"),
        "macaroon_secret_key_path": secret_path("macaroonSecretKey"),
        "form_secret_path": secret_path("formSecret"),
        "registration_shared_secret_path": secret_path("registrationSharedSecret"),
        "worker_replication_secret_path": secret_path("replicationSecret"),
        "media_store_path": MEDIA_DIR,
        "redis": redis,
        **topology.as_config(),
    }
    if settings.media.max_upload_size != SYNAPSE_MAX_UPLOAD_SIZE:
        # Only when set: Synapse's default needs no line, and a stack that never set it keeps its config.
        config["max_upload_size"] = settings.media.max_upload_size
    if "thread_subscriptions" in topology.stream_writers:
        # Synapse registers the thread-subscription endpoints only with MSC4306 on
        # (synapse/rest/client/thread_subscriptions.py): deploying their writer is the operator's opt-in.
        config["experimental_features"] = {"msc4306_enabled": True}
    if settings.federation.enabled:
        # Exports synapse_federation_known_servers (off by default), which `recommend` reads.
        config["metrics_flags"] = {"known_servers": True}
    else:
        # An empty whitelist refuses every remote server; no key server is asked either.
        config["federation_domain_whitelist"] = []
        config["trusted_key_servers"] = []
    return config


def database_config(settings: Settings, process: Process) -> dict[str, Any]:
    """The `database` section of one class's file (or main's). Per class, not shared, because each
    class has its own pool size and Synapse merges `-c` files key by key: a class file's `database`
    replaces the shared one whole, so the section lives in exactly one file per process."""
    pool = settings.db_pool(process)
    postgres = settings.postgres
    pooled = postgres.pooler.enabled and not process.session_database
    return {
        "name": "psycopg2",
        "args": {
            "host": f"{POOLER_NAME}.{settings.namespace}.svc.cluster.local" if pooled else postgres.host,
            "port": POOLER_PORT if pooled else postgres.port,
            "user": postgres.user,
            "database": postgres.database,
            "cp_min": pool.cp_min,
            "cp_max": pool.cp_max,
        },
    }


def _http_listener(port: int, names: list[str]) -> dict[str, Any]:
    return {
        "type": "http",
        "port": port,
        "bind_addresses": ["0.0.0.0"],
        "x_forwarded": True,
        "resources": [{"names": names, "compress": False}],
    }


def _listeners(client_resources: list[str], replication: bool) -> list[dict[str, Any]]:
    listeners = [_http_listener(CLIENT_PORT, client_resources)]
    if replication:
        listeners.append(_http_listener(REPLICATION_PORT, ["replication"]))
    listeners.append({"type": "metrics", "port": METRICS_PORT, "bind_addresses": ["0.0.0.0"]})
    return listeners


def main_config(settings: Settings) -> dict[str, Any]:
    """Main: the client and (when enabled) federation APIs nobody else serves, and replication.

    With federation off, main still answers OpenID userinfo (`openid`: the one federation servlet group
    Synapse loads on its own, synapse/app/homeserver.py): it issues the tokens, and integration managers,
    widgets and call token services verify them there. With federation on, `federation` includes it."""
    resources = ["client", "federation"] if settings.federation.enabled else ["client", "openid"]
    config: dict[str, Any] = {
        "database": database_config(settings, MAIN),
        "listeners": _listeners(resources, replication=True),
        # Dedicated media workers always exist (HA floor 2), so main never serves media.
        "enable_media_repo": False,
    }
    if settings.federation.enabled:
        # Remote servers find us at https://<server_name>/.well-known/matrix/server, which main answers
        # with <server_name>:443: the Ingress's port, so no 8448 listener is needed.
        config["serve_server_wellknown"] = True
    return config


def class_config(settings: Settings, spec: WorkerClass) -> dict[str, Any]:
    resources = list(spec.http_resources)
    if spec.serves_federation and settings.federation.enabled:
        resources.append("federation")
    return {
        "database": database_config(settings, spec),
        "worker_app": WORKER_APP,
        "worker_listeners": _listeners(resources, replication=spec.needs_instance_map),
        # Synapse loads the media repo on every process unless told not to; only media workers serve it.
        "enable_media_repo": spec.serves_media,
    }


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """libyaml when present (a prod render dumps hundreds of files); never aliases, which Synapse
    and reviewers would have to resolve by hand."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text_block(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    """Multi-line text (a config file inside a ConfigMap) as a literal block, readable in review."""
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _text_block)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def to_yaml(data: Any) -> str:
    """Byte-stable YAML: keys sorted, no aliases, block style."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=120)


def from_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def content_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:10]


@dataclass(frozen=True)
class ConfigFile:
    """One config file as it reaches a ConfigMap: its text and a name derived from the content."""

    part: str
    """`shared`, `main` or a worker class name."""
    text: str

    @property
    def digest(self) -> str:
        return content_hash(self.part, self.text)

    @property
    def configmap_name(self) -> str:
        return f"synapse-{self.part}-{self.digest}"


def merge_process_config(shared: dict[str, Any], own: dict[str, Any], worker_name: str | None) -> str:
    """The config one process ends up with, merged top-level as Synapse merges several `-c` files."""
    merged = {**shared, **own}
    if worker_name is not None:
        merged["worker_name"] = worker_name
    return to_yaml(merged)


def merged_process_config(shared: ConfigFile, own: ConfigFile, worker_name: str | None) -> str:
    return merge_process_config(from_yaml(shared.text), from_yaml(own.text), worker_name)


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))
