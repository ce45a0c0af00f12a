"""Rollback-safe config: each content-named ConfigMap outlives the update that replaced its content.

A pod of an earlier revision mounts the ConfigMap its template names: one started by `kubectl rollout
undo`, by a StatefulSet partition, by a node drain in the middle of a failed rollout, or by the old
ReplicaSet while a rollout is under way. If that ConfigMap went with the update, the pod cannot start.
So the program keeps the last `KEPT_GENERATIONS` contents of every config (the current one and the ones
before it) and collects older ones itself.

How, in Pulumi's terms. Every content-named ConfigMap is its own resource, named after its content (the
logical name is the Kubernetes name): a new content is a new resource beside the old one, not a
replacement of it. The program reads its own stack's state (as the guards do) and registers again,
unchanged (the inputs the state holds), the newest earlier contents of each config; the first one it no
longer registers, Pulumi deletes at the end of the update, after every workload has rolled. No Job, no
permissions, no `retainOnDelete` (whose objects a later `up` could not adopt without `upsert`), and a
rollback to a kept content is no change at all for its ConfigMap. The workloads keep as many old
ReplicaSets and ControllerRevisions as there are kept earlier contents (`revisionHistoryLimit`), so
every revision the cluster can still roll back to finds its config.

Stacks deployed before this kept each config under a fixed logical name (`synapse-<part>-config`); the
resource now holding that object takes it over through an alias, so the move replaces nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from synapse_workers.kube.manifests import KEPT_GENERATIONS, Manifest

CONFIGMAP_TYPE = "kubernetes:core/v1:ConfigMap"
SYNAPSE_CONFIG = "synapse:config:SynapseConfig"
ROUTER = "synapse:router:Router"
POOLER = "synapse:database:Pooler"
CONFIG_PARENTS = frozenset({SYNAPSE_CONFIG, ROUTER, POOLER})
"""The component types whose content-named ConfigMaps are kept (Synapse's, HAProxy's, PgBouncer's)."""


@dataclass(frozen=True)
class StoredConfig:
    """A content-named ConfigMap as a stack's state holds it."""

    parent: str
    """The type of the component it belongs to (`synapse:config:SynapseConfig`, ...)."""
    logical: str
    """The name part of its URN."""
    name: str
    """Its Kubernetes name: `<family>-<content digest>`."""
    created: str
    """`metadata.creationTimestamp` (RFC 3339 in UTC: ordered as text); empty if the state has none."""
    inputs: Mapping[str, Any]
    """What was registered, to register it again unchanged."""


@dataclass(frozen=True)
class ConfigRegistration:
    logical: str
    manifest: Manifest
    alias: str | None
    """The logical name the state holds this object under, when another (a stack deployed before)."""


def family(name: str) -> str:
    """What a content-named ConfigMap is the config of: its name without the content digest."""
    return name.rsplit("-", 1)[0]


def stored_configs(deployment: Mapping[str, Any], parents: frozenset[str]) -> tuple[StoredConfig, ...]:
    """The ConfigMaps in an exported deployment that are children of the given component types."""
    found = []
    for resource in deployment.get("resources") or []:
        if resource.get("type") != CONFIGMAP_TYPE or resource.get("delete"):
            continue
        urn = str(resource.get("urn", ""))
        parts = urn.split("::", 3)
        if len(parts) != 4:
            continue
        types = parts[2].split("$")
        if len(types) < 2 or types[-2] not in parents:
            continue
        inputs = resource.get("inputs") or {}
        outputs = resource.get("outputs") or {}
        name = (outputs.get("metadata") or {}).get("name") or (inputs.get("metadata") or {}).get("name")
        if not isinstance(name, str) or not inputs.get("immutable"):
            continue
        created = (outputs.get("metadata") or {}).get("creationTimestamp") or ""
        found.append(StoredConfig(types[-2], parts[3], name, str(created), inputs))
    return tuple(sorted(found, key=lambda s: (s.parent, s.name, s.logical)))


def config_registrations(
    parent: str, current: Sequence[Manifest], stored: Sequence[StoredConfig], keep: int = KEPT_GENERATIONS
) -> tuple[ConfigRegistration, ...]:
    """One component's content-named ConfigMaps to register: its current ones, then, per config, the
    newest `keep - 1` earlier contents the state holds (a config no longer current keeps as many: a
    rollback to the stack file that had it finds them)."""
    mine: dict[str, StoredConfig] = {}
    for config in stored:
        if config.parent == parent and (config.name not in mine or config.logical == config.name):
            mine[config.name] = config  # the same object twice in a state: prefer its content-named entry

    def alias(name: str) -> str | None:
        held = mine.get(name)
        return held.logical if held is not None and held.logical != name else None

    named = [(str(m["metadata"]["name"]), m) for m in current]
    current_names = {name for name, _ in named}
    registrations = [ConfigRegistration(name, manifest, alias(name)) for name, manifest in named]
    families = sorted({family(n) for n in current_names} | {family(n) for n in mine})
    for name_family in families:
        earlier = sorted(
            (s for s in mine.values() if family(s.name) == name_family and s.name not in current_names),
            key=lambda s: (s.created, s.name),
            reverse=True,
        )
        for config in earlier[: keep - 1]:
            registrations.append(ConfigRegistration(config.name, dict(config.inputs), alias(config.name)))
    return tuple(registrations)
