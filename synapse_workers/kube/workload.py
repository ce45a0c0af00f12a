"""One workload of a plan (main or a worker class) as Kubernetes sees it, and what a stack deploys.

Here, below the plan, so that monitoring, the dashboard and the what-if can read workloads without
importing the plan that builds them: the plan satisfies `Deployed` by its shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from synapse_workers.kube import manifests as k8s
from synapse_workers.kube.rollout import ResourceRules
from synapse_workers.model.settings import Settings
from synapse_workers.model.sizing import ClassSize
from synapse_workers.model.worker_classes import Process
from synapse_workers.synapse.config_files import ConfigFile, merged_process_config


@dataclass(frozen=True)
class Workload:
    """Main or one worker class: its config file, its Kubernetes objects and how it rolls."""

    part: str
    spec: Process
    size: ClassSize | None
    config: ConfigFile
    rules: ResourceRules
    manifests: tuple[k8s.Manifest, ...]
    """The workload first, then its Service, then its HPA if any."""
    shared: ConfigFile
    processes: tuple[tuple[str, str | None], ...]
    """(file name, worker_name) per process; main has none, a Deployment one sample."""

    def process_configs(self) -> tuple[tuple[str, str], ...]:
        """(file name, merged config) per process; built on demand, as only tests and reviews need it."""
        return tuple((name, merged_process_config(self.shared, self.config, worker)) for name, worker in self.processes)

    @property
    def name(self) -> str:
        return self.manifests[0]["metadata"]["name"]  # type: ignore[no-any-return]


class Deployed(Protocol):
    """What a stack deploys: its settings and its workloads, main first, then the table's order."""

    @property
    def settings(self) -> Settings: ...

    @property
    def workloads(self) -> tuple[Workload, ...]: ...
