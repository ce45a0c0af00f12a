"""Debian's Prometheus server on loopback, scraping every Synapse process of an e2e homeserver.

Its scrape config comes from the program's own monitoring table (`static_scrape_configs`): one job per
workload named after the workload's Service, with the `namespace` and `pod` labels the Prometheus
Operator would give a ServiceMonitor's targets, so `recommend` runs the queries it runs in a cluster.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from synapse_workers.kube.monitoring import static_scrape_configs
from synapse_workers.synapse.topology import METRICS_PORT
from tests.e2e.services import Loopback, Processes, port_free, wait_http
from tests.e2e.topology import Homeserver

BINARY = Path("/usr/bin/prometheus")
APT_PACKAGE = "prometheus"
PORT = 9099
"""On the services address (.1), where no Synapse process listens; Synapse's own 9090 is on .10 and up."""


def scrape_config(hs: Homeserver, interval: str) -> dict[str, object]:
    addresses: dict[str, list[tuple[str, str]]] = {}
    for name, (part, address, _) in sorted(hs.procs.items()):
        addresses.setdefault(part, []).append((name, f"{address}:{METRICS_PORT}"))
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval, "scrape_timeout": interval},
        "scrape_configs": static_scrape_configs(hs.plan, addresses, interval),
    }


def start_prometheus(hs: Homeserver, loopback: Loopback, processes: Processes, interval: str) -> str:
    """Start Prometheus; returns its base URL once it is ready."""
    root = Path(tempfile.mkdtemp(prefix="e2e-prometheus-"))
    config = root / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(hs, interval), sort_keys=True))
    host = loopback.services
    assert port_free(host, PORT), f"{host}:{PORT} is taken"
    argv = [
        str(BINARY),
        f"--config.file={config}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address={host}:{PORT}",
        "--storage.tsdb.retention.time=1h",
    ]
    proc = processes.start("prometheus", argv)
    url = f"http://{host}:{PORT}"
    wait_http(f"{url}/-/ready", 30, proc)
    return url
