"""`scale`: write new load figures or pins into `Pulumi.<stack>.yaml` and record why in the history.

The guide's best practices 5 and 6 (record every scaling change; keep replica counts in the
environment's config) done by the program. The stack file is edited in place with its comments and
key order kept, and values are written as `pulumi config set` would write them. Nothing is written
unless the new config passes the same validation `pulumi up` applies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from synapse_workers.model.errors import ConfigError
from synapse_workers.model.load_figures import LOAD_FIGURES
from synapse_workers.model.settings import NAMESPACE, load_settings
from synapse_workers.model.stack_config import read_stack_file
from synapse_workers.ops.files import WriteRefusedError, project_lock, replace_together
from synapse_workers.ops.gates import GATE_KEY, refuse_gate_cycle
from synapse_workers.ops.overrides import FLAGS, LoadChange, apply, plan_with_flags
from synapse_workers.ops.stack_edit import edit_stack_text
from synapse_workers.ops.whatif import WhatIf, compare
from synapse_workers.plan import Plan, build_plan
from synapse_workers.synapse.config_files import to_yaml

HISTORY_FILE = "scaling-history.yaml"


@dataclass(frozen=True)
class Scaled:
    old: Plan
    new: Plan
    result: WhatIf
    record: dict[str, Any]


def _mapping(value: Any) -> Any:
    """Parsed JSON with every object a CommentedMap, as ruamel writes them back."""
    if isinstance(value, dict):
        return CommentedMap((k, _mapping(v)) for k, v in value.items())
    return value


def _child(stack: str, parent: CommentedMap, key: str, where: str) -> CommentedMap:
    """The mapping at `key`, made when missing. An object stored as JSON text (what `pulumi config set
    synapse:workers '{...}'` writes, and the CLI hands the program as such) is turned into YAML first, so
    its other entries stay; anything else there is refused rather than replaced."""
    node = parent.get(key)
    if node is None:
        node = CommentedMap()
        parent[key] = node
    elif isinstance(node, str):
        try:
            parsed = json.loads(node)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise WriteRefusedError(stack, f"{where} holds text that is not a JSON object; not replacing it")
        node = CommentedMap((k, _mapping(v)) for k, v in parsed.items())
        parent[key] = node
    elif not isinstance(node, CommentedMap):
        raise WriteRefusedError(stack, f"{where} holds a {type(node).__name__}, not an object; not replacing it")
    return node


def _edit(stack: str, config: CommentedMap, change: LoadChange) -> None:
    """Write values the way the CLI does: `pulumi config set` quotes scalars, `--path` writes numbers."""
    for figure in LOAD_FIGURES:
        value = change.value(figure)
        if value is None:
            continue
        text = str(int(value)) if figure.whole else value.strip()
        top, *inner = figure.path
        if inner:
            (field_name,) = inner
            key = f"{NAMESPACE}:{top}"
            _child(stack, config, key, key)[field_name] = int(text) if figure.whole else float(text)
        else:
            config[f"{NAMESPACE}:{top}"] = DoubleQuotedScalarString(text)
    for name, replicas in change.pins:
        key = f"{NAMESPACE}:workers"
        _child(stack, _child(stack, config, key, key), name, f"{key}.{name}")["replicas"] = int(replicas)


def _record(
    stack: str, reason: str, now: datetime, old: Plan, new: Plan, change: LoadChange, measured: Mapping[str, Any] | None
) -> dict[str, Any]:
    load: dict[str, str] = {}
    for figure in LOAD_FIGURES:
        if change.value(figure) is not None:
            before, after = (getattr(plan.load, figure.attr) for plan in (old, new))
            load[figure.key] = f"{before} -> {after}" if figure.whole else f"{float(before):g} -> {float(after):g}"
    old_sizes = {s.spec.name: s.replicas for s in old.sizes}
    replicas = {
        s.spec.name: f"{old_sizes[s.spec.name]} -> {s.replicas}"
        for s in new.sizes
        if old_sizes[s.spec.name] != s.replicas
    }
    record: dict[str, Any] = {
        "date": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "stack": stack,
        "reason": reason,
        "load": load,
        "replicas": replicas,
    }
    if change.pins:
        record["pins"] = {name: int(value) for name, value in change.pins}
    if measured is not None:
        # Why, not only what: the measurements a `recommend` based this change on (best practice 5).
        record["measured"] = dict(measured)
    return record


def scale(
    project_dir: Path,
    stack: str,
    change: LoadChange,
    reason: str,
    now: datetime,
    measured: Mapping[str, Any] | None = None,
) -> Scaled:
    """Validate the change, then write the stack file and append the history record, both or neither."""
    if not reason.strip():
        raise ConfigError(stack, "--reason", reason, "a few words on why (they go into the scaling history)")
    if change.is_empty():
        raise ConfigError(stack, "scale", "no change", f"at least one of {', '.join(FLAGS.values())}")
    path = project_dir / f"Pulumi.{stack}.yaml"
    history = project_dir / HISTORY_FILE
    # One lock for the whole read-change-write: a concurrent run waits (or is refused), and never
    # writes over this run's change with a file it read before this one wrote.
    with project_lock(project_dir, stack):
        values, secret_keys = read_stack_file(stack, path)
        refuse_gate_cycle(stack, values.get(GATE_KEY), project_dir)
        old = build_plan(load_settings(stack, values, secret_keys))
        new_values, named = apply(values, change)
        new = plan_with_flags(stack, new_values, secret_keys, named)
        original = path.read_bytes()
        try:
            text = original.decode("utf-8")
        except UnicodeDecodeError:
            raise WriteRefusedError(stack, f"{path} is not UTF-8") from None
        edited = edit_stack_text(stack, path.name, text, lambda config: _edit(stack, config, change))
        record = _record(stack, reason.strip(), now, old, new, change, measured)
        try:
            before = history.read_bytes()
        except FileNotFoundError:
            before = b""
        except OSError as error:
            raise WriteRefusedError(stack, f"cannot read {history}: {error.strerror}") from None
        if before and not before.endswith(b"\n"):
            before += b"\n"
        # Both files or neither: the stack file never changes without the record of why.
        replace_together(stack, [(path, edited.encode("utf-8")), (history, before + to_yaml([record]).encode("utf-8"))])
    return Scaled(old=old, new=new, result=compare(old, new), record=record)
