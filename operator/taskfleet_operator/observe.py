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

from taskfleet import QueueStats
from taskfleet.batch import Batch
from taskfleet.connection import BrokerURLError, Client, connect, parse_broker_url, redact

from .model import RedisRef, SecretKey, TaskQueue
from .protocols.base import L, Listener
from .runtimes import WorkerRuntime, own_runtime_of

log = logging.getLogger("taskfleet.operator")

SecretReader = Callable[[str, SecretKey], str]
"""(namespace, secret key) -> value; the operator reads Secrets through the API."""

CREDENTIALS_LABEL = "taskfleet.dev/redis-credentials"
"""The label (value "true") a Secret must carry for the operator to read it: its owner
opts in. A TaskQueue may name any Secret of its namespace in urlFrom, passwordFrom or
sentinelPasswordFrom; without the opt-in, whoever may write a TaskQueue could have the
operator send any Secret's value to a host of their choice as a Redis password."""


class SecretRefError(Exception):
    """A TaskQueue's spec.redis cannot be used now: a Secret it names is missing,
    unreadable or not opted in, its URL cannot be used, or a cluster's nodes cannot be
    read. The message names the field (and the Secret and key), says what is wrong and
    the fix, and holds nothing of a Secret's value."""


def _secret_of(namespace: str, ref: SecretKey) -> str:
    return f"Secret {namespace}/{ref.name} (key {ref.key!r})"


def secret_value(namespace: str, ref: SecretKey, labels: dict[str, str] | None,
                 data: dict[str, str] | None) -> str:
    """The value of one key of a Secret (its labels and base64 data as the API returns
    them), once the Secret has opted in; SecretRefError otherwise."""
    name = f"Secret {namespace}/{ref.name}"
    if (labels or {}).get(CREDENTIALS_LABEL) != "true":
        raise SecretRefError(
            f"{name} lacks the label {CREDENTIALS_LABEL}=\"true\"; the operator reads only "
            f"Secrets that opt in: kubectl label secret -n {namespace} {ref.name} "
            f"{CREDENTIALS_LABEL}=true")
    raw = (data or {}).get(ref.key)
    if raw is None:
        raise SecretRefError(f"{name} has no key {ref.key!r}; add it or fix secretKeyRef.key")
    try:
        return base64.b64decode(raw, validate=True).decode()
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise SecretRefError(f"{_secret_of(namespace, ref)} is not UTF-8 text") from None


def _parts(url: str) -> set[str]:
    """What a URL read from a Secret holds that no message may repeat: the URL, its
    user, password, hosts and master name."""
    found = {url}
    try:
        address = parse_broker_url(url)
    except BrokerURLError:
        return found
    found.update(x for x in (address.username, address.password, address.sentinel_password,
                             address.sentinel_username, address.master_name) if x)
    for host, port in address.hosts:
        found.update((host, f"{host}:{port}"))
    if address.mode == "single":
        from urllib.parse import urlsplit
        try:
            parts = urlsplit(address.url)
            found.update(x for x in (parts.hostname, parts.username, parts.password,
                                     parts.netloc, parts.path) if x and x != "/")
        except ValueError:
            pass
    return found

_RESOLVE_TTL_SECONDS = 60.0
ConnectionKey = tuple[str, str | None, str, str | None]
"""(url, password, tls mode, sentinels' password): what one Redis client is made from,
and so the key of the clients made."""


@dataclass(frozen=True)
class QueueReading:
    stats: QueueStats | None
    error: str | None = None


class RedisDirectory:
    """Redis clients by connection settings, shared by every queue on the same server."""

    def __init__(self, read_secret: SecretReader) -> None:
        self.read_secret = read_secret
        self._clients: dict[ConnectionKey, Client] = {}
        self._resolved: dict[tuple[str, RedisRef], tuple[float, ConnectionKey]] = {}
        self._secrets: set[str] = set()
        """Every value read from a Secret (and the parts of a URL read from one): no
        error, log line, Event or status may repeat them (:meth:`redact`)."""
        self._lock = threading.Lock()

    def redact(self, text: str) -> str:
        """``text`` without any password or any value read from a Secret."""
        with self._lock:
            secrets = list(self._secrets)
        return redact(text, secrets)

    def _read(self, namespace: str, ref: SecretKey, field: str) -> str:
        try:
            value = self.read_secret(namespace, ref)
        except SecretRefError as exc:
            raise SecretRefError(f"spec.redis.{field}: {exc}") from None
        except Exception as exc:  # the API's answer: not found, forbidden, unreachable
            reason = getattr(exc, "reason", None) or type(exc).__name__
            status = getattr(exc, "status", None)
            what = {404: "is not found; create it or fix secretKeyRef.name",
                    403: "is forbidden to the operator: its RBAC needs get on secrets in "
                         "this namespace (the chart's namespaces or clusterWide)"}.get(
                status or 0, f"cannot be read ({reason}); the operator tries again")
            raise SecretRefError(f"spec.redis.{field}: Secret {namespace}/{ref.name} "
                                 f"{what}") from None
        with self._lock:
            self._secrets.add(value)
            if field == "urlFrom":
                self._secrets.update(_parts(value))
        return value

    def connection_key(self, namespace: str, ref: RedisRef) -> ConnectionKey:
        """(url, password, tls mode, sentinels' password), Secrets resolved and cached for
        a minute."""
        cache_key = (namespace, ref)
        now = time.monotonic()
        with self._lock:
            hit = self._resolved.get(cache_key)
            if hit and now - hit[0] < _RESOLVE_TTL_SECONDS:
                return hit[1]
        if ref.url_from is not None:
            url = self._read(namespace, ref.url_from, "urlFrom")
            try:
                parse_broker_url(url)
            except BrokerURLError as exc:
                raise SecretRefError(
                    f"spec.redis.urlFrom: the value of {_secret_of(namespace, ref.url_from)} "
                    f"is not a usable broker URL (not shown): {exc.problem}") from None
        else:
            url = ref.url or ""
        password = self._read(namespace, ref.password_from, "passwordFrom") \
            if ref.password_from else None
        tls = "insecure" if ref.tls_insecure else ("true" if ref.tls else "")
        sentinel_password = self._read(namespace, ref.sentinel_password_from,
                                       "sentinelPasswordFrom") \
            if ref.sentinel_password_from else None
        value = (url, password, tls, sentinel_password)
        with self._lock:
            self._resolved[cache_key] = (now, value)
        return value

    def client(self, namespace: str, ref: RedisRef) -> Client:
        """The client of the Redis ``ref`` names, shared by every queue on it. Raises
        SecretRefError, and nothing else, when there is none now; every caller reacts
        the same way: it leaves the queue out of this pass, and the queue's reading
        (read_queues) carries the message to its MetricsAvailable condition."""
        try:
            return self._client(namespace, ref)
        except SecretRefError:
            raise
        except Exception as exc:  # whatever else resolving or connecting meets
            raise SecretRefError(self.redact(f"{type(exc).__name__}: {exc}")) from None

    def _client(self, namespace: str, ref: RedisRef) -> Client:
        key = self.connection_key(namespace, ref)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                url, password, tls, sentinel_password = key
                try:
                    found = connect(url, password=password or "", tls=tls,
                                    sentinel_password=sentinel_password or "")
                except BrokerURLError as exc:
                    where = "the URL of spec.redis.urlFrom" if ref.url_from else \
                        "spec.redis.url"
                    raise SecretRefError(f"{where}: {exc.problem}") from None
                except redis.RedisError as exc:  # a cluster client reads its nodes at once
                    raise SecretRefError(self.redact(f"redis: {exc}")) from None
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
        except SecretRefError as exc:  # a missing Secret must not stop the other queues
            out[tq.key] = QueueReading(None, f"cannot resolve spec.redis: {exc}")
            continue
        groups.setdefault(id(client), (client, []))[1].append(tq)
    for client, members in groups.values():
        batch = Batch(client)
        by_protocol: dict[str, list[TaskQueue]] = {}
        for tq in members:
            by_protocol.setdefault(tq.protocol, []).append(tq)
        figures = [(tqs, tqs[0].queue_protocol.add_reads(batch, client, tqs))
                   for tqs in by_protocol.values()]
        try:
            replies = batch.execute(raise_on_error=False)
        except redis.RedisError as exc:
            for tq in members:
                out[tq.key] = QueueReading(None, directory.redact(f"redis: {exc}"))
            continue
        for tqs, read in figures:
            for tq, found in zip(tqs, read(replies), strict=True):
                if isinstance(found, redis.RedisError):
                    out[tq.key] = QueueReading(None, directory.redact(f"redis: {found}"))
                elif isinstance(found, Exception):
                    out[tq.key] = QueueReading(None, directory.redact(
                        f"{found} (a {tq.protocol} queue)"))
                else:
                    out[tq.key] = QueueReading(found)
    return out


class Observer(Protocol):
    """What the controller reads from the queues' Redis servers."""

    def read_queues(self, queues: Iterable[TaskQueue]) -> dict[tuple[str, str], QueueReading]:
        """Figures of every queue, keyed by (namespace, TaskQueue name)."""
        ...

    def busy_by_pod(self, queue: TaskQueue, runtime: WorkerRuntime | None = None
                    ) -> dict[str, int] | None:
        """Running tasks per pod, as the workers of ``runtime`` (default: the one whose
        own protocol is the queue's) tell it (WorkerRuntime.running_by_pod); None when
        not known."""
        ...

    def redact(self, text: str) -> str:
        """``text`` without a password or any value read from a Secret: for what the
        controller logs of an error it did not expect (a traceback may quote either)."""
        ...


class RedisObserver:
    """The Observer of a running operator: real Redis servers through a directory. It is
    the QueueRedis (protocols.base) that queue protocols and worker runtimes read
    through, and keeps their listeners."""

    def __init__(self, directory: RedisDirectory) -> None:
        self.directory = directory
        self._listeners: dict[tuple[int, Callable[..., Any]], Listener] = {}
        self._lock = threading.Lock()

    def redact(self, text: str) -> str:
        return self.directory.redact(text)

    def read_queues(self, queues: Iterable[TaskQueue]) -> dict[tuple[str, str], QueueReading]:
        queues = list(queues)
        for tq in queues:
            tq.queue_protocol.watch(self, tq)
        return read_queues(self.directory, queues)

    def busy_by_pod(self, queue: TaskQueue, runtime: WorkerRuntime | None = None
                    ) -> dict[str, int] | None:
        return (runtime or own_runtime_of(queue.protocol)).running_by_pod(self, queue)

    def client_of(self, queue: TaskQueue) -> Client | None:
        try:
            return self.directory.client(queue.namespace, queue.redis)
        except SecretRefError:  # no costs this pass, the scale-down still happens
            return None

    def listener_of(self, queue: TaskQueue,
                    start: Callable[[redis.Redis, Callable[[str], str]], L]) -> L | None:
        client = self.client_of(queue)
        if not isinstance(client, redis.Redis):
            return None
        with self._lock:
            found = self._listeners.get((id(client), start))
            if found is None:
                found = self._listeners[(id(client), start)] = start(client, self.redact)
            return found  # type: ignore[return-value]  # the one ``start`` returned

    def close(self) -> None:
        with self._lock:
            for listener in self._listeners.values():
                listener.stop()


def secret_reader(core_api: Any) -> SecretReader:
    """Reads one key of a Secret through the Kubernetes API."""

    def read(namespace: str, ref: SecretKey) -> str:
        secret = core_api.read_namespaced_secret(ref.name, namespace)
        return secret_value(namespace, ref, secret.metadata.labels, secret.data)

    return read
