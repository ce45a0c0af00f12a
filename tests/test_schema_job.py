"""The schema Job as data, checked against the installed Synapse: the tool it runs exists, and the one file
it hands that tool is the config Synapse itself reads from main's two files.

The Job run against a real PostgreSQL is in tests/e2e/test_schema_e2e.py, and on the real node in
tests/node.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from synapse.config.homeserver import HomeServerConfig

from synapse_workers.kube.budget import Span
from synapse_workers.kube.schema import MERGED_FILE, SCHEMA_TOOL
from synapse_workers.model.settings import load_settings
from synapse_workers.model.stack_config import PROJECT_DIR, read_stack_file
from synapse_workers.model.worker_classes import MAIN
from synapse_workers.plan import Plan, build_plan
from tests.conftest import secrets_folder, settings_for


def container(plan: Plan) -> dict[str, Any]:
    found: dict[str, Any] = plan.schema()["spec"]["template"]["spec"]["containers"][0]
    return found


def name(**overrides: object) -> str:
    return str(build_plan(settings_for(**overrides)).schema()["metadata"]["name"])


def test_the_tool_is_a_console_script_of_the_installed_synapse() -> None:
    scripts = importlib.metadata.distribution("matrix-synapse").entry_points
    assert SCHEMA_TOOL in {e.name for e in scripts if e.group == "console_scripts"}
    assert f"exec {SCHEMA_TOOL} --database-config {MERGED_FILE}" in container(build_plan(settings_for()))["command"][2]


def test_it_runs_once_as_the_restricted_synapse_user_with_mains_files_and_no_server() -> None:
    plan = build_plan(settings_for(ccu="3000"))
    job = plan.schema()
    pod = job["spec"]["template"]["spec"]
    assert (job["spec"]["backoffLimit"], pod["restartPolicy"]) == (0, "Never")
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    main = plan.workload(MAIN.name)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["config-class"]["configMap"]["name"] == main.config.configmap_name
    assert volumes["config-shared"]["configMap"]["name"] == plan.shared.configmap_name
    spec = container(plan)
    assert "ports" not in spec and not {"startupProbe", "readinessProbe", "livenessProbe"} & set(spec)
    assert {e["name"] for e in spec["env"]} >= {"PGPASSWORD"}
    assert job["metadata"]["labels"]["app.kubernetes.io/component"] == "schema"


def test_it_runs_again_for_a_new_image_or_a_new_main_config_only() -> None:
    assert name(ccu="3000") == name(ccu="3000")
    assert name() != name(image="ghcr.io/element-hq/synapse:v1.164.0")
    assert name() != name(main={"database": {"cpMax": 20}})
    assert name(ccu="3000") == name(ccu="3100")  # only synchrotrons change
    assert name() == name(workers={"synchrotron": {"database": {"cpMax": 2}}})


def test_the_merged_file_is_the_config_synapse_reads_from_mains_two_files(tmp_path: Path) -> None:
    plan = build_plan(settings_for(ccu="3000", federation={"enabled": True, "servers": 60}))
    secrets = secrets_folder(tmp_path)
    shared = plan.shared.text.replace("/secrets/", f"{secrets}/").replace("/media", str(tmp_path / "media"))
    (tmp_path / "config" / "shared").mkdir(parents=True)
    (tmp_path / "config" / "class").mkdir(parents=True)
    (tmp_path / "config" / "shared" / "shared.yaml").write_text(shared)
    (tmp_path / "config" / "class" / "class.yaml").write_text(plan.workload(MAIN.name).config.text)
    merged = tmp_path / "merged.yaml"
    script = container(plan)["command"][2].replace("/config/", f"{tmp_path}/config/").replace(MERGED_FILE, str(merged))
    merge_only = script.split("\nexec ")[0]  # the tool itself needs a database: tests/e2e
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    done = subprocess.run(["/bin/sh", "-c", merge_only], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr

    read = HomeServerConfig.load_config("", ["-c", str(tmp_path / "config/shared/shared.yaml"), "-c",
                                              str(tmp_path / "config/class/class.yaml")])  # fmt: skip
    handed = HomeServerConfig()
    handed.parse_config_dict(yaml.safe_load(merged.read_text()), "", "")
    assert [d.config for d in handed.database.databases] == [d.config for d in read.database.databases]
    assert handed.database.databases[0].config["args"]["host"] == plan.settings.postgres.host  # main's, direct
    assert handed.server.server_name == read.server.server_name
    assert handed.worker.writers == read.worker.writers
    assert handed.worker.instance_map == read.worker.instance_map
    assert handed.server.listeners == read.server.listeners


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_the_budget_counts_the_job(stack: str) -> None:
    values, secret_keys = read_stack_file(stack, PROJECT_DIR / f"Pulumi.{stack}.yaml")
    plan = build_plan(load_settings(stack, values, secret_keys))
    (schema,) = [c for c in plan.budget.synapse_connections if c.part == "schema"]
    assert (schema.cp_max, schema.direct) == (1, True)
    assert schema.connections == Span(Decimal(0), Decimal(1))
