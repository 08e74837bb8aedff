"""Wake the controller the moment a queue goes from empty to non-empty.

The taskfleet library publishes on the queue's wake channel when an enqueue finds it
empty (or its delayed set empty); one pattern subscription per Redis server
hears every queue, so a pool at zero starts in about a second instead of
waiting for its next poll. The channel names the queue, so only its pools are
looked at: with 10,000 pools, one burst costs one queue read, not 10,000.
A (re)subscription wakes everything once, since what was published while
the subscription was down is lost (taskfleet.subscription holds it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from taskfleet import keys
from taskfleet.connection import Client
from taskfleet.subscription import hold_subscription

from .observe import RedisDirectory

PATTERN = keys.WAKE_CHANNEL_PATTERN
"""What the listener subscribes to: the Redis ACL rule (taskfleet.acl) must allow it."""


class WakeListener:
    def __init__(self, directory: RedisDirectory, queues_woken: Callable[[Iterable[str]], None],
                 wake: threading.Event, wake_all: threading.Event) -> None:
        self.directory = directory
        self.queues_woken = queues_woken
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
        hold_subscription(
            client, lambda pubsub: pubsub.psubscribe(PATTERN),
            lambda message: self.queues_woken([keys.queue_of_key(_text(message["channel"]))]),
            stop, what="queue wake-ups", on_subscribed=self._wake_everything,
            scrub=self.directory.redact)

    def _wake_everything(self) -> None:
        """Every pool and queue is looked at: wake-ups published while the subscription
        was down are lost."""
        self.wake_all.set()
        self.wake.set()


def _text(value: str | bytes) -> str:
    return value.decode(errors="surrogateescape") if isinstance(value, bytes) else value
