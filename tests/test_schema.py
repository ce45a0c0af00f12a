"""Every rendered Kubernetes object against the API server's own OpenAPI schema, offline and strict.

`kubectl apply` would reject a misspelt field or a wrong type only at deploy time, after the config
has rolled; this catches it in review. Strict mode makes an unknown field an error, as the API server's
field validation does (`kubectl apply --validate=strict`).
"""

from __future__ import annotations

import copy
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import kubernetes_validate
import pytest
import yaml

from synapse_workers.cli.render import Rendered, render_stack
from synapse_workers.kube.network_policy import network_policies
from synapse_workers.model.settings import load_settings
from synapse_workers.model.stack_config import PROJECT_DIR, read_stack_file
from synapse_workers.plan import Plan, build_plan

K8S_VERSION = "1.37.0"
"""The newest Kubernetes version whose schemas kubernetes-validate 1.37.0 ships."""
K8S_VERSIONS = ("1.37.0", "1.36.0", "1.35.0")
"""The three newest minor versions it ships: a cluster a minor or two behind must take the objects too."""

FEDERATION_ON = '{"enabled": true, "servers": 200}'

STACKS: dict[str, tuple[str, dict[str, str]]] = {
    "staging": ("staging", {}),
    "prod": ("prod", {}),
    "prod-federation": ("prod", {"synapse:federation": FEDERATION_ON}),
}
"""Test id → (stack, config overrides on top of its stack file)."""


@dataclass(frozen=True)
class StackRender:
    plan: Plan
    rendered: Rendered

    def objects(self) -> dict[str, dict[str, Any]]:
        return {name: yaml.safe_load(text) for name, text in self.rendered.manifests.items()}

    def first(self, kind: str) -> dict[str, Any]:
        return next(o for o in self.objects().values() if o["kind"] == kind)


def render(case: str) -> StackRender:
    stack, overrides = STACKS[case]
    values, secret_keys = read_stack_file(stack, PROJECT_DIR / f"Pulumi.{stack}.yaml")
    values.update(overrides)
    plan = build_plan(load_settings(stack, values, secret_keys))
    return StackRender(plan, render_stack(stack, values, secret_keys))


@pytest.fixture(scope="module", params=sorted(STACKS))
def stack_render(request: pytest.FixtureRequest) -> StackRender:
    return render(request.param)


@pytest.fixture(scope="module")
def staging() -> StackRender:
    return render("staging")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Validation must work in CI without egress: any connection attempt fails the test."""

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("schema validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


def validate(manifest: dict[str, Any], strict: bool = True, version: str = K8S_VERSION) -> str:
    """Validate against `version`; a missing schema raises rather than passing silently."""
    return str(kubernetes_validate.validate(manifest, version, strict=strict))


def major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def expected_kinds(plan: Plan) -> Counter[str]:
    """Objects per kind, from the plan's sizes and settings: what each part of the design adds."""
    settings = plan.settings
    assert not settings.monitoring.enabled, "monitoring objects are CRDs: no schema ships for them"
    deployed = [s for s in plan.sizes if s.deployed]
    autoscaled = [s for s in deployed if s.spec.kind == "Deployment"]
    stateful = [s for s in deployed if s.spec.kind == "StatefulSet"]
    pooler = settings.postgres.pooler
    pooled = int(pooler.enabled)
    return Counter(
        {
            "Namespace": int(settings.create_namespace),
            "Secret": int(settings.existing_secret is None),
            "PersistentVolumeClaim": int(settings.media.create_claim),
            "NetworkPolicy": len(network_policies(settings)),
            # shared, main, one per deployed class, the router's, PgBouncer's, the routing marker
            "ConfigMap": 2 + len(deployed) + 1 + pooled + 1,
            "Job": 2,  # the config check, the schema preparation
            "StatefulSet": 1 + len(stateful),  # main and each stateful class
            "Deployment": len(autoscaled) + 1 + pooled,  # autoscaled classes, the router, PgBouncer
            # one per workload, one ready-pods Service per autoscaled class, the router's, PgBouncer's
            "Service": 1 + len(deployed) + len(autoscaled) + 1 + pooled,
            "HorizontalPodAutoscaler": len(autoscaled),
            "PodDisruptionBudget": sum(s.replicas >= 2 for s in deployed)
            + int(settings.router.replicas >= 2)
            + int(pooler.enabled and pooler.replicas >= 2),
            "Ingress": 1,
        }
    )


def test_schemas_ship_with_the_package() -> None:
    """The strict schemas are package data, so validating needs no download."""
    shipped = resources.files("kubernetes_validate") / "kubernetes-json-schema" / f"v{K8S_VERSION}-local-strict"
    assert (shipped / "statefulset-apps-v1.json").is_file()
    assert (shipped / "_definitions.json").is_file()


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates(stack_render: StackRender, version: str) -> None:
    """One failure list per stack, so a review sees every broken object at once; counts prove none was skipped."""
    plan, objects = stack_render.plan, stack_render.objects()
    failures: list[str] = []
    versions: set[str] = set()
    for name, manifest in objects.items():
        try:
            versions.add(validate(manifest, version=version))
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(p) for p in error.path)
            failures.append(f"{name}: {where}: {error.message}")
    assert failures == []
    # No fallback to an older schema set, and every object was checked (none skipped).
    assert versions == {major_minor(version)}
    expected = expected_kinds(plan)
    assert Counter(o["kind"] for o in objects.values()) == expected
    assert len(objects) == expected.total()
    assert {(o["kind"], o["metadata"]["name"]) for o in objects.values()} == {
        (m["kind"], m["metadata"]["name"]) for m in plan.manifests()
    }


Mutation = Callable[[StackRender], tuple[dict[str, Any], dict[str, Any], list[str | int], str]]
"""Given a render: (valid object, the same object broken, where the error must point, a word its message names)."""


def _replicas_as_text(r: StackRender) -> tuple[dict[str, Any], dict[str, Any], list[str | int], str]:
    valid = r.first("StatefulSet")
    broken = copy.deepcopy(valid)
    broken["spec"]["replicas"] = "four"
    return valid, broken, ["spec", "replicas"], "four"


def _unknown_container_field(r: StackRender) -> tuple[dict[str, Any], dict[str, Any], list[str | int], str]:
    valid = r.first("Deployment")
    broken = copy.deepcopy(valid)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    return valid, broken, ["spec", "template", "spec", "containers", 0], "imagePullPolicyy"


def _service_port_as_name(r: StackRender) -> tuple[dict[str, Any], dict[str, Any], list[str | int], str]:
    valid = r.first("Service")
    broken = copy.deepcopy(valid)
    broken["spec"]["ports"][0]["port"] = "http"
    return valid, broken, ["spec", "ports", 0, "port"], "http"


def _container_without_name(r: StackRender) -> tuple[dict[str, Any], dict[str, Any], list[str | int], str]:
    valid = r.first("StatefulSet")
    broken = copy.deepcopy(valid)
    del broken["spec"]["template"]["spec"]["containers"][0]["name"]
    return valid, broken, ["spec", "template", "spec", "containers", 0], "name"


MUTATIONS: dict[str, Mutation] = {
    "statefulset-replicas-as-text": _replicas_as_text,
    "unknown-container-field": _unknown_container_field,
    "service-port-as-name": _service_port_as_name,
    "container-without-name": _container_without_name,
}


@pytest.mark.usefixtures("offline")
@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_validator_rejects_a_broken_manifest(staging: StackRender, mutation: str) -> None:
    """Without this, a validator that accepted anything would make the test above pass."""
    valid, broken, where, word = MUTATIONS[mutation](staging)
    assert validate(valid) == major_minor(K8S_VERSION)
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        validate(broken)
    assert list(caught.value.path) == where
    assert word in caught.value.message


@pytest.mark.usefixtures("offline")
def test_strict_mode_is_what_catches_a_typo(staging: StackRender) -> None:
    """A misspelt field is silently dropped by a lax apply; only strict validation reports it."""
    _, broken, _, _ = _unknown_container_field(staging)
    assert validate(broken, strict=False) == major_minor(K8S_VERSION)
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken, strict=True)
