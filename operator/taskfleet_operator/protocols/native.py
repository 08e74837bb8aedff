"""taskfleet's own layout (taskfleet.keys): O(1) per queue, a hundred queues per STATS_MANY
call on one server, one STATS call per queue on a cluster (taskfleet.stats.add_stats)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from taskfleet import QueueStats
from taskfleet.batch import Batch
from taskfleet.connection import Client
from taskfleet.stats import add_stats

from ..model import TaskQueue


def add(batch: Batch, client: Client, queues: Sequence[TaskQueue]
        ) -> Callable[[Sequence[Any]], list[QueueStats | Exception]]:
    return add_stats(batch, client, [tq.queue_name for tq in queues])
