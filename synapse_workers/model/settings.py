"""The stack's settings: every `synapse:` key, validated once into frozen, typed values.

Every key is validated here, each check named and run in a row (`CHECKS`); everything downstream can
trust what it gets. Only what needs a sized plan is checked later, and says so where it happens: an
HPA maximum below the minimum sizing gives (sizing.py) and the capacity budget (kube/budget.py). Secret *values*
never enter these models: they stay Pulumi secrets in the resource layer. The models only record
which secrets exist, so the plan and the rendered config can refer to them by file path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from synapse_workers.model.config_types import (
    ByteSize,
    DnsLabel,
    DnsSubdomain,
    Flag,
    Hostname,
    HttpsUrl,
    ImageRef,
    LabelKey,
    LabelValue,
    Number,
    Quantity,
    StackName,
    Text,
    WholeNumber,
    quantity,
)
from synapse_workers.model.errors import UNSET, ConfigError
from synapse_workers.model.worker_classes import (
    BY_NAME,
    CLASS_NAMES,
    HA_FLOOR,
    PROCESSES,
    WORKER_CLASSES,
    DbPool,
    MainProcess,
    Process,
    Resources,
)

NAMESPACE = "synapse"
"""The config namespace: keys are written `synapse:ccu`, `synapse:workers`, …"""

PROVIDER_NAMESPACES = ("kubernetes", "pulumi")
"""Namespaces that belong to Pulumi and its Kubernetes provider; their keys are not ours to check."""

SYNAPSE_MAX_UPLOAD_SIZE = "50M"
"""Synapse's own default `max_upload_size` (synapse/config/repository.py)."""

MAX_CCU = 1_000_000
MAX_REPLICAS = 1000

if TYPE_CHECKING:
    ClassName = str
else:
    # The table's names as a Literal, so pydantic refuses any other key and lists the allowed ones.
    ClassName = Literal[CLASS_NAMES]

SECRET_FILES: dict[str, str] = {
    "registrationSharedSecret": "registration_shared_secret",
    "macaroonSecretKey": "macaroon_secret_key",
    "formSecret": "form_secret",
    "replicationSecret": "worker_replication_secret",
    "signingKey": "signing.key",
    "postgresPassword": "postgres_password",
    "redisPassword": "redis_password",
}
"""Secret config keys and the key (file name) each takes in the Kubernetes Secret."""

_WHOLE_REPLICAS = f"a whole number from 1 to {MAX_REPLICAS}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class ResourceAmounts(_Model):
    cpu: Quantity | None = Field(None, description="a CPU quantity such as 500m or 2")
    memory: Quantity | None = Field(None, description="a memory quantity such as 512Mi or 2Gi")


class ResourceOverride(_Model):
    requests: ResourceAmounts = ResourceAmounts()
    limits: ResourceAmounts = ResourceAmounts()


class DatabasePool(_Model):
    cp_min: WholeNumber | None = Field(
        None, ge=1, le=100, description="a whole number of connections from 1 to 100, at most cpMax"
    )
    cp_max: WholeNumber | None = Field(
        None, ge=1, le=100, description="a whole number of connections from 1 to 100, at least cpMin"
    )


class WorkerOverride(_Model):
    replicas: WholeNumber | None = Field(
        None,
        ge=0,
        le=MAX_REPLICAS,
        description=f"a whole number from 0 (off, for a class beyond the guide) to {MAX_REPLICAS}",
    )
    min_replicas: WholeNumber | None = Field(None, ge=1, le=MAX_REPLICAS, description=_WHOLE_REPLICAS)
    max_replicas: WholeNumber | None = Field(None, ge=1, le=MAX_REPLICAS, description=_WHOLE_REPLICAS)
    resources: ResourceOverride | None = None
    database: DatabasePool | None = None


class MainProcessSettings(_Model):
    resources: ResourceOverride | None = None
    database: DatabasePool | None = None


class Federation(_Model):
    enabled: Flag = Field(False, description="true or false")
    servers: WholeNumber | None = Field(
        None, ge=1, le=100_000, description="a whole number of federated servers from 1 to 100000"
    )


class Hpa(_Model):
    target_cpu_utilization: WholeNumber = Field(
        65, ge=1, le=100, description="a whole percentage from 1 to 100 (the guide says 60-70)"
    )
    headroom: Number = Field(2.0, ge=1.0, le=10.0, description="a number from 1.0 to 10.0")
    # The guide's best practice 2 (scale only on load sustained for five minutes) is the default. Shorter
    # windows suit a test cluster that must see the HPA act within minutes; Kubernetes allows 0-3600.
    scale_up_window_seconds: WholeNumber = Field(
        300, ge=0, le=3600, description="whole seconds from 0 to 3600 (the guide says 300)"
    )
    scale_down_window_seconds: WholeNumber = Field(
        300, ge=0, le=3600, description="whole seconds from 0 to 3600 (the guide says 300)"
    )


class Pooler(_Model):
    enabled: Flag = Field(False, description="true to run PgBouncer between Synapse and PostgreSQL")
    replicas: WholeNumber = Field(2, ge=1, le=20, description="a whole number of PgBouncer pods from 1 to 20")
    pool_size: WholeNumber = Field(
        20,
        ge=1,
        le=10000,
        description="server connections each PgBouncer pod may open to PostgreSQL, 1 to 10000",
    )
    max_client_connections: WholeNumber = Field(
        10000,
        ge=1,
        le=100000,
        description="client connections each PgBouncer pod accepts, 1 to 100000 (a setting, not derived from the "
        "load, so scaling Synapse never restarts PgBouncer)",
    )
    image: ImageRef = Field(
        "ghcr.io/cloudnative-pg/pgbouncer:1.24.1",
        description="a PgBouncer image reference with a tag or a sha256 digest (it needs /bin/sh and pgbouncer)",
    )


class Postgres(_Model):
    host: Hostname = Field(description="the PostgreSQL host name")
    port: WholeNumber = Field(5432, ge=1, le=65535, description="a TCP port from 1 to 65535")
    database: Text = Field("synapse", min_length=1, description="a database name")
    user: Text = Field("synapse", min_length=1, description="a user name")
    max_connections: WholeNumber = Field(
        100, ge=1, le=262143, description="the server's max_connections, 1 to 262143 (PostgreSQL's default is 100)"
    )
    reserved_connections: WholeNumber = Field(
        10,
        ge=0,
        le=1000,
        description="connections kept free for superusers and maintenance (psql, pg_dump, migrations), 0 to 1000",
    )
    pooler: Pooler = Pooler()


class Redis(_Model):
    host: Hostname = Field(description="the Redis host name")
    port: WholeNumber = Field(6379, ge=1, le=65535, description="a TCP port from 1 to 65535")
    auth: Flag = Field(False, description="true when Redis needs a password (synapse:redisPassword)")


class Media(_Model):
    claim_name: DnsSubdomain = Field("synapse-media", description="a PersistentVolumeClaim name (a DNS subdomain name)")
    create_claim: Flag = Field(True, description="true or false")
    size: Quantity = Field("50Gi", description="a storage quantity such as 50Gi")
    storage_class: DnsSubdomain | None = Field(None, description="a StorageClass name")
    max_upload_size: ByteSize = Field(
        SYNAPSE_MAX_UPLOAD_SIZE, description="Synapse's max_upload_size: a size such as 50M (K, M, G, T are binary)"
    )


class Monitoring(_Model):
    enabled: Flag = Field(
        False, description="true to emit ServiceMonitors and PrometheusRules (the Prometheus Operator CRDs must exist)"
    )
    namespace: DnsLabel = Field(
        "monitoring", description="the namespace Prometheus scrapes from (a DNS label); only it may reach port 9090"
    )
    labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="extra labels for the ServiceMonitors and rules, e.g. {release: prometheus}"
    )


class NodeSize(_Model):
    cpu: Quantity = Field("16", description="a CPU quantity such as 16 or 15500m (allocatable per node)")
    memory: Quantity = Field("64Gi", description="a memory quantity such as 64Gi (allocatable per node)")


class Capacity(_Model):
    node: NodeSize = NodeSize()


class Router(_Model):
    host: Hostname | None = Field(None, description="the public host name of the Ingress; defaults to serverName")
    ingress_annotations: dict[LabelKey, Text] = Field(
        default_factory=dict,
        description="annotations for the Ingress, over the defaults (README: the Ingress and upload sizes)",
    )
    ingress_class_name: DnsSubdomain | None = Field(None, description="an IngressClass name")
    tls_secret: DnsSubdomain | None = Field(None, description="the name of a TLS Secret for the Ingress")
    replicas: WholeNumber = Field(2, ge=1, le=100, description="a whole number from 1 to 100")
    image: ImageRef = Field(
        "docker.io/library/haproxy:3.2", description="an HAProxy image reference with a tag or a sha256 digest"
    )
    # At least the 15 s the router takes to drop a stopped pod (kube/haproxy.py), at most what leaves
    # Synapse time to stop within the pods' 60 s grace period. The default also lets a 30 s `/sync`
    # long-poll end; clients that poll for less can take a shorter drain, and every rollout of an
    # autoscaled class and every quiesce gets that much faster.
    drain_seconds: WholeNumber = Field(
        45,
        ge=15,
        le=50,
        description="whole seconds from 15 to 50 (an autoscaled pod keeps serving this long once told to stop)",
    )


class Settings(_Model):
    """Everything the plan needs, already checked."""

    stack: str
    ccu: WholeNumber = Field(ge=1, le=MAX_CCU, description=f"a whole number of concurrent users from 1 to {MAX_CCU}")
    messages_per_second: Number | None = Field(
        None, gt=0, le=100_000, description="a number of messages per second above 0, at most 100000"
    )
    federation: Federation = Federation()
    sizing: Literal["formula", "guide-table"] = Field("formula", description="formula or guide-table")
    workers: dict[ClassName, WorkerOverride] = Field(
        default_factory=dict, description="worker classes: " + ", ".join(CLASS_NAMES)
    )
    hpa: Hpa = Hpa()
    main: MainProcessSettings = MainProcessSettings()
    namespace: DnsLabel = Field("matrix", description="a Kubernetes namespace (a DNS label)")
    create_namespace: Flag = Field(True, description="true or false")
    image: ImageRef = Field(
        "ghcr.io/element-hq/synapse:v1.163.2",
        description="an image reference with a tag or a sha256 digest",
    )
    server_name: Hostname = Field(description="the Matrix server name, a host name")
    public_baseurl: HttpsUrl | None = Field(None, description="an http(s) URL")
    postgres: Postgres = Field(description="an object with host (required), port, database, user")
    redis: Redis = Field(description="an object with host (required), port, auth")
    media: Media = Media()
    monitoring: Monitoring = Monitoring()
    router: Router = Router()
    capacity: Capacity = Capacity()
    maintenance_window: Flag = Field(False, description="true while a maintenance window is open")
    require_maintenance_window: Flag = Field(
        False, description="true to refuse changes that restart synapse-main outside a maintenance window"
    )
    staging_gate: StackName | None = Field(
        None, description="a stack name (or org/project/stack) that must have deployed this program revision first"
    )
    existing_secret: DnsSubdomain | None = Field(
        None, description="the name of an existing Kubernetes Secret (a DNS subdomain name)"
    )
    managed_secrets: tuple[str, ...] = ()
    """Secret keys given as Pulumi secrets (names only, never values)."""

    def pin(self, class_name: str) -> WorkerOverride | None:
        return self.workers.get(class_name)

    def overrides(self, process: Process) -> MainProcessSettings | WorkerOverride | None:
        """What the stack sets for main (`synapse:main`) or a class (`synapse:workers.<class>`)."""
        return self.main if isinstance(process, MainProcess) else self.pin(process.name)

    def key_of(self, process: Process) -> str:
        """The config key under which the stack sets `process`'s resources and pool."""
        return f"{NAMESPACE}:main" if isinstance(process, MainProcess) else f"{NAMESPACE}:workers.{process.name}"

    def db_pool(self, process: Process) -> DbPool:
        """The pool a process opens: the table's default, then the stack's."""
        given = self.overrides(process)
        base, override = process.db_pool, None if given is None else given.database
        if override is None:
            return base
        return DbPool(
            cp_min=override.cp_min if override.cp_min is not None else base.cp_min,
            cp_max=override.cp_max if override.cp_max is not None else base.cp_max,
        )

    def resources(self, process: Process) -> Resources:
        """The process's container resources: the table's defaults, then the stack's."""
        given = self.overrides(process)
        override = None if given is None else given.resources
        base = process.resources
        if override is None:
            return base
        return Resources(
            cpu_request=override.requests.cpu or base.cpu_request,
            memory_request=override.requests.memory or base.memory_request,
            cpu_limit=override.limits.cpu or base.cpu_limit,
            memory_limit=override.limits.memory or base.memory_limit,
        )

    @property
    def secret_name(self) -> str:
        return self.existing_secret or "synapse-secrets"


OBJECT_KEYS = frozenset(
    {"federation", "workers", "hpa", "main", "postgres", "redis", "media", "monitoring", "router", "capacity"}
)
TOP_LEVEL_KEYS = tuple(
    sorted(
        {to_camel(name) for name in Settings.model_fields if name not in ("stack", "managed_secrets")}
        | set(SECRET_FILES)
    )
)
REQUIRED_SECRETS = tuple(k for k in SECRET_FILES if k != "redisPassword")


def _allowed(loc: tuple[int | str, ...]) -> str:
    """Find the description of the field a pydantic error points at, for the 'allowed:' part."""
    model: type[BaseModel] | None = Settings
    text = "see the README's list of settings"
    skip_class_name = False
    for part in loc:
        if skip_class_name:
            skip_class_name = False
            continue
        if model is None or not isinstance(part, str):
            continue
        field = next(
            (f for n, f in model.model_fields.items() if part in (n, f.alias)),
            None,
        )
        if field is None:
            known = sorted(f.alias or n for n, f in model.model_fields.items())
            return "one of the keys " + ", ".join(known)
        text = field.description or text
        candidates = (field.annotation, *get_args(field.annotation))
        model = next(
            (a for a in candidates if isinstance(a, type) and issubclass(a, BaseModel)),
            None,
        )
        if part == "workers":
            model, skip_class_name = WorkerOverride, True
    return text


def _key_of(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc if p != "[key]"]
    return f"{NAMESPACE}:" + ".".join(parts)


def _from_validation_error(stack: str, error: ValidationError, data: Mapping[str, Any]) -> ConfigError:
    first = error.errors()[0]
    loc = tuple(first["loc"])
    if first["type"] == "missing":
        return ConfigError(stack, _key_of(loc), UNSET, _allowed(loc))
    if first["type"] == "extra_forbidden":
        return ConfigError(stack, _key_of(loc), first["input"], _allowed(loc), "unknown key")
    if loc[:1] == ("workers",) and len(loc) >= 2 and loc[-1] == "[key]":
        return ConfigError(stack, _key_of(loc), loc[1], "worker classes " + ", ".join(CLASS_NAMES), "unknown class")
    if first["type"] in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        problem = "out of range"
    else:
        problem = str(first["msg"]).removeprefix("Value error, ")
    return ConfigError(stack, _key_of(loc), first["input"], _allowed(loc), problem)


def parse_values(
    stack: str, values: Mapping[str, str], secret_keys: AbstractSet[str]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Turn the CLI's `namespace:key` → text map into model input, rejecting keys we do not know."""
    data: dict[str, Any] = {}
    secrets: list[str] = []
    for full_key in sorted(values):
        namespace, sep, key = full_key.partition(":")
        if not sep:
            raise ConfigError(stack, full_key, values[full_key], "keys of the form synapse:<key>")
        if namespace in PROVIDER_NAMESPACES:
            continue
        if namespace != NAMESPACE:
            hint = f"did you mean {NAMESPACE}:{key}?" if key in TOP_LEVEL_KEYS else "unknown namespace"
            raise ConfigError(stack, full_key, values[full_key], f"keys in the '{NAMESPACE}:' namespace", hint)
        raw = values[full_key]
        if key in SECRET_FILES:
            if full_key not in secret_keys:
                raise ConfigError(
                    stack,
                    full_key,
                    "(plain text, not shown)",
                    f"a secret: pulumi config set --secret {full_key} <value>",
                    "given in plain text",
                )
            secrets.append(key)
            continue
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(stack, full_key, raw, "the keys " + ", ".join(TOP_LEVEL_KEYS), "unknown key")
        if key in OBJECT_KEYS:
            try:
                data[key] = json.loads(raw)
            except json.JSONDecodeError:
                raise ConfigError(
                    stack,
                    full_key,
                    raw,
                    f"an object: pulumi config set --path '{full_key}.<field>' <value>",
                    "not valid JSON",
                ) from None
        else:
            data[key] = raw
    return data, tuple(sorted(secrets))


def _check_pins(settings: Settings) -> None:
    stack = settings.stack
    for name, pin in sorted(settings.workers.items()):
        spec = BY_NAME[name]
        key = f"{NAMESPACE}:workers.{name}"
        if spec.needs_federation and not settings.federation.enabled:
            raise ConfigError(
                stack,
                key,
                pin.model_dump(by_alias=True, exclude_none=True),
                f"no {name} settings while synapse:federation.enabled is false",
                "federation is off",
            )
        if spec.scaling == "manual":
            for field, value in (("minReplicas", pin.min_replicas), ("maxReplicas", pin.max_replicas)):
                if value is not None:
                    raise ConfigError(
                        stack,
                        f"{key}.{field}",
                        value,
                        "replicas (this class is scaled by hand, never by an HPA)",
                        f"{name} has no HPA",
                    )
        if pin.replicas == 0 and not spec.beyond_guide:
            raise ConfigError(
                stack,
                f"{key}.replicas",
                0,
                f"a whole number from {1 if spec.exactly_one else HA_FLOOR}: only the classes beyond the guide "
                f"({', '.join(c.name for c in WORKER_CLASSES if c.beyond_guide)}) can be turned off",
                f"{name} carries work main does not do once workers run",
            )
        if spec.exactly_one:
            allowed = "0 (off) or 1" if spec.beyond_guide else "1"
            if pin.replicas is not None and pin.replicas > 1:
                problem = "real Synapse would refuse to start" if spec.stream else "Synapse would use only one"
                raise ConfigError(stack, f"{key}.replicas", pin.replicas, f"{allowed}: {spec.why_one}", problem)
            continue
        if spec.beyond_guide:
            continue  # any count, 0 = off: no HA floor for the duties beyond the guide (README)
        for field, value in (
            ("replicas", pin.replicas),
            ("minReplicas", pin.min_replicas),
            ("maxReplicas", pin.max_replicas),
        ):
            if value is not None and value < HA_FLOOR:
                raise ConfigError(
                    stack,
                    f"{key}.{field}",
                    value,
                    f"a whole number from {HA_FLOOR} (the high-availability floor) to {MAX_REPLICAS}",
                    "below the HA floor",
                )
        if pin.replicas is not None and pin.min_replicas is not None:
            raise ConfigError(
                stack,
                f"{key}.minReplicas",
                pin.min_replicas,
                "either replicas or minReplicas (for an HPA class both mean the HPA minimum)",
                "both set",
            )
        low = pin.min_replicas if pin.min_replicas is not None else pin.replicas
        if low is not None and pin.max_replicas is not None and pin.max_replicas < low:
            raise ConfigError(
                stack,
                f"{key}.maxReplicas",
                pin.max_replicas,
                f"a whole number of at least {low} (the minimum)",
                "below the minimum",
            )


def _check_federation(settings: Settings) -> None:
    stack = settings.stack
    fed = settings.federation
    if fed.servers is not None and not fed.enabled:
        raise ConfigError(
            stack,
            f"{NAMESPACE}:federation.servers",
            fed.servers,
            "no server count while synapse:federation.enabled is false",
            "federation is off",
        )
    if fed.enabled and fed.servers is None:
        raise ConfigError(
            stack,
            f"{NAMESPACE}:federation.servers",
            UNSET,
            "a whole number of federated servers from 1 to 100000 (it sizes the federation senders)",
            "required when federation is enabled",
        )


def _check_pools(settings: Settings) -> None:
    for process in PROCESSES:
        pool = settings.db_pool(process)
        if pool.cp_max >= pool.cp_min:
            continue
        given = settings.overrides(process)
        database = None if given is None else given.database
        if database is not None and database.cp_max is not None:
            allowed, field, value, problem = f"at least cpMin ({pool.cp_min})", "cpMax", pool.cp_max, "below cpMin"
        else:
            allowed, field, value, problem = f"at most cpMax ({pool.cp_max})", "cpMin", pool.cp_min, "above cpMax"
        raise ConfigError(
            settings.stack,
            f"{settings.key_of(process)}.database.{field}",
            value,
            f"a whole number of connections {allowed}",
            problem,
        )


def _check_secrets(settings: Settings) -> None:
    stack = settings.stack
    given = set(settings.managed_secrets)
    if settings.existing_secret is not None:
        if given:
            first = sorted(given)[0]
            raise ConfigError(
                stack,
                f"{NAMESPACE}:{first}",
                "(secret, not shown)",
                "either synapse:existingSecret or Pulumi secrets, not both",
                "both given",
            )
        return
    needed = list(REQUIRED_SECRETS) + (["redisPassword"] if settings.redis.auth else [])
    missing = [k for k in needed if k not in given]
    if missing:
        raise ConfigError(
            stack,
            f"{NAMESPACE}:{missing[0]}",
            UNSET,
            f"a Pulumi secret (pulumi config set --secret {NAMESPACE}:{missing[0]} …), "
            "or synapse:existingSecret naming a Kubernetes Secret",
            "required",
        )
    if "redisPassword" in given and not settings.redis.auth:
        raise ConfigError(
            stack,
            f"{NAMESPACE}:redisPassword",
            "(secret, not shown)",
            "no Redis password unless synapse:redis.auth is true",
            "Redis auth is off",
        )


def _check_capacity(settings: Settings) -> None:
    """A node of zero CPU or memory would divide the budget's node count by zero; one smaller than a
    single process's request could hold no pod at all."""
    node = settings.capacity.node
    for field, value, smallest in (("cpu", node.cpu, "100m"), ("memory", node.memory, "256Mi")):
        if quantity(value) < quantity(smallest):
            raise ConfigError(
                settings.stack,
                f"{NAMESPACE}:capacity.node.{field}",
                value,
                f"at least {smallest} (the smallest request of any Synapse process), as allocatable per node",
                "too small for any pod",
            )


def _check_server_name(settings: Settings) -> None:
    _, sep, port = settings.server_name.partition(":")
    if sep and not 1 <= int(port) <= 65535:
        raise ConfigError(
            settings.stack, f"{NAMESPACE}:serverName", settings.server_name, "a port from 1 to 65535", "no such port"
        )


def _check_staging_gate(settings: Settings) -> None:
    gate = settings.staging_gate
    if gate == settings.stack:
        raise ConfigError(
            settings.stack,
            f"{NAMESPACE}:stagingGate",
            gate,
            "another stack (or org/project/stack) that deploys first",
            "a stack cannot wait for itself: the gate could never pass",
        )


def _check_resources(settings: Settings) -> None:
    """A request above its limit is refused here: Kubernetes would refuse the whole workload at apply time."""
    for process in PROCESSES:
        merged = settings.resources(process)
        for what, request, limit in (
            ("cpu", merged.cpu_request, merged.cpu_limit),
            ("memory", merged.memory_request, merged.memory_limit),
        ):
            if quantity(request) > quantity(limit):
                raise ConfigError(
                    settings.stack,
                    f"{settings.key_of(process)}.resources.requests.{what}",
                    request,
                    f"a request no larger than the limit ({limit})",
                    "request above limit",
                )


CHECKS = (
    _check_federation,
    _check_pools,
    _check_pins,
    _check_secrets,
    _check_resources,
    _check_capacity,
    _check_server_name,
    _check_staging_gate,
)
"""The checks that span several keys, in the order their errors win: each refuses in one line."""


def load_settings(stack: str, values: Mapping[str, str], secret_keys: AbstractSet[str] = frozenset()) -> Settings:
    """Validate a stack's config, given as the Pulumi CLI hands it to a program."""
    data, secrets = parse_values(stack, values, secret_keys)
    try:
        settings = Settings.model_validate({**data, "stack": stack, "managedSecrets": secrets})
    except ValidationError as error:
        raise _from_validation_error(stack, error, data) from None
    for check in CHECKS:
        check(settings)
    return settings
