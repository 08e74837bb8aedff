"""Task results: stored with a TTL, awaited without a polling loop."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from . import keys
from .errors import ResultTimeout, TaskFailed, TaskNotFound

if TYPE_CHECKING:
    from .app import App

PENDING, STARTED, RETRY, SUCCESS, FAILURE = "PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE"

# A blocking wait is cut in slices shorter than the client's socket timeout.
_WAIT_SLICE_SECONDS = 10.0
# One encoder for every result: json.dumps with an option set builds one per call.
_encode_strict = json.JSONEncoder(allow_nan=False).encode


def success_record(task: str, value: Any) -> str:
    """Raises TypeError when the value cannot be JSON."""
    return _encode_strict({"status": SUCCESS, "task": task, "result": value,
                           "date_done": time.time()})


def failure_record(task: str, error: str, traceback: str | None,
                   error_type: str | None = None) -> str:
    """``error_type``: the exception ``AsyncResult.get`` raises, when not TaskFailed."""
    record = {"status": FAILURE, "task": task, "error": error, "traceback": traceback,
              "date_done": time.time()}
    if error_type is not None:
        record["error_type"] = error_type
    return json.dumps(record)


class AsyncResult:
    """A handle on a task's outcome."""

    def __init__(self, task_id: str, app: App) -> None:
        self.id = task_id
        self.app = app

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def _record(self) -> dict[str, Any] | None:
        raw = self.app.redis.lindex(keys.result_key(self.id), 0)
        return json.loads(raw) if raw else None

    @property
    def status(self) -> str:
        record = self._record()
        if record is not None:
            return str(record["status"])
        state = self.app.redis.get(keys.state_key(self.id))
        return str(state) if state else PENDING

    state = status

    def ready(self) -> bool:
        return self._record() is not None

    def successful(self) -> bool:
        record = self._record()
        return record is not None and record["status"] == SUCCESS

    def failed(self) -> bool:
        record = self._record()
        return record is not None and record["status"] == FAILURE

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
        record = json.loads(raw)
        if record["status"] == FAILURE:
            if propagate:
                failed = TaskNotFound if record.get("error_type") == TaskNotFound.__name__ \
                    else TaskFailed
                raise failed(self.id, record.get("error", ""), record.get("traceback"))
            return record.get("error")
        return record.get("result")

    @property
    def result(self) -> Any:
        record = self._record()
        if record is None:
            return None
        return record.get("result") if record["status"] == SUCCESS else record.get("error")
