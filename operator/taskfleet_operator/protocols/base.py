"""What a queue protocol is to the operator (TaskQueue.spec.protocol), and what the
observer lends protocols and worker runtimes: the queue's Redis and its listeners."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import redis

from taskfleet import QueueStats
from taskfleet.batch import Batch
from taskfleet.connection import Client

if TYPE_CHECKING:
    from ..model import TaskQueue

Figures = Callable[[Sequence[Any]], list[QueueStats | Exception]]
"""Given the batch's replies: each queue's figures, or why it could not be read, in order."""


class Listener(Protocol):
    """A thread listening on one Redis server until stopped."""

    def stop(self) -> None: ...


L = TypeVar("L", bound=Listener)


class QueueRedis(Protocol):
    """What the observer lends a protocol or a worker runtime: the Redis of a queue."""

    def client_of(self, queue: TaskQueue) -> Client | None:
        """The queue's client; None when its spec.redis cannot be resolved now."""
        ...

    def listener_of(self, queue: TaskQueue,
                    start: Callable[[redis.Redis, Callable[[str], str]], L]) -> L | None:
        """The listener ``start`` started on the queue's Redis server (given the client and
        the directory's redaction, for what it logs), started on first
        use, one per server and ``start``; None when the queue's Redis cannot be resolved
        or is a cluster (no protocol with listeners runs on one)."""
        ...

    def redact(self, text: str) -> str:
        """``text`` without a password or any value read from a Secret."""
        ...


class QueueProtocol(ABC):
    """One TaskQueue.spec.protocol: how its queues are read, how the operator learns of
    new work in them, and what a queue of it may ask for."""

    name: ClassVar[str]
    """TaskQueue.spec.protocol."""
    wakes_on_enqueue: ClassVar[bool] = False
    """Its clients publish on the queue's wake channel when an empty queue gets work
    (taskfleet.scripts' ENQUEUE, on keys.QueueKeys.wake_channel; the operator listens in
    taskfleet_operator.wakeups), so a queue read empty may rest between safety reads; otherwise
    it is read every poll."""
    on_a_cluster: ClassVar[bool] = False
    """Its queues may live on a Redis Cluster (its workers and clients support one)."""
    takes_schedules: ClassVar[bool] = False
    """The operator's cron schedules (taskfleet messages) may send into its queues."""

    @abstractmethod
    def add_reads(self, batch: Batch, client: Client, queues: Sequence[TaskQueue]) -> Figures:
        """Queue the calls that read these queues into the batch shared by every queue on
        one Redis; returns how to read their replies."""

    def watch(self, queue_redis: QueueRedis, queue: TaskQueue) -> None:
        """Start listening for what the queue's workers tell (nothing by default): called on
        every read, so a listener has heard the workers by the time they are asked about."""
        return None


class OneCallPerQueue(QueueProtocol):
    """A protocol read with one call per queue (``add_read``) and the parse of its reply
    (``parse``), for layouts without a many-queue script."""

    @abstractmethod
    def add_read(self, batch: Batch, client: Client, queue: TaskQueue) -> None:
        """Queue the one call that reads ``queue``."""

    @abstractmethod
    def parse(self, reply: Any) -> QueueStats:
        """The figures in the call's reply; ValueError or TypeError when it is malformed."""

    def add_reads(self, batch: Batch, client: Client, queues: Sequence[TaskQueue]) -> Figures:
        first = len(batch)
        for tq in queues:
            self.add_read(batch, client, tq)

        def figures(replies: Sequence[Any]) -> list[QueueStats | Exception]:
            out: list[QueueStats | Exception] = []
            for reply in replies[first:first + len(queues)]:
                if isinstance(reply, Exception):
                    out.append(reply)
                    continue
                try:
                    out.append(self.parse(reply))
                except (ValueError, TypeError) as exc:
                    out.append(ValueError(f"unexpected reply: {exc}"))
            return out
        return figures
