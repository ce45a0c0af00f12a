"""The quiesce step: a change that re-routes stops every Synapse process before any starts on the new
routing, in Pulumi's own terms.

Synapse routes each write and duty by lists every process reads (`stream_writers`, `instance_map`,
`federation_sender_instances`, `pusher_instances`, …), and a process on the old lists beside one on the
new sends events to a persister that refuses the room, or pushes twice. So the routing gets a marker:
a ConfigMap named after a digest of those lists (its data is the routing, for the operator to read),
registered after the config check with delete-before-replace. Every Synapse workload object carries the
marker's name in an annotation, taken from the marker resource itself, which makes the marker a property
dependency of every workload. When the routing changes, the marker's name changes; Pulumi must delete a
delete-before-replace resource's property dependents first, so it deletes every Synapse workload
(readers, main, writers: reverse dependency order, each waiting for its pods to go), then the marker,
then creates the marker and the workloads in stage order, each ready before the next stage starts.
When the routing does not change, the marker is unchanged and workloads roll as before: no downtime.
"""

from __future__ import annotations

import hashlib
import json

from synapse_workers.kube import manifests as k8s
from synapse_workers.model.settings import Settings
from synapse_workers.synapse.config_files import to_yaml
from synapse_workers.synapse.topology import Topology

ROUTING_ANNOTATION = "synapse-workers/routing"
"""On every Synapse StatefulSet and Deployment (the object's own metadata, not its pod template): the
name of the routing marker it was created under."""
MARKER_PREFIX = "synapse-routing-"
DELETION_ANNOTATIONS = {"pulumi.com/deletionPropagationPolicy": "foreground"}
"""pulumi-kubernetes' default, stated on every Synapse workload object because the quiesce relies on it:
a foreground delete completes only once the object's pods are gone, so no old process outlives it."""


def routing_digest(topology: Topology) -> str:
    return hashlib.sha256(json.dumps(topology.as_config(), sort_keys=True).encode()).hexdigest()[:16]


def routing_marker(settings: Settings, topology: Topology) -> k8s.Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": k8s.metadata(settings, MARKER_PREFIX + routing_digest(topology), "routing"),
        "immutable": True,
        "data": {"routing.yaml": to_yaml(topology.as_config())},
    }
