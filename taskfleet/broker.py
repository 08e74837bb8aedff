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

from . import celery_wire, keys, scripts
from .batch import Batch
from .connection import Client, is_cluster, text
from .errors import MessageTooLarge
from .message import Message

# Messages per ENQUEUE call: large enough to amortise the round trip, small
# enough that one script never blocks Redis for long, and far below the 8,000
# values Lua can unpack into the script's one RPUSH per band.
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

    def __init__(self, client: Client, result_ttl: int = 86400,
                 redelivery_limit: int = 5, dead_letter_limit: int = 10_000,
                 max_message_bytes: int = 1 << 20, replica_acks: int = 0,
                 replica_ack_timeout_ms: int = 1000) -> None:
        self.redis = client
        self.replica_acks = replica_acks
        """Replicas every enqueue and settle waits for (WAIT); 0: none, Redis's default."""
        self.replica_ack_timeout_ms = replica_ack_timeout_ms
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
        self._scripts_loaded = False

    def _batch(self) -> Batch:
        """A new batch; the first one loads every script (on every primary of a cluster),
        so a batch's commands run in the order given (a NOSCRIPT reply re-sends a
        command after the others: see batch.py; after that only on a new node)."""
        if not self._scripts_loaded:
            for script in (self._enqueue, self._fetch, self._extend, self._retry, self._dead,
                           self._return, self._store_result_script, self._adopt):
                self.redis.script_load(script.script)
            self._scripts_loaded = True
        return Batch(self.redis)

    # -- producer side -------------------------------------------------------------

    def enqueue(self, items: Sequence[tuple[Message, int]]) -> None:
        """Enqueue (message, due ms; 0 = now) pairs in one pipelined round trip."""
        by_queue: dict[str, list[str]] = {}
        for message, due_ms in items:
            body = stored_body(message)
            self._check_size(message.task, body)
            argv = by_queue.setdefault(message.queue, [])
            argv.extend((message.id, str(keys.priority_band(message.priority)), body,
                         str(due_ms)))
        self._send(by_queue)

    def enqueue_encoded(self, task: str, queue: str, priority: int,
                        messages: Sequence[tuple[str, str]]) -> None:
        """Enqueue (id, message JSON) pairs of one task, queue and priority, due now, in one
        pipelined round trip (App.send_many: message.encode_calls)."""
        band = str(keys.priority_band(priority))
        argv: list[str] = []
        for task_id, message_text in messages:
            body = band + message_text  # stored_body()
            self._check_size(task, body)
            argv += (task_id, band, body, "0")
        self._send({queue: argv})

    def _check_size(self, task: str, body: str) -> None:
        if len(body) > self.max_message_bytes:  # JSON is ASCII here: chars are bytes
            raise MessageTooLarge(
                f"task {task}: the message is {len(body):,} bytes, over the limit "
                f"of {self.max_message_bytes:,} (App(max_message_bytes=...)); pass a "
                "reference to the data (a storage key, a database id), not the data")

    def _send(self, by_queue: dict[str, list[str]]) -> None:
        """ENQUEUE calls of ENQUEUE_CHUNK messages per queue, in one pipelined round trip."""
        batch = self._batch()
        for queue, argv in by_queue.items():
            qk = keys.QueueKeys(queue)
            step = ENQUEUE_CHUNK * 4
            for start in range(0, len(argv), step):
                batch.script(self._enqueue, qk.all_keys(),
                             [qk.wake_channel, *argv[start:start + step]])
        self._wait_for_replicas(batch, by_queue)
        batch.execute()

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
        batch = self._batch()
        # On a cluster a result lives on another node than its queue, and the nodes run
        # their parts of a batch in no set order: results go in a second round trip, so a
        # caller that sees a result also sees its task settled, as on one server.
        results = self._batch() if is_cluster(self.redis) else batch
        acked: dict[str, list[str]] = {}
        touched: set[str] = set()
        returned: list[Return] = []
        for outcome in outcomes:
            touched.add(outcome.delivery.queue)
            if isinstance(outcome, Ack):
                if outcome.result is not None:
                    self._store_result(results, outcome.delivery, outcome.result)
                acked.setdefault(outcome.delivery.queue, []).append(outcome.delivery.id)
            elif isinstance(outcome, Return):
                returned.append(outcome)
            else:
                self._write_outcome(batch, outcome, results)
        # Each return goes to the front of its list: the last first, so that tasks given
        # back together (a prefetch buffer, a drain) keep their order.
        for outcome in reversed(returned):
            self._write_outcome(batch, outcome, results)
        for queue, ids in acked.items():
            qk = keys.QueueKeys(queue)
            # Bodies first, leases second: a crash in between leaves leases whose
            # bodies are gone, which FETCH skips, rather than tasks run twice.
            batch.command("HDEL", qk.messages, *ids)
            batch.command("ZREM", qk.leases, *ids)
            batch.command("HDEL", qk.expiries, *ids)
        if touched:
            self._wait_for_replicas(batch, touched)
        if fetch is not None:
            queue, count, lease_ms = fetch
            if queue in self.celery_queues:  # Celery's messages first, into this queue
                batch.script(self._adopt, *celery_wire.adopt_call(
                    queue, self.celery_queues[queue], count, self.max_message_bytes,
                    self.dead_letter_limit))
            batch.script(self._fetch, keys.QueueKeys(queue).all_keys(),
                         self._fetch_args(queue, count, lease_ms))
        replies = batch.execute()
        if results is not batch:
            results.execute()
        if fetch is None:
            return []
        return parse_fetch(fetch[0], replies[-1])

    def _fetch_args(self, queue: str, count: int, lease_ms: int) -> list[str | int]:
        return [count, lease_ms, self.redelivery_limit, queue, self.dead_letter_limit]

    def _wait_for_replicas(self, batch: Batch, queues: Iterable[str]) -> None:
        """With replica_acks, WAIT after the writes, on each node that took some of them:
        an acknowledged write is then on that many replicas and survives a failover."""
        if not self.replica_acks:
            return
        wait = ("WAIT", self.replica_acks, self.replica_ack_timeout_ms)
        if not is_cluster(self.redis):
            batch.wait(wait)
            return
        nodes = {}
        for queue in queues:
            node = self.redis.get_node_from_key(keys.QueueKeys(queue).messages)  # type: ignore[union-attr]
            nodes[node.name] = node
        for node in nodes.values():
            batch.wait(wait, node)

    def _write_outcome(self, pipe: Batch, outcome: Outcome, results: Batch) -> None:
        d = outcome.delivery
        qk = keys.QueueKeys(d.queue)
        if isinstance(outcome, RetryLater):
            body = stored_body(outcome.message)
            pipe.script(self._retry, qk.all_keys(), [d.id, body, outcome.due_ms])
            if outcome.state is not None:
                pipe.command("SET", keys.state_key(d.id), outcome.state, "EX", self.result_ttl)
        elif isinstance(outcome, DeadLetter):
            if outcome.result is not None:
                self._store_result(results, d, outcome.result)
            record = json.dumps({"id": d.id, "queue": d.queue, "reason": outcome.reason,
                                 "failed_at": time.time(), "body": message_json(d.body)})
            pipe.script(self._dead, qk.all_keys(), [d.id, record, self.dead_letter_limit])
        else:
            band = keys.priority_band(d.message.priority) if d.message else 0
            pipe.script(self._return, qk.all_keys(),
                        [d.id, band, d.ready_since_ms, qk.wake_channel])

    def _store_result(self, pipe: Batch, delivery: Delivery, result: str) -> None:
        task_id = delivery.id
        if delivery.message is not None and delivery.message.celery:
            # Where Celery's Redis result backend reads it, published for a waiting get()
            meta = celery_wire.result_meta(task_id, result)
            pipe.command("SET", celery_wire.result_key(task_id), meta, "EX", self.result_ttl)
            pipe.command("PUBLISH", celery_wire.result_key(task_id), meta)
            return
        pipe.script(self._store_result_script, [keys.result_key(task_id),
                                                keys.state_key(task_id)],
                    [result, self.result_ttl * 1000])

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
        duplicates it rather than loses it. Undecodable records stay, and so do messages
        over ``max_message_bytes`` (never decoded: a worker would refuse them again).
        """
        qk = keys.QueueKeys(queue)
        moved = 0
        for record in reversed(self.redis.lrange(qk.dead, 0, -1)):
            if limit is not None and moved >= limit:
                break
            if len(record) > 4 * self.max_message_bytes:
                continue
            try:
                message = Message.decode(json.loads(record)["body"])
            except Exception:
                continue
            message.retries = 0
            try:
                self.enqueue([(message, 0)])
            except MessageTooLarge:
                continue
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
