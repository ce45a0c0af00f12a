"""Bad stack config: each gets one error naming the stack, the key, the bad value and what is allowed."""

from __future__ import annotations

from typing import Any

import pytest

from synapse_workers.model.errors import ConfigError
from synapse_workers.model.settings import load_settings
from tests.conftest import SECRET_KEYS, base_values, secret_values

DROP = None

# (case id, overrides of base_values, the key the error must name, a fragment of what it says is allowed)
BAD_CONFIGS: list[tuple[str, dict[str, Any], str, str]] = [
    ("ccu zero", {"ccu": "0"}, "synapse:ccu", "from 1 to 1000000"),
    ("ccu negative", {"ccu": "-5"}, "synapse:ccu", "from 1 to 1000000"),
    ("ccu fractional", {"ccu": "2.5"}, "synapse:ccu", "whole number"),
    ("ccu text", {"ccu": "lots"}, "synapse:ccu", "whole number"),
    ("ccu true", {"ccu": "true"}, "synapse:ccu", "whole number"),
    ("ccu absurd", {"ccu": "10000000"}, "synapse:ccu", "from 1 to 1000000"),
    ("ccu missing", {"ccu": DROP}, "synapse:ccu", "whole number"),
    ("messages zero", {"messagesPerSecond": "0"}, "synapse:messagesPerSecond", "above 0"),
    ("messages text", {"messagesPerSecond": "fast"}, "synapse:messagesPerSecond", "messages per second"),
    ("unknown top-level key", {"ccuu": "5"}, "synapse:ccuu", "ccu"),
    ("unknown nested key", {"hpa": {"targetCPU": 60}}, "synapse:hpa.targetCPU", "targetCpuUtilization"),
    ("unknown class", {"workers": {"sync": {"replicas": 3}}}, "synapse:workers.sync", "synchrotron"),
    ("unknown pin field", {"workers": {"synchrotron": {"count": 3}}}, "synapse:workers.synchrotron.count", "replicas"),
    (
        "pin text",
        {"workers": {"event-persister": {"replicas": "x"}}},
        "synapse:workers.event-persister.replicas",
        "0 (off, for a class beyond the guide) to",
    ),
    (
        "pin below HA floor",
        {"workers": {"event-persister": {"replicas": 1}}},
        "synapse:workers.event-persister.replicas",
        "high-availability",
    ),
    (
        "two typing writers",
        {"workers": {"typing-writer": {"replicas": 2}}},
        "synapse:workers.typing-writer.replicas",
        "exactly one writer",
    ),
    (
        "two presence writers",
        {"workers": {"presence-writer": {"replicas": 3}}},
        "synapse:workers.presence-writer.replicas",
        "exactly one writer",
    ),
    (
        "hpa bounds on a manual class",
        {"workers": {"media-repository": {"maxReplicas": 9}}},
        "synapse:workers.media-repository.maxReplicas",
        "scaled by hand",
    ),
    (
        "max below min",
        {"workers": {"synchrotron": {"minReplicas": 8, "maxReplicas": 4}}},
        "synapse:workers.synchrotron.maxReplicas",
        "at least 8",
    ),
    (
        "replicas and minReplicas",
        {"workers": {"synchrotron": {"replicas": 4, "minReplicas": 5}}},
        "synapse:workers.synchrotron.minReplicas",
        "either replicas or minReplicas",
    ),
    (
        "servers with federation off",
        {"federation": {"servers": 40}},
        "synapse:federation.servers",
        "federation.enabled is false",
    ),
    (
        "federation on without servers",
        {"federation": {"enabled": True}},
        "synapse:federation.servers",
        "federated servers",
    ),
    ("federation enabled yes", {"federation": {"enabled": "yes"}}, "synapse:federation.enabled", "true or false"),
    (
        "federation-sender pin while off",
        {"workers": {"federation-sender": {"replicas": 2}}},
        "synapse:workers.federation-sender",
        "federation.enabled is false",
    ),
    ("sizing unknown", {"sizing": "vibes"}, "synapse:sizing", "formula or guide-table"),
    ("node of zero cpu", {"capacity": {"node": {"cpu": "0"}}}, "synapse:capacity.node.cpu", "at least 100m"),
    (
        "node of no memory",
        {"capacity": {"node": {"memory": "0Mi"}}},
        "synapse:capacity.node.memory",
        "at least 256Mi",
    ),
    ("server name port too large", {"serverName": "example.org:70000"}, "synapse:serverName", "1 to 65535"),
    ("server name port zero", {"serverName": "example.org:0"}, "synapse:serverName", "1 to 65535"),
    ("staging gate names its own stack", {"stagingGate": "prod"}, "synapse:stagingGate", "another stack"),
    ("upload size in MB", {"media": {"maxUploadSize": "50MB"}}, "synapse:media.maxUploadSize", "K, M, G or T"),
    ("upload size zero", {"media": {"maxUploadSize": "0"}}, "synapse:media.maxUploadSize", "such as 50M"),
    (
        "ingress annotation key bad",
        {"router": {"ingressAnnotations": {"not a key": "x"}}},
        "synapse:router.ingressAnnotations.not a key",
        "label key",
    ),
    ("drain shorter than the router", {"router": {"drainSeconds": 10}}, "synapse:router.drainSeconds", "15 to 50"),
    ("drain past the grace period", {"router": {"drainSeconds": 60}}, "synapse:router.drainSeconds", "15 to 50"),
    ("cpu target over 100", {"hpa": {"targetCpuUtilization": 150}}, "synapse:hpa.targetCpuUtilization", "1 to 100"),
    ("headroom below 1", {"hpa": {"headroom": 0.5}}, "synapse:hpa.headroom", "1.0 to 10.0"),
    (
        "scale-up window over an hour",
        {"hpa": {"scaleUpWindowSeconds": 3601}},
        "synapse:hpa.scaleUpWindowSeconds",
        "0 to 3600",
    ),
    (
        "scale-down window negative",
        {"hpa": {"scaleDownWindowSeconds": -1}},
        "synapse:hpa.scaleDownWindowSeconds",
        "0 to 3600",
    ),
    (
        "scale-down window fractional",
        {"hpa": {"scaleDownWindowSeconds": 1.5}},
        "synapse:hpa.scaleDownWindowSeconds",
        "whole",
    ),
    ("image without tag", {"image": "ghcr.io/element-hq/synapse"}, "synapse:image", "tag or a sha256 digest"),
    ("image with spaces", {"image": "my image:1"}, "synapse:image", "tag or a sha256 digest"),
    ("namespace not a DNS label", {"namespace": "Matrix_Prod"}, "synapse:namespace", "DNS label"),
    ("secret name not DNS", {"existingSecret": "Synapse Secrets"}, "synapse:existingSecret", "DNS subdomain"),
    ("server name missing", {"serverName": DROP}, "synapse:serverName", "host name"),
    ("server name bad", {"serverName": "not a host"}, "synapse:serverName", "host name"),
    ("postgres not an object", {"postgres": "pg"}, "synapse:postgres", "object"),
    ("postgres port out of range", {"postgres": {"host": "pg", "port": 70000}}, "synapse:postgres.port", "1 to 65535"),
    ("postgres host missing", {"postgres": {"port": 5432}}, "synapse:postgres.host", "PostgreSQL host"),
    (
        "cpMax below cpMin",
        {"workers": {"event-persister": {"database": {"cpMin": 10, "cpMax": 5}}}},
        "synapse:workers.event-persister.database.cpMax",
        "at least cpMin (10)",
    ),
    (
        "cpMin above the class's default cpMax",
        {"workers": {"synchrotron": {"database": {"cpMin": 9}}}},
        "synapse:workers.synchrotron.database.cpMin",
        "at most cpMax (5)",
    ),
    ("main cpMax out of range", {"main": {"database": {"cpMax": 0}}}, "synapse:main.database.cpMax", "1 to 100"),
    (
        "the old stack-wide pool",
        {"postgres": {"host": "pg", "cpMax": 20}},
        "synapse:postgres.cpMax",
        "maxConnections",
    ),
    (
        "maxConnections zero",
        {"postgres": {"host": "pg", "maxConnections": 0}},
        "synapse:postgres.maxConnections",
        "1 to",
    ),
    (
        "poolSize zero",
        {"postgres": {"host": "pg", "pooler": {"enabled": True, "poolSize": 0}}},
        "synapse:postgres.pooler.poolSize",
        "1 to 10000",
    ),
    (
        "unknown pooler key",
        {"postgres": {"host": "pg", "pooler": {"mode": "session"}}},
        "synapse:postgres.pooler.mode",
        "poolSize",
    ),
    ("node cpu not a quantity", {"capacity": {"node": {"cpu": "lots"}}}, "synapse:capacity.node.cpu", "CPU quantity"),
    (
        "resources not a quantity",
        {"workers": {"synchrotron": {"resources": {"requests": {"cpu": "lots"}}}}},
        "synapse:workers.synchrotron.resources.requests.cpu",
        "CPU quantity",
    ),
    ("no secrets at all", {"existingSecret": DROP}, "synapse:registrationSharedSecret", "existingSecret"),
    ("key outside the namespace", {}, "synapse-workers:ccu", "'synapse:' namespace"),
    (
        "label key not a label",
        {"monitoring": {"labels": {"not a label!": "x"}}},
        "synapse:monitoring.labels.not a label!",
        "label key",
    ),
    (
        "label value too long",
        {"monitoring": {"labels": {"release": "x" * 64}}},
        "synapse:monitoring.labels.release",
        "label value",
    ),
    ("gate with one slash", {"stagingGate": "acme/staging"}, "synapse:stagingGate", "org/project/stack"),
    ("window not a flag", {"maintenanceWindow": "yes"}, "synapse:maintenanceWindow", "true"),
]


@pytest.mark.parametrize(("case", "overrides", "key", "allowed"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_stack_key_value_and_allowed(
    case: str, overrides: dict[str, Any], key: str, allowed: str
) -> None:
    values = base_values(**{k: v for k, v in overrides.items() if v is not DROP})
    for dropped in (k for k, v in overrides.items() if v is DROP):
        values.pop(f"synapse:{dropped}")
    if case == "key outside the namespace":
        values["synapse-workers:ccu"] = "5000"
    with pytest.raises(ConfigError) as caught:
        load_settings("prod", values)
    error = caught.value
    message = str(error)
    assert error.key == key
    assert message.startswith("stack 'prod': ")
    assert key in message
    assert allowed in message
    assert "\n" not in message


def test_error_quotes_the_bad_value() -> None:
    with pytest.raises(ConfigError, match=r'synapse:ccu = "lots" is not allowed'):
        load_settings("staging", base_values(ccu="lots"))


def test_hint_for_a_key_set_without_namespace() -> None:
    values = base_values()
    values["synapse-workers:ccu"] = "5"
    with pytest.raises(ConfigError, match="did you mean synapse:ccu"):
        load_settings("prod", values)


def test_provider_keys_are_left_to_the_provider() -> None:
    values = base_values()
    values["kubernetes:context"] = "prod-cluster"
    assert load_settings("prod", values).ccu == 1000


def test_values_arrive_as_cli_text_or_json_numbers() -> None:
    as_text = load_settings("s", base_values(ccu="5000", hpa={"headroom": "1.5", "targetCpuUtilization": "70"}))
    as_json = load_settings("s", base_values(ccu="5000", hpa={"headroom": 1.5, "targetCpuUtilization": 70}))
    assert as_text == as_json
    assert as_text.hpa.headroom == 1.5
    assert as_text.hpa.target_cpu_utilization == 70


def test_defaults() -> None:
    settings = load_settings("s", base_values())
    assert settings.hpa.target_cpu_utilization == 65
    assert settings.hpa.headroom == 2.0
    assert settings.namespace == "matrix"
    assert settings.sizing == "formula"
    assert settings.federation.enabled is False


def test_pulumi_secrets_accepted_and_values_not_kept() -> None:
    values = {**base_values(existingSecret=None), **secret_values()}
    settings = load_settings("s", values, SECRET_KEYS)
    assert settings.existing_secret is None
    assert set(settings.managed_secrets) == {k.split(":")[1] for k in SECRET_KEYS}
    dumped = settings.model_dump_json()
    assert all(v not in dumped for v in secret_values().values())


def test_secret_given_in_plain_text_is_refused_without_echoing_it() -> None:
    values = {**base_values(existingSecret=None), **secret_values()}
    plain = "synapse:macaroonSecretKey"
    with pytest.raises(ConfigError) as caught:
        load_settings("prod", values, SECRET_KEYS - {plain})
    assert caught.value.key == plain
    assert "--secret" in str(caught.value)
    assert values[plain] not in str(caught.value)


def test_existing_secret_and_pulumi_secrets_together_is_ambiguous() -> None:
    values = {**base_values(), **secret_values()}
    with pytest.raises(ConfigError, match="not both"):
        load_settings("prod", values, SECRET_KEYS)


def test_redis_password_needs_redis_auth_and_vice_versa() -> None:
    values = {**base_values(existingSecret=None, redis={"host": "r", "auth": True}), **secret_values()}
    with pytest.raises(ConfigError) as caught:
        load_settings("prod", values, SECRET_KEYS)
    assert caught.value.key == "synapse:redisPassword"
    values["synapse:redisPassword"] = "pw"
    assert load_settings("prod", values, SECRET_KEYS | {"synapse:redisPassword"}).redis.auth is True
