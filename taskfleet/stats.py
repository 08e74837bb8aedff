"""Per-queue figures for ``taskfleet inspect`` and the operator's autoscaler.

Every queue costs O(1) Redis work, and any number of queues is read in one
pipelined round trip.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
    figures = add_stats(batch, client, names)
    out: dict[str, QueueStats] = {}
    for name, found in zip(names, figures(batch.execute()), strict=True):
        if isinstance(found, Exception):  # execute() raises first; kept for the type
            raise found
        out[name] = found
    return out


class StatsCalls:
    """The STATS calls of some queues, queued into a Batch; called with the batch's
    replies, each queue's figures (or the error of its call), in order."""

    def __init__(self, first: int, chunks: list[int], many: bool) -> None:
        self._first, self._chunks, self._many = first, chunks, many

    def __call__(self, replies: Sequence[Any]) -> list[QueueStats | Exception]:
        out: list[QueueStats | Exception] = []
        mine = replies[self._first:self._first + len(self._chunks)]
        for size, reply in zip(self._chunks, mine, strict=True):
            if isinstance(reply, Exception):
                out.extend([reply] * size)
            elif self._many:
                out.extend(parse_stats_reply(r) for r in reply)
            else:
                out.append(parse_stats_reply(reply))
        return out


def add_stats(batch: Batch, client: Client, names: Sequence[str]) -> StatsCalls:
    """Queue the STATS calls of ``names`` into ``batch``: on one server a hundred queues per
    call (STATS_MANY), on a cluster one per queue, each within its queue's slot."""
    first = len(batch)
    if isinstance(client, RedisCluster):
        one = client.register_script(scripts.STATS)
        for name in names:
            batch.script(one, keys.QueueKeys(name).all_keys())
        return StatsCalls(first, [1] * len(names), many=False)
    many = client.register_script(scripts.STATS_MANY)
    chunks = []
    for start in range(0, len(names), STATS_PER_CALL):
        chunk = names[start:start + STATS_PER_CALL]
        batch.script(many, [k for name in chunk for k in keys.QueueKeys(name).stats_keys()])
        chunks.append(len(chunk))
    return StatsCalls(first, chunks, many=True)


def parse_stats_reply(reply: Any) -> QueueStats:
    """QueueStats from one queue's reply of scripts.STATS or STATS_MANY."""
    ready, oldest, in_flight, delayed, dead, now, trimmed = reply
    age = max(0.0, (int(now) - int(oldest)) / 1000.0) if int(oldest) >= 0 else 0.0
    return QueueStats(ready=int(ready), in_flight=int(in_flight), delayed=int(delayed),
                      dead=int(dead), oldest_age_seconds=age, dead_trimmed=int(trimmed))
