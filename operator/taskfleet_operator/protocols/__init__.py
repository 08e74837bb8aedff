"""How each TaskQueue.spec.protocol is read: one module per protocol.

Each module queues the Redis commands of one queue into a shared pipeline
(``queue_read``) and turns their replies into QueueStats (``parse``), so all
queues of all protocols on one Redis are read in one pipelined round trip.
Each also says which tasks run on which pod (``busy_by_pod``), for idle-first
scale-down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from taskfleet import QueueStats

from ..model import TaskQueue
from . import celery, native, rq


@dataclass(frozen=True)
class ProtocolReader:
    queue_read: Callable[[redis.Redis, Any, TaskQueue], None]
    """Queue one queue's commands (exactly one) into the pipeline."""
    parse: Callable[[Any], QueueStats]
    """The queue's figures from that command's reply."""


READERS: dict[str, ProtocolReader] = {
    "native": ProtocolReader(native.queue_read, native.parse),
    "celery": ProtocolReader(celery.queue_read, celery.parse),
    "rq": ProtocolReader(rq.queue_read, rq.parse),
}

__all__ = ["READERS", "ProtocolReader"]
