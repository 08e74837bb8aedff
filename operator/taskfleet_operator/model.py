"""Typed views of TaskQueue and WorkerPool objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .policy import ScalingPolicy, SpecError, parse_policy

GROUP = "taskfleet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


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

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class WorkerPool:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: dict[str, Any]
    policy: ScalingPolicy
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def queues(self) -> list[str]:
        return list(self.spec["queues"])


def _secret_key(d: Any, path: str) -> SecretKey | None:
    if d is None:
        return None
    ref = d.get("secretKeyRef") if isinstance(d, dict) else None
    if not isinstance(ref, dict) or not ref.get("name") or not ref.get("key"):
        raise SpecError(f"{path}.secretKeyRef needs name and key")
    return SecretKey(str(ref["name"]), str(ref["key"]))


def parse_task_queue(body: dict[str, Any]) -> TaskQueue:
    meta, spec = body["metadata"], body.get("spec") or {}
    r = spec.get("redis") or {}
    if bool(r.get("url")) == bool(r.get("urlFrom")):
        raise SpecError("spec.redis: give exactly one of url and urlFrom")
    tls = r.get("tls") or {}
    ref = RedisRef(url=r.get("url"), url_from=_secret_key(r.get("urlFrom"), "spec.redis.urlFrom"),
                   password_from=_secret_key(r.get("passwordFrom"), "spec.redis.passwordFrom"),
                   tls=bool(tls.get("enabled", False)),
                   tls_insecure=bool(tls.get("insecureSkipVerify", False)))
    return TaskQueue(namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""),
                     generation=int(meta.get("generation", 0)),
                     queue_name=spec.get("queueName") or meta["name"], redis=ref,
                     schedules=tuple(spec.get("schedules") or ()))


def parse_worker_pool(body: dict[str, Any]) -> WorkerPool:
    """Raises SpecError naming the field when the spec cannot be served."""
    meta, spec = body["metadata"], dict(body.get("spec") or {})
    queues = spec.get("queues")
    if not isinstance(queues, list) or not queues or not all(isinstance(q, str) for q in queues):
        raise SpecError("spec.queues must list at least one TaskQueue name")
    if not isinstance(spec.get("app"), str) or ":" not in spec["app"]:
        raise SpecError("spec.app must be an import path like video.tasks:app")
    return WorkerPool(namespace=meta["namespace"], name=meta["name"], uid=meta.get("uid", ""),
                      generation=int(meta.get("generation", 0)), spec=spec,
                      policy=parse_policy(spec), status=dict(body.get("status") or {}))
