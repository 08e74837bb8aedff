"""Per-queue figures for ``taskfleet inspect`` and the operator's autoscaler.

Every queue costs O(1) Redis work, and any number of queues is read in one
pipelined round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from redis.cluster import RedisCluster

from . import keys, scripts
from .batch import Batch
from .connection import Client


@dataclass(frozen=True)
class QueueStats:
    ready: int
    """Tasks waiting to run now (delayed tasks already due included)."""
    in_flight: int
    """Tasks leased by workers: running, or held by a worker that died until the lease expires."""
    delayed: int
    """Tasks waiting for a countdown, an ETA or a retry backoff."""
    dead: int
    """Dead-letter records."""
    oldest_age_seconds: float
    """How long the oldest ready task has waited (0 when none is ready): the queue's latency."""
    dead_trimmed: int = 0
    """Dead-letter records dropped, oldest first, to keep the list within its cap."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


STATS_PER_CALL = 100
"""Queues per STATS_MANY call: few calls, and none that holds the server for long."""


def queue_stats(client: Client, queues: Iterable[str]) -> dict[str, QueueStats]:
    """Statistics of many queues in one pipelined round trip (on a cluster: one per node,
    sent to all nodes before any reply is read; see batch.py)."""
    names = list(dict.fromkeys(queues))
    if not names:
        return {}
    batch = Batch(client)
    if isinstance(client, RedisCluster):  # one call per queue, each within its queue's slot
        one = client.register_script(scripts.STATS)
        for name in names:
            batch.script(one, keys.QueueKeys(name).all_keys())
        replies = batch.execute()
    else:  # one server: many queues per script call
        many = client.register_script(scripts.STATS_MANY)
        for start in range(0, len(names), STATS_PER_CALL):
            batch.script(many, [k for name in names[start:start + STATS_PER_CALL]
                                for k in keys.QueueKeys(name).stats_keys()])
        replies = [reply for call in batch.execute() for reply in call]
    out = {}
    for name, reply in zip(names, replies, strict=True):
        ready, oldest, in_flight, delayed, dead, now, trimmed = reply
        age = max(0.0, (int(now) - int(oldest)) / 1000.0) if int(oldest) >= 0 else 0.0
        out[name] = QueueStats(ready=int(ready), in_flight=int(in_flight), delayed=int(delayed),
                               dead=int(dead), oldest_age_seconds=age,
                               dead_trimmed=int(trimmed))
    return out
