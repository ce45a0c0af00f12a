"""Plain manifests into pulumi-kubernetes resources: the one place that knows the SDK's classes.

Imports are per API group so a preview loads only what it uses (pulumi-kubernetes is large).
"""

from __future__ import annotations

import importlib
from typing import Any

import pulumi

from synapse_workers.kube.manifests import Manifest

_CLASSES: dict[tuple[str, str], tuple[str, str]] = {
    ("v1", "Namespace"): ("pulumi_kubernetes.core.v1", "Namespace"),
    ("v1", "ConfigMap"): ("pulumi_kubernetes.core.v1", "ConfigMap"),
    ("v1", "Secret"): ("pulumi_kubernetes.core.v1", "Secret"),
    ("v1", "Service"): ("pulumi_kubernetes.core.v1", "Service"),
    ("v1", "PersistentVolumeClaim"): ("pulumi_kubernetes.core.v1", "PersistentVolumeClaim"),
    ("batch/v1", "Job"): ("pulumi_kubernetes.batch.v1", "Job"),
    ("policy/v1", "PodDisruptionBudget"): ("pulumi_kubernetes.policy.v1", "PodDisruptionBudget"),
    ("apps/v1", "StatefulSet"): ("pulumi_kubernetes.apps.v1", "StatefulSet"),
    ("apps/v1", "Deployment"): ("pulumi_kubernetes.apps.v1", "Deployment"),
    ("networking.k8s.io/v1", "Ingress"): ("pulumi_kubernetes.networking.v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"): ("pulumi_kubernetes.networking.v1", "NetworkPolicy"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): (
        "pulumi_kubernetes.autoscaling.v2",
        "HorizontalPodAutoscaler",
    ),
}

CUSTOM_GROUPS = frozenset({"monitoring.coreos.com"})
"""API groups of CRDs this program emits (the Prometheus Operator's), registered as CustomResources."""

_ARG_NAMES = {"stringData": "string_data"}


def create(logical_name: str, manifest: Manifest, opts: pulumi.ResourceOptions, **extra: Any) -> pulumi.CustomResource:
    """Register `manifest` as the matching pulumi-kubernetes resource; `extra` adds Output-valued fields."""
    key = (manifest["apiVersion"], manifest["kind"])
    if key not in _CLASSES and key[0].split("/", 1)[0] in CUSTOM_GROUPS:
        custom = importlib.import_module("pulumi_kubernetes.apiextensions")
        custom_resource: pulumi.CustomResource = custom.CustomResource(
            logical_name,
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=opts,
        )
        return custom_resource
    module_name, class_name = _CLASSES[key]
    cls = getattr(importlib.import_module(module_name), class_name)
    fields = {_ARG_NAMES.get(key, key): value for key, value in manifest.items() if key not in ("apiVersion", "kind")}
    resource: pulumi.CustomResource = cls(logical_name, opts=opts, **fields, **extra)
    return resource
