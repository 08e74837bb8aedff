"""taskfleet: Celery-style tasks on Redis, at-least-once, observable per queue.

The names below are imported on first use, so that the ``taskfleet`` command (a
worker that must catch SIGTERM at once, a liveness probe) starts without importing
redis-py first; ``from taskfleet import App`` works as always.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_MODULE_OF = {
    "App": "app", "Task": "app",
    "ConfigError": "errors", "MessageError": "errors", "MessageTooLarge": "errors",
    "ResultTimeout": "errors", "Retry": "errors", "TaskFailed": "errors",
    "TaskfleetError": "errors", "TaskNotFound": "errors", "TimeLimitExceeded": "errors",
    "WorkerInfo": "heartbeat", "live_workers": "heartbeat",
    "AsyncResult": "result",
    "QueueStats": "stats", "queue_stats": "stats",
}

if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all attribute

    def __getattr__(name: str) -> Any:
        module = _MODULE_OF.get(name)
        if module is None:  # a submodule, as `import taskfleet; taskfleet.keys` always had
            if name.startswith("_") or importlib.util.find_spec(f"{__name__}.{name}") is None:
                raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
            return importlib.import_module(f".{name}", __name__)
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_MODULE_OF})


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
