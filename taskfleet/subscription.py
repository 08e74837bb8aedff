"""Holding a Redis pub/sub subscription, the one way every listener of the project does it.

A subscription hands each message to its owner. When its connection is lost (Redis
restarted, a failover, a network cut) it says so once, resubscribes every
RETRY_SECONDS until it is back (and says that too), and calls the owner's
``on_subscribed`` each time it is made: whatever was published while it was down is
lost, so that is when the owner catches up (the operator looks at every queue, a
worker at its own queues, the Celery event listener starts its warm-up again).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis
from redis.client import PubSub

from .connection import Client, redact

log = logging.getLogger("taskfleet.subscription")

RETRY_SECONDS = 1.0
"""How often a lost subscription is tried again."""


def hold_subscription(client: Client, subscribe: Callable[[PubSub], None],
                      on_message: Callable[[dict[str, Any]], None], stop: threading.Event, *,
                      what: str, on_subscribed: Callable[[], None] = lambda: None,
                      on_lost: Callable[[], None] = lambda: None,
                      scrub: Callable[[str], str] = redact) -> None:
    """Subscribe with ``subscribe`` and hand every message to ``on_message`` until
    ``stop`` is set; ``what`` names the subscription in the log, ``scrub`` redacts the
    errors logged (a Redis error may quote a host or a user)."""
    lost = False
    while not stop.is_set():
        pubsub: PubSub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            subscribe(pubsub)
            if lost:
                log.info("%s: subscribed again", what)
                lost = False
            on_subscribed()
            while not stop.is_set():
                message = pubsub.get_message(timeout=1.0)
                if message is not None:
                    on_message(message)
        except (redis.RedisError, OSError) as exc:
            if not lost:
                log.warning("%s: subscription lost (%s); subscribing again every %gs", what,
                            scrub(str(exc)), RETRY_SECONDS)
                lost = True
            on_lost()
            stop.wait(RETRY_SECONDS)
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                pubsub.close()
