"""taskfleet: Celery-style tasks on Redis, at-least-once, observable per queue."""

from .app import App, Task
from .errors import (
    ConfigError,
    MessageError,
    MessageTooLarge,
    ResultTimeout,
    Retry,
    TaskFailed,
    TaskfleetError,
    TaskNotFound,
    TimeLimitExceeded,
)
from .heartbeat import WorkerInfo, live_workers
from .result import AsyncResult
from .stats import QueueStats, queue_stats

__all__ = [
    "App",
    "AsyncResult",
    "ConfigError",
    "MessageError",
    "MessageTooLarge",
    "QueueStats",
    "ResultTimeout",
    "Retry",
    "Task",
    "TaskFailed",
    "TaskNotFound",
    "TaskfleetError",
    "TimeLimitExceeded",
    "WorkerInfo",
    "live_workers",
    "queue_stats",
]
