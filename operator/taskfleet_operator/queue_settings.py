"""Per-queue settings that every worker obeys, written to Redis from the TaskQueue's spec.

The workers' scripts read the queue's settings hash (taskfleet.keys.QueueKeys.settings)
where they need a setting, so a TaskQueue change reaches every worker of every pool at
once, without a restart.
"""

from __future__ import annotations

import logging

import redis

from taskfleet.keys import DEAD_LETTER_LIMIT, QueueKeys

from .model import TaskQueue
from .observe import RedisDirectory
from .registry import Key

log = logging.getLogger("taskfleet.operator")

REWRITE_SECONDS = 60.0
"""Unchanged settings are written again this often: a Redis that restarted empty gets
them back."""


class QueueSettingsWriter:
    def __init__(self, directory: RedisDirectory) -> None:
        self.directory = directory
        self.written: dict[Key, tuple[float, int | None]] = {}
        """Per TaskQueue: when its settings were last written, and the dead-letter cap."""

    def apply(self, tq: TaskQueue, now: float) -> None:
        last = self.written.get(tq.key)
        if last is not None and last[1] == tq.dead_letter_limit \
                and now - last[0] < REWRITE_SECONDS:
            return
        settings = QueueKeys(tq.queue_name).settings
        try:
            client = self.directory.client(tq.namespace, tq.redis)
            if tq.dead_letter_limit is None:
                client.hdel(settings, DEAD_LETTER_LIMIT)
            else:
                client.hset(settings, DEAD_LETTER_LIMIT, tq.dead_letter_limit)
        except (redis.RedisError, KeyError, ValueError) as exc:
            # The queue's MetricsAvailable condition already says Redis is unreachable.
            log.debug("queue %s/%s: settings not written: %s", *tq.key, exc)
            return
        self.written[tq.key] = (now, tq.dead_letter_limit)

    def forget(self, keep: set[Key]) -> None:
        for key in list(self.written):
            if key not in keep:
                del self.written[key]
