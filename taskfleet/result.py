"""Task results: stored with a TTL, awaited without a polling loop. The stored record,
its encoder and its decoder are :class:`taskfleet.records.ResultRecord`."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from . import keys
from .errors import ResultTimeout, TaskFailed, TaskNotFound
from .records import FAILURE, PENDING, RETRY, STARTED, SUCCESS, ResultRecord

if TYPE_CHECKING:
    from .app import App

# A blocking wait is cut in slices shorter than the client's socket timeout.
_WAIT_SLICE_SECONDS = 10.0


def success_record(task: str, value: Any) -> str:
    """Raises TypeError or ValueError when the value cannot be JSON."""
    return ResultRecord.success(task, value).encode()


def failure_record(task: str, error: str, traceback: str | None,
                   error_type: str | None = None) -> str:
    """``error_type``: the exception ``AsyncResult.get`` raises, when not TaskFailed."""
    return ResultRecord.failure(task, error, traceback, error_type).encode()


class AsyncResult:
    """A handle on a task's outcome."""

    def __init__(self, task_id: str, app: App) -> None:
        self.id = task_id
        self.app = app

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def _record(self) -> ResultRecord | None:
        """The stored result; RecordError when what is stored there cannot be decoded."""
        raw = self.app.redis.lindex(keys.result_key(self.id), 0)
        return ResultRecord.decode(raw) if raw else None

    @property
    def status(self) -> str:
        record = self._record()
        if record is not None:
            return record.status
        state = self.app.redis.get(keys.state_key(self.id))
        return str(state) if state else PENDING

    state = status

    def ready(self) -> bool:
        return self._record() is not None

    def successful(self) -> bool:
        record = self._record()
        return record is not None and record.status == SUCCESS

    def failed(self) -> bool:
        record = self._record()
        return record is not None and record.status == FAILURE

    def get(self, timeout: float | None = None, propagate: bool = True) -> Any:
        """Wait for the result; raise TaskFailed if the task failed (when ``propagate``),
        TaskNotFound (a TaskFailed) if the worker's app does not register its name.

        Waits with a blocking BLMOVE of the one-element result list onto
        itself, so any number of callers can wait for the same result.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        rk = keys.result_key(self.id)
        while True:
            remaining = _WAIT_SLICE_SECONDS if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise ResultTimeout(f"task {self.id} did not finish within {timeout} s")
            wait = min(remaining, _WAIT_SLICE_SECONDS)
            raw = self.app.redis.blmove(rk, rk, wait, "LEFT", "LEFT")  # type: ignore[arg-type]
            if raw is not None:
                break
        record = ResultRecord.decode(raw)
        if record.status == FAILURE and propagate:
            failed = TaskNotFound if record.error_type == TaskNotFound.__name__ else TaskFailed
            raise failed(self.id, record.error or "", record.traceback)
        return record.value

    @property
    def result(self) -> Any:
        record = self._record()
        return None if record is None else record.value


__all__ = ["FAILURE", "PENDING", "RETRY", "STARTED", "SUCCESS", "AsyncResult", "failure_record",
           "success_record"]
