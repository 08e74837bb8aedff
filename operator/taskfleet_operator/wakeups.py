"""Wake the controller the moment a queue goes from empty to non-empty.

The runtime publishes on the queue's wake channel when an enqueue finds it
empty; one pattern subscription per Redis server hears every queue, so a pool
at zero starts in about a second instead of waiting for its next poll.
"""

from __future__ import annotations

import contextlib
import logging
import threading

import redis

from taskfleet import keys
from taskfleet.connection import Client

from .observe import RedisDirectory

log = logging.getLogger("taskfleet.operator")

PATTERN = f"{keys.PREFIX}:{{*}}:wake"


class WakeListener:
    def __init__(self, directory: RedisDirectory, wake: threading.Event,
                 wake_all: threading.Event) -> None:
        self.directory = directory
        self.wake = wake
        self.wake_all = wake_all
        self._watched: set[int] = set()

    def run(self, stop: threading.Event) -> None:
        """Start a listener for every Redis server the directory knows, as they appear."""
        while not stop.is_set():
            for client in self.directory.all_clients():
                if id(client) not in self._watched:
                    self._watched.add(id(client))
                    threading.Thread(target=self._listen, args=(client, stop), daemon=True,
                                     name="taskfleet-wake").start()
            stop.wait(1.0)

    def _listen(self, client: Client, stop: threading.Event) -> None:
        while not stop.is_set():
            pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.psubscribe(PATTERN)
                while not stop.is_set():
                    if pubsub.get_message(timeout=1.0) is not None:
                        self.wake_all.set()
                        self.wake.set()
            except redis.RedisError as exc:
                log.debug("wake subscription lost (%s); retrying", exc)
                stop.wait(1.0)
            finally:
                with contextlib.suppress(redis.RedisError):
                    pubsub.close()
