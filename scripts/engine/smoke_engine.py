"""Smoke test of the locally built engine (scripts/engine/build-engine.sh): one Automation API `up`.

An inline program creates a pulumi-kubernetes Provider in render mode (`render_yaml_to_directory`, so no
cluster is needed) and one ConfigMap through it. The run must succeed with the CLI and the provider plugin
from .tools/bin and nothing else:

- PULUMI_HOME is a fresh empty directory, so there is no plugin cache to fall back on: the engine can only
  find `pulumi-resource-kubernetes` on $PATH (ambient plugin lookup, which ignores the version that the
  Python SDK asks for);
- PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true turns any attempt to download a plugin into an error;
- after the run the plugin cache must still be empty, and the engine must have said which binary it used.

Usage:  python scripts/engine/smoke_engine.py [--keep]
Needs `pulumi` and `pulumi-kubernetes` importable (requirements.txt). PULUMI_BACKEND_URL and
PULUMI_CONFIG_PASSPHRASE are used when set; otherwise a throwaway file backend and passphrase are used.
Exit status 0 on success; on failure, the reason on stderr.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pulumi
import pulumi_kubernetes as k8s
from pulumi import automation as auto

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / ".tools"
TOOLS_BIN = TOOLS / "bin"
PLUGIN = "pulumi-resource-kubernetes"


def fail(message: str) -> NoReturn:
    print(f"smoke_engine: FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def main() -> None:
    keep = "--keep" in sys.argv[1:]
    for name in ("pulumi", PLUGIN):
        if not os.access(TOOLS_BIN / name, os.X_OK):
            fail(f"{TOOLS_BIN / name} is missing: run scripts/engine/build-engine.sh first")

    scratch = Path(tempfile.mkdtemp(prefix="smoke-engine-"))
    render_dir = scratch / "rendered"
    pulumi_home = scratch / "pulumi-home"
    pulumi_home.mkdir()

    # Set in os.environ so that the CLI the Automation API starts, and the plugins it starts, inherit them.
    os.environ["PATH"] = f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    os.environ["PULUMI_HOME"] = str(pulumi_home)
    os.environ["PULUMI_SKIP_UPDATE_CHECK"] = "true"
    os.environ["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
    os.environ.pop("PULUMI_IGNORE_AMBIENT_PLUGINS", None)  # $PATH lookup is how the plugin is found
    os.environ.setdefault("PULUMI_BACKEND_URL", (scratch / "state").as_uri())
    os.environ.setdefault("PULUMI_CONFIG_PASSPHRASE", "smoke-engine")
    if os.environ["PULUMI_BACKEND_URL"].startswith("file://"):
        Path(os.environ["PULUMI_BACKEND_URL"].removeprefix("file://")).mkdir(parents=True, exist_ok=True)

    def program() -> None:
        provider = k8s.Provider("render", render_yaml_to_directory=str(render_dir))
        config_map = k8s.core.v1.ConfigMap(
            "smoke",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="smoke-engine", namespace="default"),
            data={"engine": "built-from-go-modules"},
            opts=pulumi.ResourceOptions(provider=provider),
        )
        pulumi.export("config_map", config_map.metadata.name)

    try:
        check(program, scratch, pulumi_home, render_dir)
    finally:
        if keep:
            print(f"smoke_engine: kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def check(program: Callable[[], None], scratch: Path, pulumi_home: Path, render_dir: Path) -> None:
    output: list[str] = []
    started = time.monotonic()
    # A new stack each run, removed afterwards, so a shared PULUMI_BACKEND_URL neither changes the result nor
    # keeps anything from it.
    stack_name = f"smoke-{uuid.uuid4().hex[:8]}"
    try:
        command = auto.PulumiCommand(root=str(TOOLS))  # .tools/bin/pulumi, never a `pulumi` found elsewhere
        stack = auto.create_stack(
            stack_name=stack_name,
            project_name="engine-smoke",
            program=program,
            opts=auto.LocalWorkspaceOptions(pulumi_command=command, work_dir=str(scratch)),
        )
        try:
            result = stack.up(on_output=output.append, color="never")
            rendered = {p.name: p.read_text() for p in sorted(render_dir.rglob("*.yaml"))}
        finally:
            try:
                stack.destroy(color="never")
                stack.workspace.remove_stack(stack_name)
            except auto.CommandError as exc:
                print(f"smoke_engine: warning: could not remove stack {stack_name}: {exc}", file=sys.stderr)
    except auto.CommandError as exc:
        print("\n".join(output), file=sys.stderr)
        fail(f"pulumi up failed: {exc}")
    elapsed = time.monotonic() - started
    text = "\n".join(output)
    print(text)

    failures = []
    if result.summary.result != "succeeded":
        failures.append(f"update result is {result.summary.result!r}")
    changes = result.summary.resource_changes or {}
    if changes.get("create", 0) != 3:  # the stack, the provider, the ConfigMap
        failures.append(f"expected 3 creates, got {changes}")
    exported = result.outputs.get("config_map")
    if exported is None or exported.value != "smoke-engine":
        failures.append(f"stack output config_map is {exported!r}")
    used = f"using {PLUGIN} from $PATH at {TOOLS_BIN / PLUGIN}"
    if used not in text:
        failures.append(f"the engine did not report `{used}`")
    for word in ("Downloading", "downloading", "installing plugin", "Installing plugin"):
        if word in text:
            failures.append(f"the output mentions {word!r}")
    plugins_dir = pulumi_home / "plugins"
    if plugins_dir.exists() and any(plugins_dir.iterdir()):
        failures.append(f"plugins were installed into {plugins_dir}: {sorted(p.name for p in plugins_dir.iterdir())}")
    if not any("kind: ConfigMap" in manifest and "built-from-go-modules" in manifest for manifest in rendered.values()):
        failures.append(f"no rendered ConfigMap under {render_dir}: {rendered}")
    if failures:
        fail("; ".join(failures))
    print(
        f"smoke_engine: OK: `up` made {changes} (up and destroy: {elapsed:.1f}s) with {TOOLS_BIN / 'pulumi'} and "
        f"{TOOLS_BIN / PLUGIN}, no plugin installed or downloaded; rendered {sorted(rendered)} "
        f"(Python pulumi {dist_version('pulumi')}, pulumi-kubernetes {dist_version('pulumi-kubernetes')})"
    )


def dist_version(name: str) -> str:
    return importlib.metadata.version(name)


if __name__ == "__main__":
    main()
