"""The native queue protocol on Redis: enqueue, fetch with a lease, settle.

The operator reads the same queues through :mod:`taskfleet.stats`; the key
layout lives in :mod:`taskfleet.keys` and the atomic steps in
:mod:`taskfleet.scripts`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import celery_wire, keys, scripts
from .batch import Batch
from .connection import DEFAULT_REPLICA_ACK_TIMEOUT_MS, Client, is_cluster, text
from .errors import MessageError, MessageTooLarge, RecordError
from .message import Message
from .records import (
    DEAD_PAGE_SIZE,
    RECORD_BYTES_PER_MESSAGE_BYTE,
    DeadLetterRecord,
    ResultRecord,
    UnreadableRecord,
    decode_dead_letters,
)
from .settings import BrokerSettings

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


@dataclass
class Requeued:
    """What a dead-letter requeue did: how many records went back to their queue, and
    the ones left in the list with why (id, or "record N" when it has none; reason)."""

    moved: int = 0
    left: list[tuple[str, str]] = field(default_factory=list)


def stored_body(message: Message) -> str:
    """A message as stored in a queue: ``<band digit><json>``. The digit lets the Lua
    scripts requeue a task into its band without decoding JSON."""
    return f"{keys.priority_band(message.priority)}{message.encode()}"


def message_json(body: str) -> str:
    """The message JSON of a stored body (the inverse of :func:`stored_body`)."""
    return body[1:] if body[:1].isdigit() else body


class Broker:
    """Queue operations over one Redis connection pool."""

    def __init__(self, client: Client, settings: BrokerSettings | None = None) -> None:
        self.redis = client
        self.settings = settings or BrokerSettings()
        self._enqueue = client.register_script(scripts.ENQUEUE)
        self._fetch = client.register_script(scripts.FETCH)
        self._extend = client.register_script(scripts.EXTEND)
        self._retry = client.register_script(scripts.RETRY)
        self._dead = client.register_script(scripts.DEAD)
        self._return = client.register_script(scripts.RETURN)
        self._store_result_script = client.register_script(scripts.STORE_RESULT)
        self._adopt = client.register_script(celery_wire.ADOPT)
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
        limit = self.settings.max_message_bytes
        if len(body) > limit:  # JSON is ASCII here: chars are bytes
            raise MessageTooLarge(
                f"task {task}: the message is {len(body):,} bytes, over the limit "
                f"of {limit:,} (App(max_message_bytes=...)); pass a "
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
        if queue in self.settings.celery_queues:
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
            steps = self.settings.celery_queues.get(queue)
            if steps is not None:  # Celery's messages first, into this queue
                batch.script(self._adopt, *celery_wire.adopt_call(
                    queue, steps, count, self.settings.max_message_bytes,
                    self.settings.dead_letter_limit))
            batch.script(self._fetch, keys.QueueKeys(queue).all_keys(),
                         self._fetch_args(queue, count, lease_ms))
        replies = batch.execute()
        if results is not batch:
            results.execute()
        if fetch is None:
            return []
        return parse_fetch(fetch[0], replies[-1])

    def _fetch_args(self, queue: str, count: int, lease_ms: int) -> list[str | int]:
        return [count, lease_ms, self.settings.redelivery_limit, queue,
                self.settings.dead_letter_limit]

    def _wait_for_replicas(self, batch: Batch, queues: Iterable[str]) -> None:
        """With replica_acks, WAIT after the writes, on each node that took some of them:
        an acknowledged write is then on that many replicas and survives a failover."""
        acks = self.settings.replica_acks
        if not acks:
            return
        timeout_ms = self.settings.replica_ack_timeout_ms or DEFAULT_REPLICA_ACK_TIMEOUT_MS
        wait = ("WAIT", acks, timeout_ms)
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
                pipe.command("SET", keys.state_key(d.id), outcome.state, "EX",
                             self.settings.result_ttl)
        elif isinstance(outcome, DeadLetter):
            if outcome.result is not None:
                self._store_result(results, d, outcome.result)
            record = DeadLetterRecord(id=d.id, queue=d.queue, reason=outcome.reason,
                                      failed_at=time.time(), body=message_json(d.body))
            pipe.script(self._dead, qk.all_keys(),
                        [d.id, record.encode(), self.settings.dead_letter_limit])
        else:
            band = keys.priority_band(d.message.priority) if d.message else 0
            pipe.script(self._return, qk.all_keys(),
                        [d.id, band, d.ready_since_ms, qk.wake_channel])

    def _store_result(self, pipe: Batch, delivery: Delivery, result: str) -> None:
        task_id = delivery.id
        if delivery.message is not None and delivery.message.celery:
            # Where Celery's Redis result backend reads it, published for a waiting get()
            meta = celery_wire.result_meta(task_id, ResultRecord.decode(result))
            pipe.command("SET", celery_wire.result_key(task_id), meta, "EX",
                         self.settings.result_ttl)
            pipe.command("PUBLISH", celery_wire.result_key(task_id), meta)
            return
        pipe.script(self._store_result_script, [keys.result_key(task_id),
                                                keys.state_key(task_id)],
                    [result, self.settings.result_ttl * 1000])

    def extend(self, queue: str, ids: Sequence[str], lease_ms: int) -> int:
        """Extend the leases still held; returns how many were."""
        if not ids:
            return 0
        return int(self._extend(keys=[keys.QueueKeys(queue).leases], args=[lease_ms, *ids]))

    # -- dead letters --------------------------------------------------------------

    @property
    def max_record_bytes(self) -> int:
        """The largest dead letter decoded: one carrying a message at the size limit."""
        return RECORD_BYTES_PER_MESSAGE_BYTE * self.settings.max_message_bytes

    def dead_list(self, queue: str, limit: int = DEAD_PAGE_SIZE
                  ) -> list[DeadLetterRecord | UnreadableRecord]:
        """The newest ``limit`` dead letters, each decoded or said unreadable, in place."""
        raws = self.redis.lrange(keys.QueueKeys(queue).dead, 0, limit - 1)
        return decode_dead_letters(raws, self.max_record_bytes)

    def dead_requeue(self, queue: str, limit: int | None = None) -> Requeued:
        """Send dead-lettered tasks back to their queue as new attempts (retries reset),
        oldest first: a taskfleet message to its taskfleet queue, a Celery client's to the
        Celery queue it came from, in Celery's wire format (celery_wire.envelope), where a
        Celery worker or a taskfleet worker serving it with Celery clients takes it.

        Each record is enqueued before it is removed, so a crash in between duplicates it
        rather than loses it. Records that cannot be decoded stay, and so do messages over
        ``max_message_bytes`` (a worker would refuse them again), each with the reason.
        """
        qk = keys.QueueKeys(queue)
        done = Requeued()
        raws = self.redis.lrange(qk.dead, 0, -1)
        for n, raw in reversed(list(enumerate(raws, start=1))):
            if limit is not None and done.moved >= limit:
                break
            label = f"record {n}"
            try:
                record = DeadLetterRecord.decode(raw, self.max_record_bytes)
                label = record.id
                self._requeue(record, queue)
            except (RecordError, MessageError, MessageTooLarge) as exc:
                done.left.append((label, str(exc)))
                continue
            self.redis.lrem(qk.dead, 1, text(raw))
            done.moved += 1
        return done

    def _requeue(self, record: DeadLetterRecord, queue: str) -> None:
        """Put a dead letter's message back; MessageError or MessageTooLarge when it
        cannot go back as it is."""
        if record.from_celery:  # still the client's envelope: back as it was sent
            try:
                size = len(record.body.encode("utf-8"))
            except UnicodeEncodeError as exc:
                raise MessageError("Celery message is not UTF-8 text") from exc
            if size > self.settings.max_message_bytes:  # ADOPT would refuse it again, undecoded
                raise MessageTooLarge(f"Celery message of {size:,} bytes, over the limit of "
                                      f"{self.settings.max_message_bytes:,} (max_message_bytes)")
        message = record.message()
        message.retries = 0
        if not message.celery:
            self.enqueue([(message, 0)])
            return
        steps = self.settings.celery_queues.get(queue, celery_wire.DEFAULT_PRIORITY_STEPS)
        if record.from_celery:
            self.redis.lpush(celery_wire.priority_list(
                queue, celery_wire.envelope_priority(record.body), steps), record.body)
        else:  # retried by a taskfleet worker first: a new envelope of the same task
            self.redis.lpush(celery_wire.priority_list(queue, 0, steps),
                             celery_wire.envelope(message, queue))

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
