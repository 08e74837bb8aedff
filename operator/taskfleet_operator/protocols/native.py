"""taskfleet's own layout (taskfleet.keys): O(1) per queue, a hundred queues per STATS_MANY
call on one server, one STATS call per queue on a cluster (taskfleet.stats.add_stats).
Clients publish on the queue's wake channel when it goes from empty to not."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from taskfleet.batch import Batch
from taskfleet.connection import Client
from taskfleet.stats import add_stats

from .base import Figures, QueueProtocol

if TYPE_CHECKING:
    from ..model import TaskQueue


class NativeProtocol(QueueProtocol):
    name = "native"
    wakes_on_enqueue = True
    on_a_cluster = True
    takes_schedules = True

    def add_reads(self, batch: Batch, client: Client, queues: Sequence[TaskQueue]) -> Figures:
        return add_stats(batch, client, [tq.queue_name for tq in queues])


PROTOCOL = NativeProtocol()
