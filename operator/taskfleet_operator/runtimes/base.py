"""What a worker runtime is to the operator: the program a WorkerPool's containers run
(WorkerPool.spec.runtime), with its command line, liveness probe, broker environment,
drain, and how its running tasks are counted."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from taskfleet.connection import BROKER_ENV

from ..protocols import QueueRedis

if TYPE_CHECKING:
    from ..model import RedisRef, TaskQueue, WorkerPool

DRAIN_MARGIN_SECONDS = 5
"""A worker that bounds its own drain gives up on running tasks this long before the
kubelet's SIGKILL (the pod's grace period), so it can return them to their queues itself."""


class WorkerRuntime(ABC):
    """One WorkerPool.spec.runtime."""

    name: ClassVar[str]
    """WorkerPool.spec.runtime."""
    serves: ClassVar[tuple[str, ...]]
    """The TaskQueue protocols its workers take tasks from; the first is its own: a queue
    of that protocol has its busy pods told by this runtime when no pool says otherwise."""
    needs_app: ClassVar[bool] = True
    """spec.app (the import path of the task app) is required."""
    broker_url_env: ClassVar[str] = BROKER_ENV
    """The variable its command reads the broker URL from."""
    broker_settings_apart: ClassVar[bool] = False
    """It takes the password, the sentinels' password and TLS apart from the URL
    (taskfleet.connection's variables); otherwise they must be in the URL."""
    running_outside_queues: ClassVar[bool] = False
    """A running task of its workers is in no Redis key the queue's figures count (Celery
    acknowledges a task when it starts): the controller adds what ``running_by_pod``
    says to the pool's in-flight work, and holds the pool while that is unknown."""
    running_unknown: ClassVar[str] = "running tasks not known yet"
    """Why the pool holds while ``running_by_pod`` is None (running_outside_queues)."""

    def check(self, spec: dict[str, Any]) -> None:
        """SpecError naming the field when the WorkerPool spec asks what it cannot run
        (beyond what every runtime checks)."""
        return None

    @abstractmethod
    def command(self, pool: WorkerPool, queues: list[TaskQueue]) -> list[str]:
        """The container's command line: its queues, concurrency, pool kind and drain."""

    @abstractmethod
    def liveness_command(self, pool: WorkerPool) -> list[str]:
        """The liveness probe's command: fails when the worker is cut off or stuck."""

    @abstractmethod
    def running_by_pod(self, queue_redis: QueueRedis, queue: TaskQueue
                       ) -> dict[str, int] | None:
        """Running tasks per pod of its workers on the queue's Redis; None when not known
        (the Redis cannot be resolved or read, or the workers not heard from yet)."""

    def cannot_serve(self, queue: TaskQueue) -> str | None:
        """Why its workers cannot take the queue's tasks, or None."""
        if queue.protocol in self.serves:
            return None
        return (f"spec.runtime {self.name} cannot serve TaskQueue {queue.name!r} (protocol "
                f"{queue.protocol}); use a {self.name} queue (spec.protocol: "
                f"{self.serves[0]}) or another runtime")

    def cannot_reach(self, ref: RedisRef) -> str | None:
        """Why its workers cannot be given the broker settings of ``ref``, or None."""
        if self.broker_settings_apart or not (ref.password_from or ref.tls or ref.tls_insecure):
            return None
        return (f"spec.runtime {self.name}: {self.name} workers take the password and TLS "
                "in the URL; put them there (redis.urlFrom a Secret, rediss:// for TLS) "
                "instead of redis.passwordFrom and redis.tls")
