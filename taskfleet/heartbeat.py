"""Worker heartbeats: who is alive, on which pod, serving which queues, busy or idle.

The operator reads these to remove idle pods first when it scales down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from . import keys
from .connection import Client, text

STALE_AFTER_SECONDS = 30.0
CURRENT_SHOWN = 5
"""A worker not heard from for this long is not listed (and is pruned)."""


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    pod: str
    queues: list[str]
    busy: int
    """Tasks running now; 0 means idle."""
    concurrency: int
    last_seen: float
    current: tuple[str, ...] = ()
    """Tasks running at the heartbeat, as "task.name id" (at most CURRENT_SHOWN)."""


def publish(client: Client, info: WorkerInfo) -> None:
    """Write one heartbeat (one round trip)."""
    pipe = client.pipeline(transaction=False)
    wk = keys.worker_key(info.id)
    pipe.hset(wk, mapping={"pod": info.pod, "queues": ",".join(info.queues), "busy": info.busy,
                           "concurrency": info.concurrency, "last_seen": info.last_seen,
                           "current": ",".join(info.current[:CURRENT_SHOWN])})
    pipe.expire(wk, int(STALE_AFTER_SECONDS * 2))
    pipe.zadd(keys.WORKERS_KEY, {info.id: info.last_seen})
    pipe.execute()


def withdraw(client: Client, worker_id: str) -> None:
    """Remove a worker that is stopping."""
    pipe = client.pipeline(transaction=False)
    pipe.delete(keys.worker_key(worker_id))
    pipe.zrem(keys.WORKERS_KEY, worker_id)
    pipe.execute()


def live_workers(client: Client, now: float | None = None) -> list[WorkerInfo]:
    """Workers heard from within STALE_AFTER_SECONDS, in one round trip after the index read."""
    now = time.time() if now is None else now
    client.zremrangebyscore(keys.WORKERS_KEY, "-inf", now - STALE_AFTER_SECONDS)
    ids = [text(i) for i in client.zrange(keys.WORKERS_KEY, 0, -1) if isinstance(i, str | bytes)]
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for worker_id in ids:
        pipe.hgetall(keys.worker_key(worker_id))
    out = []
    for worker_id, raw in zip(ids, pipe.execute(), strict=True):
        if not raw:
            continue
        h = {text(k): text(v) for k, v in raw.items()}
        out.append(WorkerInfo(id=worker_id, pod=h.get("pod", ""),
                              queues=[q for q in h.get("queues", "").split(",") if q],
                              busy=int(h.get("busy", 0)), concurrency=int(h.get("concurrency", 1)),
                              last_seen=float(h.get("last_seen", 0)),
                              current=tuple(t for t in h.get("current", "").split(",") if t)))
    return out
