"""The native queue protocol on Redis: enqueue, fetch with a lease, settle.

The operator reads the same queues through :mod:`taskfleet.stats`; the key
layout lives in :mod:`taskfleet.keys` and the atomic steps in
:mod:`taskfleet.scripts`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from . import celery_wire, keys, scripts
from .connection import text
from .errors import MessageTooLarge
from .message import Message

# Messages per ENQUEUE call: large enough to amortise the round trip, small
# enough that one script never blocks Redis for long.
ENQUEUE_CHUNK = 500


@dataclass
class Delivery:
    """A task taken from a queue under a lease. ``message`` is None when it cannot be decoded."""

    id: str
    queue: str
    body: str
    ready_since_ms: int
    message: Message | None = None


@dataclass
class Ack:
    """Done: forget the task and store its result."""

    delivery: Delivery
    result: str | None = None


@dataclass
class RetryLater:
    """Failed with attempts left: store the updated message and run it again at ``due_ms``."""

    delivery: Delivery
    message: Message
    due_ms: int
    state: str | None = None


@dataclass
class DeadLetter:
    """Cannot or must not run again: keep it in the dead-letter list with the reason."""

    delivery: Delivery
    reason: str
    result: str | None = None


@dataclass
class Return:
    """Not run, or interrupted by shutdown: back to the front of its queue."""

    delivery: Delivery


Outcome = Ack | RetryLater | DeadLetter | Return


def stored_body(message: Message) -> str:
    """A message as stored in a queue: ``<band digit><json>``. The digit lets the Lua
    scripts requeue a task into its band without decoding JSON."""
    return f"{keys.priority_band(message.priority)}{message.encode()}"


def message_json(body: str) -> str:
    """The message JSON of a stored body (the inverse of :func:`stored_body`)."""
    return body[1:] if body[:1].isdigit() else body


class Broker:
    """Queue operations over one Redis connection pool."""

    def __init__(self, client: redis.Redis, result_ttl: int = 86400,
                 redelivery_limit: int = 5, dead_letter_limit: int = 10_000,
                 max_message_bytes: int = 1 << 20) -> None:
        self.redis = client
        self.result_ttl = result_ttl
        self.redelivery_limit = redelivery_limit
        """Dead-letter a task whose worker died holding it this many times (0: never)."""
        self.dead_letter_limit = dead_letter_limit
        """Records a dead-letter list keeps, the oldest dropped first (0: no cap), unless the
        queue's settings (the TaskQueue's deadLetterLimit) say otherwise."""
        self.max_message_bytes = max_message_bytes
        self._enqueue = client.register_script(scripts.ENQUEUE)
        self._fetch = client.register_script(scripts.FETCH)
        self._extend = client.register_script(scripts.EXTEND)
        self._retry = client.register_script(scripts.RETRY)
        self._dead = client.register_script(scripts.DEAD)
        self._return = client.register_script(scripts.RETURN)
        self._store_result_script = client.register_script(scripts.STORE_RESULT)
        self._adopt = client.register_script(celery_wire.ADOPT)
        self.celery_queues: dict[str, tuple[int, ...]] = {}
        """Queues that also take Celery clients' messages, with their priority steps."""

    # -- producer side -------------------------------------------------------------

    def enqueue(self, items: Sequence[tuple[Message, int]]) -> None:
        """Enqueue (message, due ms; 0 = now) pairs in one pipelined round trip."""
        by_queue: dict[str, list[str]] = {}
        for message, due_ms in items:
            body = stored_body(message)
            if len(body) > self.max_message_bytes:  # JSON is ASCII here: chars are bytes
                raise MessageTooLarge(
                    f"task {message.task}: the message is {len(body):,} bytes, over the limit "
                    f"of {self.max_message_bytes:,} (App(max_message_bytes=...)); pass a "
                    "reference to the data (a storage key, a database id), not the data")
            argv = by_queue.setdefault(message.queue, [])
            argv.extend((message.id, str(keys.priority_band(message.priority)), body,
                         str(due_ms)))
        pipe = self.redis.pipeline(transaction=False)
        for queue, argv in by_queue.items():
            qk = keys.QueueKeys(queue)
            step = ENQUEUE_CHUNK * 4
            for start in range(0, len(argv), step):
                self._enqueue(keys=qk.all_keys(), args=[qk.wake_channel, *argv[start:start + step]],
                              client=pipe)
        pipe.execute()

    # -- worker side ---------------------------------------------------------------

    def fetch(self, queue: str, count: int, lease_ms: int) -> list[Delivery]:
        """Take up to ``count`` tasks from one queue, leased for ``lease_ms``."""
        if queue in self.celery_queues:
            return self.settle([], fetch=(queue, count, lease_ms))
        raw = self._fetch(keys=keys.QueueKeys(queue).all_keys(), args=self._fetch_args(
            queue, count, lease_ms))
        return parse_fetch(queue, raw)

    def settle(self, outcomes: Iterable[Outcome], fetch: tuple[str, int, int] | None = None
               ) -> list[Delivery]:
        """Write outcomes, and optionally fetch (queue, count, lease_ms), in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        acked: dict[str, list[str]] = {}
        for outcome in outcomes:
            if isinstance(outcome, Ack):
                if outcome.result is not None:
                    self._store_result(pipe, outcome.delivery, outcome.result)
                acked.setdefault(outcome.delivery.queue, []).append(outcome.delivery.id)
            else:
                self._write_outcome(pipe, outcome)
        for queue, ids in acked.items():
            qk = keys.QueueKeys(queue)
            # Bodies first, leases second: a crash in between leaves leases whose
            # bodies are gone, which FETCH skips, rather than tasks run twice.
            pipe.hdel(qk.messages, *ids)
            pipe.zrem(qk.leases, *ids)
            pipe.hdel(qk.expiries, *ids)
        if fetch is not None:
            queue, count, lease_ms = fetch
            if queue in self.celery_queues:  # Celery's messages first, into this queue
                self._adopt(keys=[*keys.QueueKeys(queue).all_keys(),
                                  *celery_wire.priority_lists(queue,
                                                              self.celery_queues[queue])],
                            args=[count, queue], client=pipe)
            self._fetch(keys=keys.QueueKeys(queue).all_keys(),
                        args=self._fetch_args(queue, count, lease_ms), client=pipe)
        replies = pipe.execute()
        if fetch is None:
            return []
        return parse_fetch(fetch[0], replies[-1])

    def _fetch_args(self, queue: str, count: int, lease_ms: int) -> list[str | int]:
        return [count, lease_ms, self.redelivery_limit, queue, self.dead_letter_limit]

    def _write_outcome(self, pipe: Any, outcome: Outcome) -> None:
        d = outcome.delivery
        qk = keys.QueueKeys(d.queue)
        if isinstance(outcome, RetryLater):
            body = stored_body(outcome.message)
            self._retry(keys=qk.all_keys(), args=[d.id, body, outcome.due_ms], client=pipe)
            if outcome.state is not None:
                pipe.set(keys.state_key(d.id), outcome.state, ex=self.result_ttl)
        elif isinstance(outcome, DeadLetter):
            if outcome.result is not None:
                self._store_result(pipe, d, outcome.result)
            record = json.dumps({"id": d.id, "queue": d.queue, "reason": outcome.reason,
                                 "failed_at": time.time(), "body": message_json(d.body)})
            self._dead(keys=qk.all_keys(), args=[d.id, record, self.dead_letter_limit],
                       client=pipe)
        else:
            band = keys.priority_band(d.message.priority) if d.message else 0
            self._return(keys=qk.all_keys(), args=[d.id, band, d.ready_since_ms, qk.wake_channel],
                         client=pipe)

    def _store_result(self, pipe: Any, delivery: Delivery, result: str) -> None:
        task_id = delivery.id
        if delivery.message is not None and delivery.message.celery:
            # Where Celery's Redis result backend reads it, published for a waiting get()
            meta = celery_wire.result_meta(task_id, result)
            pipe.set(celery_wire.result_key(task_id), meta, ex=self.result_ttl)
            pipe.publish(celery_wire.result_key(task_id), meta)
            return
        self._store_result_script(keys=[keys.result_key(task_id), keys.state_key(task_id)],
                                  args=[result, self.result_ttl * 1000], client=pipe)

    def extend(self, queue: str, ids: Sequence[str], lease_ms: int) -> int:
        """Extend the leases still held; returns how many were."""
        if not ids:
            return 0
        return int(self._extend(keys=[keys.QueueKeys(queue).leases], args=[lease_ms, *ids]))

    # -- dead letters --------------------------------------------------------------

    def dead_list(self, queue: str, limit: int = 100) -> list[dict[str, Any]]:
        return [json.loads(r) for r in self.redis.lrange(keys.QueueKeys(queue).dead, 0, limit - 1)]

    def dead_requeue(self, queue: str, limit: int | None = None) -> int:
        """Send dead-lettered tasks back to their queue as new attempts (retries reset).

        Each record is enqueued before it is removed, so a crash in between
        duplicates it rather than loses it. Undecodable records stay.
        """
        qk = keys.QueueKeys(queue)
        moved = 0
        for record in reversed(self.redis.lrange(qk.dead, 0, -1)):
            if limit is not None and moved >= limit:
                break
            try:
                message = Message.decode(json.loads(record)["body"])
            except Exception:
                continue
            message.retries = 0
            self.enqueue([(message, 0)])
            self.redis.lrem(qk.dead, 1, text(record))
            moved += 1
        return moved

    def dead_purge(self, queue: str) -> int:
        qk = keys.QueueKeys(queue)
        n = int(self.redis.llen(qk.dead))
        self.redis.delete(qk.dead)
        return n


def parse_fetch(queue: str, raw: list[Any]) -> list[Delivery]:
    out = []
    for i in range(0, len(raw), 3):
        out.append(Delivery(id=text(raw[i]), queue=queue, body=text(raw[i + 1]),
                            ready_since_ms=int(raw[i + 2])))
    return out
