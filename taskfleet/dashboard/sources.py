"""Where the dashboard's figures come from: queues on Redis clients and their figures, the
workers' heartbeats, and pools when a Kubernetes API is at hand (the operator's watches),
else none. ``taskfleet dashboard`` reads the figures from Redis on each request; the
operator hands over what its controller last read (taskfleet_operator.dashboard)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis

from .. import keys
from ..connection import Client, text
from ..heartbeat import WorkerInfo, live_workers
from ..stats import queue_stats


@dataclass(frozen=True)
class QueueSource:
    """One queue as the dashboard names it, and the Redis it lives on."""

    label: str
    """How the page names it: the queue's name, or namespace/TaskQueue under the operator."""
    queue: str
    client: Client


@dataclass(frozen=True)
class PoolView:
    namespace: str
    name: str
    queues: list[str]
    desired: int | None
    replicas: int
    ready: int
    max_replicas: int | None
    last_scale_time: str | None
    last_scale_reason: str | None
    conditions: dict[str, str] = field(default_factory=dict)
    """Condition type -> status ("True"/"False")."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class DashboardSource(Protocol):
    def queues(self) -> Sequence[QueueSource]:
        """Each queue and its Redis: for its dead letters, its actions and task look-ups."""

    def queue_rows(self) -> list[dict[str, Any]]:
        """Each queue's figures (or why there are none), sorted by label."""

    def worker_rows(self, now: float) -> list[dict[str, Any]]:
        """The live workers, sorted by pod."""

    def pools(self) -> Sequence[PoolView] | None:
        """None when no Kubernetes API is at hand."""

    @property
    def pools_unavailable(self) -> str:
        """Why pools() is None, for the page."""


class RedisSource:
    """One Redis: the queues named, or every queue found there (SCAN, as taskfleet inspect)."""

    pools_unavailable = ("pools are shown when the dashboard runs in the operator "
                         "(it needs the Kubernetes API); taskfleet dashboard reads Redis only")

    def __init__(self, client: Client, names: Sequence[str] = ()) -> None:
        self.client = client
        self.names = list(names)

    def queues(self) -> list[QueueSource]:
        names = self.names or sorted({
            keys.queue_of_key(text(k)) for pattern in keys.QUEUE_SCAN_PATTERNS
            for k in self.client.scan_iter(match=pattern, count=1000)})
        return [QueueSource(n, n, self.client) for n in names]

    def queue_rows(self) -> list[dict[str, Any]]:
        return queue_rows(self.queues())

    def worker_rows(self, now: float) -> list[dict[str, Any]]:
        return worker_rows(live_workers_of(distinct_clients(self.queues()), now), now)

    def pools(self) -> None:
        return None


def distinct_clients(queues: Sequence[QueueSource]) -> list[Client]:
    seen: dict[int, Client] = {}
    for q in queues:
        seen.setdefault(id(q.client), q.client)
    return list(seen.values())


def queue_rows(queues: Sequence[QueueSource]) -> list[dict[str, Any]]:
    """Each queue's figures; an unreachable Redis is a row with its error, not a failure."""
    rows: list[dict[str, Any]] = []
    for client in distinct_clients(queues):
        mine = [q for q in queues if q.client is client]
        try:
            stats = queue_stats(client, [q.queue for q in mine])
        except redis.RedisError as exc:
            rows += [{"label": q.label, "queue": q.queue, "error": str(exc)} for q in mine]
            continue
        for q in mine:
            rows.append({"label": q.label, "queue": q.queue, **stats[q.queue].as_dict()})
    return sorted(rows, key=lambda r: str(r["label"]))


def live_workers_of(clients: Sequence[Client], now: float) -> list[WorkerInfo]:
    """The live workers of every Redis; an unreachable one has none."""
    found: list[WorkerInfo] = []
    for client in clients:
        try:
            found += live_workers(client, now)
        except redis.RedisError:
            continue
    return found


def worker_rows(workers: Sequence[WorkerInfo], now: float) -> list[dict[str, Any]]:
    rows = [{"id": w.id, "pod": w.pod, "queues": w.queues, "busy": w.busy,
             "concurrency": w.concurrency, "state": "busy" if w.busy else "idle",
             "current": list(w.current), "seen_seconds_ago": round(now - w.last_seen, 1)}
            for w in workers]
    return sorted(rows, key=lambda r: (str(r["pod"]), str(r["id"])))
