"""Typed views of TaskQueue and WorkerPool objects."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from taskfleet.celery_wire import DEFAULT_PRIORITY_STEPS
from taskfleet.connection import has_password, parse_broker_url
from taskfleet.errors import ConfigError

from .policy import ScalingPolicy, SpecError, _int, parse_policy
from .protocols import DEFAULT_PROTOCOL, PROTOCOLS, QueueProtocol, protocol_named
from .runtimes import DEFAULT_RUNTIME, RUNTIMES, WorkerRuntime, runtime_named

GROUP = "taskfleet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
DEFAULT_GRACE_SECONDS = 600
"""spec.terminationGracePeriodSeconds's default: the drain window after SIGTERM."""


@dataclass(frozen=True)
class SecretKey:
    name: str
    key: str


@dataclass(frozen=True)
class RedisRef:
    """How to reach a queue's Redis: the operator resolves it, the pods get references."""

    url: str | None = None
    url_from: SecretKey | None = None
    password_from: SecretKey | None = None
    sentinel_password_from: SecretKey | None = None
    """The sentinels' password (a redis+sentinel:// URL), apart from the data nodes'."""
    tls: bool = False
    tls_insecure: bool = False


@dataclass(frozen=True)
class TaskQueue:
    namespace: str
    name: str
    uid: str
    generation: int
    queue_name: str
    redis: RedisRef
    schedules: tuple[dict[str, Any], ...] = ()
    dead_letter_limit: int | None = None
    """spec.deadLetterLimit; None: the workers' own default."""
    protocol: str = DEFAULT_PROTOCOL
    """spec.protocol: how the queue is laid out in Redis (a name in protocols.PROTOCOLS)."""
    priority_steps: tuple[int, ...] = DEFAULT_PRIORITY_STEPS
    """spec.celery.prioritySteps: kombu's priority sub-lists of a celery queue."""
    key: tuple[str, str] = field(init=False, repr=False, compare=False)
    """(namespace, name), kept: the controller asks for it many times per pass."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.namespace, self.name))

    @property
    def queue_protocol(self) -> QueueProtocol:
        """What reads the queue and says how new work in it is learnt of (spec.protocol)."""
        return protocol_named(self.protocol)


@dataclass(frozen=True)
class WorkerPool:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: dict[str, Any]
    policy: ScalingPolicy
    status: dict[str, Any] = field(default_factory=dict)
    key: tuple[str, str] = field(init=False, repr=False, compare=False)
    """(namespace, name), kept: the controller asks for it many times per pass."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.namespace, self.name))

    @property
    def queues(self) -> list[str]:
        return list(self.spec["queues"])

    @property
    def runtime(self) -> WorkerRuntime:
        """The program its containers run (spec.runtime)."""
        return runtime_named(self.spec.get("runtime", DEFAULT_RUNTIME))

    @property
    def grace_seconds(self) -> int:
        """spec.terminationGracePeriodSeconds: how long a worker has to drain."""
        return int(self.spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE_SECONDS))

    @property
    def metrics_port(self) -> int | None:
        """The workers' Prometheus port when spec.metrics.enabled, else None."""
        metrics = self.spec.get("metrics") or {}
        return int(metrics.get("port", METRICS_PORT)) if metrics.get("enabled") else None


def _secret_key(d: Any, path: str) -> SecretKey | None:
    if d is None:
        return None
    ref = d.get("secretKeyRef") if isinstance(d, dict) else None
    if not isinstance(ref, dict) or not ref.get("name") or not ref.get("key"):
        raise SpecError(f"{path}.secretKeyRef needs name and key")
    return SecretKey(str(ref["name"]), str(ref["key"]))


def _object(value: Any, path: str) -> dict[str, Any]:
    """An object field (absent: empty). The CRD schema checks types too, but the parsers
    must not trust it: an older CRD, or a field it leaves open, lets anything through."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{path} must be an object")
    return value


def _flag(d: dict[str, Any], key: str, path: str) -> bool:
    value = d.get(key, False)
    if not isinstance(value, bool):
        raise SpecError(f"{path}.{key} must be true or false")
    return value


def parse_task_queue(body: dict[str, Any]) -> TaskQueue:
    """Raises SpecError naming the field when the spec cannot be served."""
    meta = body["metadata"]
    spec = _object(body.get("spec"), "spec")
    r = _object(spec.get("redis"), "spec.redis")
    if r.get("url") is not None and not isinstance(r["url"], str):
        raise SpecError("spec.redis.url must be a URL such as redis://redis:6379/0")
    if bool(r.get("url")) == bool(r.get("urlFrom")):
        raise SpecError("spec.redis: give exactly one of url and urlFrom")
    if r.get("url"):
        try:
            parse_broker_url(r["url"])
        except ConfigError as exc:
            raise SpecError(f"spec.redis.url: {exc}") from None
        if has_password(r["url"]):
            raise SpecError(
                "spec.redis.url must not hold a password (user:PASSWORD@, ?password= or "
                "?sentinel_password=): a TaskQueue is no Secret, and the URL would reach the "
                "workers' Deployment as plain text. Put the password in a Secret labelled "
                "taskfleet.dev/redis-credentials=true and name it in spec.redis.passwordFrom "
                "(sentinelPasswordFrom for the sentinels'), or the whole URL in "
                "spec.redis.urlFrom")
    tls = _object(r.get("tls"), "spec.redis.tls")
    ref = RedisRef(url=r.get("url"), url_from=_secret_key(r.get("urlFrom"), "spec.redis.urlFrom"),
                   password_from=_secret_key(r.get("passwordFrom"), "spec.redis.passwordFrom"),
                   sentinel_password_from=_secret_key(r.get("sentinelPasswordFrom"),
                                                      "spec.redis.sentinelPasswordFrom"),
                   tls=_flag(tls, "enabled", "spec.redis.tls"),
                   tls_insecure=_flag(tls, "insecureSkipVerify", "spec.redis.tls"))
    queue_name = spec.get("queueName") or meta["name"]
    if not isinstance(queue_name, str):
        raise SpecError("spec.queueName must be a string (default: metadata.name)")
    schedules = spec.get("schedules") or []
    if not isinstance(schedules, list) or not all(isinstance(s, dict) for s in schedules):
        raise SpecError("spec.schedules must be a list of objects with name, cron and task")
    dead_letter_limit = (None if spec.get("deadLetterLimit") is None
                         else _int(spec, "deadLetterLimit", "spec", 0))
    protocol = spec.get("protocol") or DEFAULT_PROTOCOL
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:
        raise SpecError(f"spec.protocol must be one of {', '.join(PROTOCOLS)}, "
                        f"got {protocol!r:.40}")
    steps = _object(spec.get("celery"), "spec.celery").get("prioritySteps",
                                                           list(DEFAULT_PRIORITY_STEPS))
    if (not isinstance(steps, list) or not steps
            or not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 255
                       for n in steps)):
        raise SpecError("spec.celery.prioritySteps must list priorities such as [0, 3, 6, 9] "
                        "(kombu's priority_steps)")
    kind = PROTOCOLS[protocol]
    if not kind.on_a_cluster and str(ref.url or "").startswith("redis+cluster://"):
        raise SpecError(f"spec.protocol: a {protocol} queue lives on one Redis server (or "
                        "behind Sentinel), as its workers expect; use a redis:// or "
                        "redis+sentinel:// URL, or protocol native on a cluster")
    if not kind.takes_schedules and schedules:
        raise SpecError(f"spec.schedules: a {protocol} queue cannot take taskfleet's scheduled "
                        "tasks; use a native queue for schedules")
    return TaskQueue(namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""),
                     generation=int(meta.get("generation", 0)), queue_name=queue_name,
                     redis=ref, schedules=tuple(schedules), dead_letter_limit=dead_letter_limit,
                     protocol=protocol, priority_steps=tuple(sorted(set(steps))))


METRICS_PORT = 9200
"""spec.metrics.port's default: the workers' Prometheus port, named "metrics"."""
HEALTH_CHECK_MINIMUMS = {"maxAgeSeconds": 15, "initialDelaySeconds": 0, "periodSeconds": 1,
                         "failureThreshold": 1}
"""spec.healthCheck's fields and their least values (as the CRD's schema has them)."""


def _check_pod_fields(spec: dict[str, Any]) -> None:
    """The fields build_deployment reads, so that a pool that parses can be served."""
    for key in ("image", "imagePullPolicy", "serviceAccountName"):
        if spec.get(key) is not None and not isinstance(spec[key], str):
            raise SpecError(f"spec.{key} must be a string")
    for key in ("automountServiceAccountToken", "enableServiceLinks"):
        _flag(spec, key, "spec")
    _int(spec, "concurrency", "spec", 1, 1)
    _int(spec, "terminationGracePeriodSeconds", "spec", DEFAULT_GRACE_SECONDS, 1)
    health = _object(spec.get("healthCheck"), "spec.healthCheck")
    for key, minimum in HEALTH_CHECK_MINIMUMS.items():
        _int(health, key, "spec.healthCheck", minimum, minimum)
    metrics = _object(spec.get("metrics"), "spec.metrics")
    _flag(metrics, "enabled", "spec.metrics")
    if _int(metrics, "port", "spec.metrics", METRICS_PORT, 1) > 65535:
        raise SpecError("spec.metrics.port must be a port number from 1 to 65535")
    if spec.get("pool", "processes") not in ("processes", "threads"):
        raise SpecError("spec.pool must be processes or threads")
    for key in ("env", "envFrom", "tolerations"):
        if spec.get(key) is not None and not isinstance(spec[key], list):
            raise SpecError(f"spec.{key} must be a list")
    for key in ("nodeSelector", "affinity"):
        _object(spec.get(key), f"spec.{key}")
    _check_resources(_object(spec.get("resources"), "spec.resources"))
    code = spec.get("code")
    if code and not (isinstance(code, dict) and isinstance(code.get("configMap"), str)
                     and code["configMap"]):
        raise SpecError("spec.code.configMap must name the ConfigMap holding the task code")
    template = _object(spec.get("podTemplate"), "spec.podTemplate")
    meta = _object(template.get("metadata"), "spec.podTemplate.metadata")
    for key in ("labels", "annotations"):
        _object(meta.get(key), f"spec.podTemplate.metadata.{key}")
    _object(template.get("spec"), "spec.podTemplate.spec")


_QUANTITY = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?",
                       re.ASCII)
"""A Kubernetes resource quantity: 500m, 2, 1.5, 4Gi, 1e3."""


def _check_resources(resources: dict[str, Any]) -> None:
    """Quantities checked here: the API server answers a Deployment with a bad one with a
    500 (it cannot convert the object), which looks like an outage, not a wrong field."""
    for kind in ("limits", "requests"):
        for name, value in _object(resources.get(kind), f"spec.resources.{kind}").items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number or (isinstance(value, str) and _QUANTITY.fullmatch(value))):
                raise SpecError(f"spec.resources.{kind}.{name} must be a quantity such as "
                                f"500m, 2 or 4Gi, got {value!r:.40}")


def parse_worker_pool(body: dict[str, Any]) -> WorkerPool:
    """Raises SpecError naming the field when the spec cannot be served."""
    meta = body["metadata"]
    spec = dict(_object(body.get("spec"), "spec"))
    queues = spec.get("queues")
    if not isinstance(queues, list) or not queues or not all(isinstance(q, str) for q in queues):
        raise SpecError("spec.queues must list at least one TaskQueue name")
    name = spec.get("runtime", DEFAULT_RUNTIME)
    if not isinstance(name, str) or name not in RUNTIMES:
        raise SpecError(f"spec.runtime must be one of {', '.join(RUNTIMES)}, "
                        f"got {name!r:.40}")
    runtime = RUNTIMES[name]
    if runtime.needs_app and (not isinstance(spec.get("app"), str) or ":" not in spec["app"]):
        raise SpecError("spec.app must be an import path like video.tasks:app")
    _check_pod_fields(spec)
    runtime.check(spec)
    return WorkerPool(namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""),
                      generation=int(meta.get("generation", 0)), spec=spec,
                      policy=parse_policy(spec), status=dict(body.get("status") or {}))
