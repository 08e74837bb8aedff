"""How each TaskQueue.spec.protocol is read: one module per protocol.

Each module queues the Redis calls of its queues into the Batch shared by every
queue on one Redis (``add``) and turns the replies into QueueStats, so all
queues of all protocols on one Redis are read in one pipelined round trip.
taskfleet's own queues take a hundred per call on one server (STATS_MANY); a
Celery or RQ queue takes one script call. Each module also says which tasks run
on which pod (``busy_by_pod``), for idle-first scale-down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from taskfleet import QueueStats
from taskfleet.batch import Batch
from taskfleet.connection import Client

from ..model import TaskQueue
from . import celery, native, rq

Figures = Callable[[Sequence[Any]], list[QueueStats | Exception]]
"""Given the batch's replies: each queue's figures, or why it could not be read, in order."""


@dataclass(frozen=True)
class ProtocolReader:
    add: Callable[[Batch, Client, Sequence[TaskQueue]], Figures]
    """Queue the calls that read these queues; returns how to read their replies."""


def one_call_per_queue(queue_read: Callable[[Batch, Client, TaskQueue], None],
                       parse: Callable[[Any], QueueStats]
                       ) -> Callable[[Batch, Client, Sequence[TaskQueue]], Figures]:
    """A reader from one call per queue (``queue_read``) and the parse of its reply."""
    def add(batch: Batch, client: Client, queues: Sequence[TaskQueue]) -> Figures:
        first = len(batch)
        for tq in queues:
            queue_read(batch, client, tq)

        def figures(replies: Sequence[Any]) -> list[QueueStats | Exception]:
            out: list[QueueStats | Exception] = []
            for reply in replies[first:first + len(queues)]:
                if isinstance(reply, Exception):
                    out.append(reply)
                    continue
                try:
                    out.append(parse(reply))
                except (ValueError, TypeError) as exc:
                    out.append(ValueError(f"unexpected reply: {exc}"))
            return out
        return figures
    return add


READERS: dict[str, ProtocolReader] = {
    "native": ProtocolReader(native.add),
    "celery": ProtocolReader(one_call_per_queue(celery.queue_read, celery.parse)),
    "rq": ProtocolReader(one_call_per_queue(rq.queue_read, rq.parse)),
}

__all__ = ["READERS", "Figures", "ProtocolReader"]
