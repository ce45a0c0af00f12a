"""The folders are the layers: a module may import its own layer and the ones below, never one above.

Parsed from the source (type-only imports included), so an upward import fails here before it can
become a cycle that only shows at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

from synapse_workers.model.stack_config import PROJECT_DIR

LAYERS = (
    ("synapse_workers.model",),
    ("synapse_workers.synapse",),
    ("synapse_workers.kube",),
    ("synapse_workers.plan",),
    ("synapse_workers.ops",),
    ("components",),
    ("synapse_workers.cli", "synapse_workers.__main__"),
)
"""Bottom first. `components` (the Pulumi layer) sits below the CLI, whose `render` runs the program."""


def layer_of(module: str) -> int | None:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return rank
    return None


def module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if layer_of(node.module) is not None:
                found.append((node.lineno, node.module))
            else:  # `from synapse_workers import plan`: the names are the modules
                found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def upward_imports(root: Path) -> list[str]:
    problems = []
    for path in sorted([*root.glob("synapse_workers/**/*.py"), *root.glob("components/*.py")]):
        name = module_name(path, root)
        own = layer_of(name)
        if name == "synapse_workers":
            continue  # the package's empty __init__
        assert own is not None, f"{path} is in no layer"
        for line, imported in imports_of(path):
            rank = layer_of(imported)
            if rank is not None and rank > own:
                problems.append(f"{path.relative_to(root)}:{line} imports {imported} ({LAYERS[rank][0]} is above)")
    return sorted(set(problems))


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports(PROJECT_DIR) == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    (tmp_path / "synapse_workers" / "model").mkdir(parents=True)
    (tmp_path / "synapse_workers" / "model" / "bad.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from synapse_workers.plan import Plan\n"
    )
    assert upward_imports(tmp_path) == [
        "synapse_workers/model/bad.py:3 imports synapse_workers.plan (synapse_workers.plan is above)"
    ]


def test_every_module_is_in_a_layer() -> None:
    modules = [module_name(p, PROJECT_DIR) for p in PROJECT_DIR.glob("synapse_workers/**/*.py")]
    assert len(modules) > 30
    assert [m for m in modules if layer_of(m) is None] == ["synapse_workers"]
