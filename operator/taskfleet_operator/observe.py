"""Observe: queue figures and worker heartbeats from Redis, one round trip per Redis."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import redis

from taskfleet import QueueStats, WorkerInfo, live_workers, queue_stats
from taskfleet.connection import Client, connect

from .model import RedisRef, SecretKey, TaskQueue

log = logging.getLogger("taskfleet.operator")

SecretReader = Callable[[str, SecretKey], str]
"""(namespace, secret key) -> value; the operator reads Secrets through the API."""

_RESOLVE_TTL_SECONDS = 60.0
Settings = tuple[str, str | None, str, str | None]
"""(url, password, tls mode, sentinels' password) of one Redis."""


@dataclass(frozen=True)
class QueueReading:
    stats: QueueStats | None
    error: str | None = None


class RedisDirectory:
    """Redis clients by connection settings, shared by every queue on the same server."""

    def __init__(self, read_secret: SecretReader) -> None:
        self.read_secret = read_secret
        self._clients: dict[Settings, Client] = {}
        self._resolved: dict[tuple[str, RedisRef], tuple[float, Settings]] = {}
        self._lock = threading.Lock()

    def settings(self, namespace: str, ref: RedisRef) -> Settings:
        """(url, password, tls mode, sentinels' password), Secrets resolved and cached for
        a minute."""
        cache_key = (namespace, ref)
        now = time.monotonic()
        with self._lock:
            hit = self._resolved.get(cache_key)
            if hit and now - hit[0] < _RESOLVE_TTL_SECONDS:
                return hit[1]
        url = ref.url or self.read_secret(namespace, ref.url_from)  # type: ignore[arg-type]
        password = self.read_secret(namespace, ref.password_from) if ref.password_from else None
        tls = "insecure" if ref.tls_insecure else ("true" if ref.tls else "")
        sentinel_password = self.read_secret(namespace, ref.sentinel_password_from) \
            if ref.sentinel_password_from else None
        value = (url, password, tls, sentinel_password)
        with self._lock:
            self._resolved[cache_key] = (now, value)
        return value

    def client(self, namespace: str, ref: RedisRef) -> Client:
        key = self.settings(namespace, ref)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                url, password, tls, sentinel_password = key
                found = connect(url, password=password or "", tls=tls,
                                sentinel_password=sentinel_password or "")
                self._clients[key] = found
            return found

    def all_clients(self) -> list[Client]:
        with self._lock:
            return list(self._clients.values())


def read_queues(directory: RedisDirectory, queues: Iterable[TaskQueue]
                ) -> dict[tuple[str, str], QueueReading]:
    """Figures of every queue: one pipelined round trip per Redis server, however many queues."""
    groups: dict[int, tuple[Client, list[TaskQueue]]] = {}
    out: dict[tuple[str, str], QueueReading] = {}
    for tq in queues:
        try:
            client = directory.client(tq.namespace, tq.redis)
        except Exception as exc:  # a missing Secret must not stop the other queues
            out[tq.key] = QueueReading(None, f"cannot resolve spec.redis: {exc}")
            continue
        groups.setdefault(id(client), (client, []))[1].append(tq)
    for client, members in groups.values():
        try:
            stats = queue_stats(client, [tq.queue_name for tq in members])
        except redis.RedisError as exc:
            for tq in members:
                out[tq.key] = QueueReading(None, f"redis: {exc}")
            continue
        for tq in members:
            out[tq.key] = QueueReading(stats[tq.queue_name])
    return out


def read_workers(client: Client) -> list[WorkerInfo]:
    try:
        return live_workers(client)
    except redis.RedisError as exc:
        log.warning("cannot read worker heartbeats: %s", exc)
        return []


class Observer(Protocol):
    """What the controller reads from the queues' Redis servers."""

    def read_queues(self, queues: Iterable[TaskQueue]) -> dict[tuple[str, str], QueueReading]:
        """Figures of every queue, keyed by (namespace, TaskQueue name)."""
        ...

    def busy_by_pod(self, queue: TaskQueue) -> dict[str, int] | None:
        """Running tasks per pod from the workers' heartbeats on the queue's Redis;
        None when that Redis cannot be resolved."""
        ...


class RedisObserver:
    """The Observer of a running operator: real Redis servers through a directory."""

    def __init__(self, directory: RedisDirectory) -> None:
        self.directory = directory

    def read_queues(self, queues: Iterable[TaskQueue]) -> dict[tuple[str, str], QueueReading]:
        return read_queues(self.directory, queues)

    def busy_by_pod(self, queue: TaskQueue) -> dict[str, int] | None:
        try:
            client = self.directory.client(queue.namespace, queue.redis)
        except Exception:  # a Secret gone: no costs this pass, the scale-down still happens
            return None
        busy: dict[str, int] = {}
        for w in read_workers(client):
            busy[w.pod] = busy.get(w.pod, 0) + w.busy
        return busy


def secret_reader(core_api: Any) -> SecretReader:
    """Reads one key of a Secret through the Kubernetes API."""

    def read(namespace: str, ref: SecretKey) -> str:
        secret = core_api.read_namespaced_secret(ref.name, namespace)
        data = secret.data or {}
        if ref.key not in data:
            raise KeyError(f"Secret {namespace}/{ref.name} has no key {ref.key!r}")
        return base64.b64decode(data[ref.key]).decode()

    return read
