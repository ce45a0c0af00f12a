"""`recommend` reads the federated-server count from Synapse's known-servers gauge, which Synapse only
exports with `metrics_flags.known_servers`: real Synapse's loader must accept the flag as the program
writes it, and turn it on exactly when federation is.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from synapse_workers.plan import build_plan
from tests.conftest import settings_for
from tests.test_synapse_loads_config import load, localise, make_stubs


@pytest.mark.parametrize("federation", [True, False])
def test_synapse_loads_the_known_servers_flag_with_federation_only(tmp_path: Path, federation: bool) -> None:
    given = {"enabled": True, "servers": 120} if federation else {"enabled": False}
    plan = build_plan(settings_for(ccu=1000, federation=given))
    stubs = make_stubs(tmp_path)
    for workload in plan.workloads:
        name, text = workload.process_configs()[0]
        config, _ = localise(yaml.safe_load(text), stubs)
        loaded = load(config, tmp_path / name)
        assert loaded.metrics.enable_metrics is True, name
        assert loaded.metrics.metrics_flags.known_servers is federation, name
