"""Per-queue settings that every worker obeys, written to Redis from the TaskQueue's spec.

The workers' scripts read the queue's settings hash (taskfleet.keys.QueueKeys.settings)
where they need a setting, so a TaskQueue change reaches every worker of every pool at
once, without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis

from taskfleet.connection import Client
from taskfleet.keys import DEAD_LETTER_LIMIT, QueueKeys

from .model import TaskQueue
from .observe import RedisDirectory, SecretRefError
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

    def apply_all(self, queues: Iterable[TaskQueue], now: float,
                  forget_others: bool = True) -> None:
        """Write the settings that changed or are due again, one pipeline per Redis server
        (10,000 queues are one round trip, not 10,000); with ``forget_others`` (``queues``
        is every queue), forget the queues no longer there."""
        present: set[Key] = set()
        due: dict[int, tuple[Client, list[TaskQueue]]] = {}
        for tq in queues:
            present.add(tq.key)
            last = self.written.get(tq.key)
            if last is not None and last[1] == tq.dead_letter_limit \
                    and now - last[0] < REWRITE_SECONDS:
                continue
            try:
                client = self.directory.client(tq.namespace, tq.redis)
            except SecretRefError:  # written once it resolves (its reading says why not)
                continue
            due.setdefault(id(client), (client, []))[1].append(tq)
        for client, members in due.values():
            pipe = client.pipeline(transaction=False)
            for tq in members:
                settings = QueueKeys(tq.queue_name).settings
                if tq.dead_letter_limit is None:
                    pipe.hdel(settings, DEAD_LETTER_LIMIT)
                else:
                    pipe.hset(settings, DEAD_LETTER_LIMIT, tq.dead_letter_limit)
            try:
                pipe.execute()
            except redis.RedisError as exc:
                # The queues' MetricsAvailable condition already says Redis is unreachable.
                log.debug("settings of %d queue(s) not written: %s", len(members),
                          self.directory.redact(str(exc)))
                continue
            for tq in members:
                self.written[tq.key] = (now, tq.dead_letter_limit)
        if forget_others:
            for key in [k for k in self.written if k not in present]:
                del self.written[key]
