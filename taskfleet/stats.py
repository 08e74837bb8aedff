"""Per-queue figures for ``taskfleet inspect`` and the operator's autoscaler.

Every queue costs O(1) Redis work, and any number of queues is read in one
pipelined round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import redis

from . import keys, scripts


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


def queue_stats(client: redis.Redis, queues: Iterable[str]) -> dict[str, QueueStats]:
    """Statistics of many queues in one pipelined round trip."""
    names = list(dict.fromkeys(queues))
    if not names:
        return {}
    script = client.register_script(scripts.STATS)
    pipe = client.pipeline(transaction=False)
    for name in names:
        script(keys=keys.QueueKeys(name).all_keys(), client=pipe)
    replies = pipe.execute()
    return {name: parse_stats_reply(reply) for name, reply in zip(names, replies, strict=True)}


def parse_stats_reply(reply: Any) -> QueueStats:
    """QueueStats from the reply of one scripts.STATS call."""
    ready, oldest, in_flight, delayed, dead, now, trimmed = reply
    age = max(0.0, (int(now) - int(oldest)) / 1000.0) if int(oldest) >= 0 else 0.0
    return QueueStats(ready=int(ready), in_flight=int(in_flight), delayed=int(delayed),
                      dead=int(dead), oldest_age_seconds=age, dead_trimmed=int(trimmed))
