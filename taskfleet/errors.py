"""Exceptions raised by the taskfleet library."""

from __future__ import annotations

from redis.exceptions import RedisError


class TaskfleetError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(TaskfleetError):
    """A setting is missing or wrong; the message names it and the fix."""


class MessageError(TaskfleetError):
    """A message cannot be decoded or does not have the fields of a task message."""


class RecordError(TaskfleetError, ValueError):
    """A record read from Redis (a dead letter, a result, a heartbeat) cannot be decoded;
    the message says what is wrong with it (taskfleet.records)."""


class MessageTooLarge(TaskfleetError, ValueError):
    """A task's message is over the app's ``max_message_bytes``; nothing was sent."""


class TimeLimitExceeded(TaskfleetError):
    """A task ran longer than its ``time_limit``."""


class ResultTimeout(TaskfleetError, TimeoutError):
    """``AsyncResult.get`` waited ``timeout`` seconds and the task had not finished."""


class TaskFailed(TaskfleetError):
    """``AsyncResult.get`` on a task that failed; carries the remote error text."""

    def __init__(self, task_id: str, error: str, traceback: str | None = None) -> None:
        super().__init__(f"task {task_id} failed: {error}")
        self.task_id = task_id
        self.error = error
        self.remote_traceback = traceback


class TaskNotFound(TaskFailed):
    """``AsyncResult.get`` on a task the worker's app does not register: sent by a name no
    deployed code defines (a typo, code not deployed yet), it was dead-lettered unrun."""


class Retry(TaskfleetError):
    """Raise inside a task to ask for another attempt, optionally after ``countdown`` seconds."""

    def __init__(self, reason: str = "retry requested", countdown: float | None = None) -> None:
        super().__init__(reason)
        self.countdown = countdown


class ReplicaAckTimeout(TaskfleetError, RedisError):
    """With ``replica_acks``, a write reached fewer replicas than asked within the timeout.

    It is on the master; a failover before it replicates could lose it. A RedisError, so
    a worker retries its settle as it would after a lost connection.
    """
