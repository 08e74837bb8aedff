"""taskfleet's own layout (taskfleet.keys): one STATS script per queue, O(1)."""

from __future__ import annotations

from typing import Any

import redis

from taskfleet import QueueStats, keys, scripts
from taskfleet.stats import parse_stats_reply

from ..model import TaskQueue


def queue_read(client: redis.Redis, pipe: Any, tq: TaskQueue) -> None:
    client.register_script(scripts.STATS)(keys=keys.QueueKeys(tq.queue_name).all_keys(),
                                          client=pipe)


def parse(reply: Any) -> QueueStats:
    return parse_stats_reply(reply)
