"""Settings: the options that say how a thing behaves, as frozen objects built once where
the options are known and handed on whole, never changed after.

- :class:`taskfleet.app.TaskSettings`: how one task is sent and run (``@app.task(...)``).
- :class:`BrokerSettings`: how the broker stores and moves tasks (``App(...)``, and the
  worker's options that override the app's).
- :class:`WorkerSettings`: how a worker runs (``taskfleet worker``'s options).
- :class:`PoolChildSettings`: what a child of the processes pool runs with, built once by
  its supervisor and handed to each child as JSON in its environment.

A queue's settings (:attr:`taskfleet.keys.QueueKeys.settings`) are the one kind that
lives in Redis instead: the operator writes them from the TaskQueue, and every worker's
scripts read them where they need them, so a change reaches running workers.

Only the standard library here: a pool child reads its settings before it imports redis-py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from .connection import BrokerAddress

PoolKind = Literal["threads", "inline"]
"""How one worker process runs its tasks (the processes pool is a supervisor of
``inline`` workers, :mod:`taskfleet.supervisor`)."""

POOL_CHILD_ENV = "TASKFLEET_POOL_CHILD"
"""A pool child's :class:`PoolChildSettings`, as JSON: the environment, not the command
line, since every user of the machine can read a command line (/proc/PID/cmdline, ps),
and the broker URL may hold a password."""


@dataclass(frozen=True)
class BrokerSettings:
    """How the broker stores and moves tasks: one object, built by the App from its
    arguments (and the worker's options), shared by the App and its Broker."""

    result_ttl: int = 86400
    """Seconds a result and a task's status are kept."""
    redelivery_limit: int = 5
    """Dead-letter a task whose worker died holding it this many times (0: never)."""
    dead_letter_limit: int = 10_000
    """Records a dead-letter list keeps, the oldest dropped first (0: no cap), unless the
    queue's settings (the TaskQueue's deadLetterLimit) say otherwise."""
    max_message_bytes: int = 1 << 20
    """A larger message is refused at the producer and dead-lettered undecoded by workers."""
    replica_acks: int | None = None
    """Replicas every enqueue and settle waits for (WAIT); None: the broker URL's
    ``?replica_acks=`` (0, Redis's default, unless given)."""
    replica_ack_timeout_ms: int | None = None
    """How long such a WAIT waits; None: the URL's ``?replica_ack_timeout_ms=``."""
    celery_queues: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Queues that also take Celery clients' messages, with their priority steps."""

    def __post_init__(self) -> None:
        frozen = MappingProxyType({q: tuple(steps) for q, steps in self.celery_queues.items()})
        object.__setattr__(self, "celery_queues", frozen)

    def for_address(self, address: BrokerAddress) -> BrokerSettings:
        """These settings, with the URL's replica acknowledgements where they leave them open."""
        return replace(
            self,
            replica_acks=address.replica_acks if self.replica_acks is None
            else self.replica_acks,
            replica_ack_timeout_ms=address.replica_ack_timeout_ms
            if self.replica_ack_timeout_ms is None else self.replica_ack_timeout_ms)

    def as_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["celery_queues"] = {q: list(steps) for q, steps in self.celery_queues.items()}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BrokerSettings:
        return cls(**data)


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker runs: the ``taskfleet worker`` options that travel together."""

    queues: Sequence[str]
    """Served in this order: the first non-empty one wins."""
    concurrency: int = 1
    pool: PoolKind = "threads"
    drain_timeout: float = 25.0
    """Seconds running tasks get to finish after SIGTERM."""
    task_lease_seconds: float | None = None
    """Visibility timeout of a taken task (default: the app's)."""
    health_file: str | None = None
    """Touched on each heartbeat that reached Redis (``taskfleet health``)."""
    supervised: bool = False
    """A child of the processes pool. It may get each stop twice (from the process
    group and from its supervisor), so a repeated SIGTERM drains once; only the
    supervisor's signals.FORCE_STOP returns running tasks."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "queues", tuple(self.queues))
        if not self.queues:
            raise ValueError("a worker needs at least one queue (--queues a,b)")
        if self.concurrency < 1:
            raise ValueError(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.pool == "inline" and self.concurrency != 1:
            raise ValueError("the inline pool runs one task at a time: use --concurrency 1")

    def as_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["queues"] = list(self.queues)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WorkerSettings:
        return cls(**data)


@dataclass(frozen=True)
class PoolChildSettings:
    """What a child of the processes pool runs with: the supervisor's settings, resolved
    once (the app's broker settings with the worker's options applied), so a child never
    parses options again and cannot read them differently."""

    app: str
    """Import path of the App, ``package.module:app``."""
    broker_url: str
    broker: BrokerSettings
    worker: WorkerSettings
    """An ``inline`` worker of concurrency 1, ``supervised``."""
    log_level: str = "INFO"
    metrics: bool = False
    """Record Prometheus metrics for the supervisor to serve (its multiprocess directory)."""

    def encode(self) -> str:
        return json.dumps({"app": self.app, "broker_url": self.broker_url,
                           "broker": self.broker.as_json(), "worker": self.worker.as_json(),
                           "log_level": self.log_level, "metrics": self.metrics})

    @classmethod
    def decode(cls, text: str) -> PoolChildSettings:
        data = json.loads(text)
        return cls(app=data["app"], broker_url=data["broker_url"],
                   broker=BrokerSettings.from_json(data["broker"]),
                   worker=WorkerSettings.from_json(data["worker"]),
                   log_level=data["log_level"], metrics=data["metrics"])
