"""Worker heartbeats: who is alive, on which pod, serving which queues, busy or idle.

The operator reads these to remove idle pods first when it scales down. The record
itself, its encoder and its decoder are :class:`taskfleet.records.WorkerInfo`.
"""

from __future__ import annotations

import logging
import time

from . import keys
from .connection import Client, text
from .errors import RecordError
from .records import CURRENT_SHOWN, WorkerInfo

log = logging.getLogger("taskfleet.heartbeat")

STALE_AFTER_SECONDS = 30.0
"""A worker not heard from for this long is not listed, and its entry in the index of
workers is pruned; its hash expires after twice this. A worker beats at least three
times within it (worker.py)."""


def publish(client: Client, info: WorkerInfo) -> None:
    """Write one heartbeat (one round trip)."""
    pipe = client.pipeline(transaction=False)
    wk = keys.worker_key(info.id)
    pipe.hset(wk, mapping=info.encode())
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
    """Workers heard from within STALE_AFTER_SECONDS, in one round trip after the index
    read. A heartbeat that cannot be decoded is left out, with the reason logged."""
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
        try:
            out.append(WorkerInfo.decode(worker_id, {text(k): text(v) for k, v in raw.items()}))
        except RecordError as exc:
            log.warning("%s; left out of the live workers", exc)
    return out


__all__ = ["CURRENT_SHOWN", "STALE_AFTER_SECONDS", "WorkerInfo", "live_workers", "publish",
           "withdraw"]
