"""The records taskfleet keeps in Redis beside its messages: dead letters, results and
worker heartbeats. One type per record, each with the one encoder and the one decoder
that every writer and reader uses (the worker, the broker, the CLI, the dashboard and
the operator).

Anything that can reach Redis can write these keys, so a decoder treats its input as
untrusted: it raises :class:`~taskfleet.errors.RecordError` saying what is wrong, and
never decodes more than ``max_bytes``. A reader of many records (a dead-letter page,
the live workers) shows or skips the one that fails, with the reason, and goes on.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from redis.typing import EncodableT, FieldT

from . import celery_wire
from .errors import RecordError
from .message import Message

DEAD_PAGE_SIZE = 100
"""Dead letters listed at once (``taskfleet dead list``, the dashboard) unless asked."""
RECORD_BYTES_PER_MESSAGE_BYTE = 4
"""A dead letter carries its message as an escaped string, at most this many times the
message's size: records over that many times the message limit are not decoded."""
MAX_RECORD_BYTES = RECORD_BYTES_PER_MESSAGE_BYTE << 20
"""The largest record decoded for the default message limit of 1 MiB."""
CURRENT_SHOWN = 5
"""Running tasks a heartbeat names at most (the dashboard's "current" column)."""

PENDING, STARTED, RETRY, SUCCESS, FAILURE = "PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE"
"""A task's states: the last two are final and stored as a ResultRecord; the others are
the plain string of its state key (keys.state_key)."""

# One encoder for every result: json.dumps with an option set builds one per call.
# allow_nan=False: NaN and Infinity are not JSON, and other readers refuse them.
_encode_strict = json.JSONEncoder(allow_nan=False).encode


def decode_message(text: str) -> Message:
    """A queue's message: a taskfleet message, or a Celery client's (kombu's envelope:
    celery_wire). MessageError naming what is wrong otherwise."""
    if celery_wire.is_envelope(text):
        return celery_wire.decode(text)
    return Message.decode(text)


def _json_object(raw: str | bytes, what: str, max_bytes: int) -> dict[str, Any]:
    size = len(raw)
    if size > max_bytes:
        raise RecordError(f"{what} of {size:,} bytes, over the limit of {max_bytes:,}: "
                          "not decoded")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        raise RecordError(f"unreadable {what}: not JSON ({str(exc)[:200]})") from exc
    if not isinstance(data, dict):
        raise RecordError(f"unreadable {what}: not a JSON object")
    return data


def _text(data: dict[str, Any], name: str, what: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise RecordError(f"unreadable {what}: field {name!r} must be a string")
    return value


def _time(data: dict[str, Any], name: str, what: str) -> float:
    value = data.get(name)
    seconds = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):  # an integer of 400 digits
            seconds = float(value)
    if not math.isfinite(seconds):
        raise RecordError(f"unreadable {what}: field {name!r} must be a unix time")
    return seconds


def _optional_text(data: dict[str, Any], name: str, what: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise RecordError(f"unreadable {what}: field {name!r} must be a string or null")
    return value


# -- dead letters ----------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterRecord:
    """One entry of a queue's dead-letter list (keys.QueueKeys.dead), newest first.

    Written by the worker (Broker, through scripts.DEAD) and by the Lua scripts that
    refuse a message (scripts.FETCH, celery_wire.ADOPT: their ``dead_record``); the
    field names are spelled here and in scripts._DEAD_LETTER.
    """

    id: str
    queue: str
    reason: str
    failed_at: float
    """Unix time in seconds."""
    body: str
    """The message as its queue held it: a taskfleet message's JSON, a Celery client's
    envelope (kombu's), or whatever else was there (which is why it is a dead letter)."""

    def encode(self) -> str:
        return json.dumps(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "queue": self.queue, "reason": self.reason,
                "failed_at": self.failed_at, "body": self.body}

    @classmethod
    def decode(cls, raw: str | bytes, max_bytes: int = MAX_RECORD_BYTES) -> DeadLetterRecord:
        what = "dead letter"
        data = _json_object(raw, what, max_bytes)
        return cls(id=_text(data, "id", what), queue=_text(data, "queue", what),
                   reason=_text(data, "reason", what), failed_at=_time(data, "failed_at", what),
                   body=_text(data, "body", what))

    @property
    def from_celery(self) -> bool:
        """Sent by a Celery client and dead-lettered before any retry (its body is still
        kombu's envelope)."""
        return celery_wire.is_envelope(self.body)

    def task_name(self) -> str | None:
        """The task the body names (a taskfleet message's ``task``, a Celery envelope's
        ``headers.task``), read without checking the rest; None when it names none."""
        try:
            data = json.loads(self.body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(data, dict):
            return None
        headers = data.get("headers")
        name = headers.get("task") if isinstance(headers, dict) else data.get("task")
        return name if isinstance(name, str) and name else None

    def message(self) -> Message:
        """The body decoded as a worker would decode it; MessageError otherwise."""
        return decode_message(self.body)


@dataclass(frozen=True)
class UnreadableRecord:
    """A record that cannot be decoded, and why (RecordError's text): listed in its place
    rather than failing the whole list."""

    reason: str


def decode_dead_letters(raws: list[Any], max_bytes: int = MAX_RECORD_BYTES
                        ) -> list[DeadLetterRecord | UnreadableRecord]:
    """Each raw dead-letter record decoded, or why it cannot be, in the same order."""
    out: list[DeadLetterRecord | UnreadableRecord] = []
    for raw in raws:
        try:
            out.append(DeadLetterRecord.decode(raw, max_bytes))
        except RecordError as exc:
            out.append(UnreadableRecord(str(exc)))
    return out


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultRecord:
    """A task's final outcome under keys.result_key (a one-element list, so that any
    number of callers can wait for it with a blocking move)."""

    status: str
    """SUCCESS or FAILURE."""
    task: str
    date_done: float
    result: Any = None
    """The task's return value (SUCCESS)."""
    error: str | None = None
    """``Type: message`` of what it raised (FAILURE)."""
    traceback: str | None = None
    error_type: str | None = None
    """The exception ``AsyncResult.get`` raises when it is not TaskFailed (FAILURE):
    ``TaskNotFound`` for a task no worker's app registers."""

    @classmethod
    def success(cls, task: str, value: Any) -> ResultRecord:
        return cls(SUCCESS, task, time.time(), result=value)

    @classmethod
    def failure(cls, task: str, error: str, traceback: str | None,
                error_type: str | None = None) -> ResultRecord:
        return cls(FAILURE, task, time.time(), error=error, traceback=traceback,
                   error_type=error_type)

    def as_dict(self) -> dict[str, Any]:
        if self.status == SUCCESS:
            return {"status": SUCCESS, "task": self.task, "result": self.result,
                    "date_done": self.date_done}
        failed = {"status": self.status, "task": self.task, "error": self.error,
                  "traceback": self.traceback, "date_done": self.date_done}
        if self.error_type is not None:
            failed["error_type"] = self.error_type
        return failed

    def encode(self) -> str:
        """The JSON text; TypeError or ValueError when the value is not JSON."""
        return _encode_strict(self.as_dict())

    @property
    def value(self) -> Any:
        """What ``AsyncResult.result`` shows: the return value, or the error."""
        return self.result if self.status == SUCCESS else self.error

    @classmethod
    def decode(cls, raw: str | bytes, max_bytes: int | None = None) -> ResultRecord:
        what = "result"
        data = _json_object(raw, what, len(raw) if max_bytes is None else max_bytes)
        status = data.get("status")
        if status not in (SUCCESS, FAILURE):
            raise RecordError(f"unreadable {what}: field 'status' must be {SUCCESS} or "
                              f"{FAILURE}")
        task, done = _text(data, "task", what), _time(data, "date_done", what)
        if status == SUCCESS:
            return cls(SUCCESS, task, done, result=data.get("result"))
        return cls(FAILURE, task, done, error=_optional_text(data, "error", what) or "",
                   traceback=_optional_text(data, "traceback", what),
                   error_type=_optional_text(data, "error_type", what))


# -- heartbeats ------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerInfo:
    """A worker's heartbeat: a hash under keys.worker_key, indexed in keys.WORKERS_KEY."""

    id: str
    pod: str
    queues: list[str]
    busy: int
    """Tasks running now; 0 means idle."""
    concurrency: int
    last_seen: float
    current: tuple[str, ...] = ()
    """Tasks running at the heartbeat, as "task.name id" (at most CURRENT_SHOWN)."""

    def encode(self) -> dict[FieldT, EncodableT]:
        """The hash's fields."""
        return {"pod": self.pod, "queues": ",".join(self.queues), "busy": self.busy,
                "concurrency": self.concurrency, "last_seen": self.last_seen,
                "current": ",".join(self.current[:CURRENT_SHOWN])}

    @classmethod
    def decode(cls, worker_id: str, fields: dict[str, str]) -> WorkerInfo:
        """From the hash's fields (text); a field that is missing takes its default."""
        what = f"heartbeat of worker {worker_id[:200]!r}"
        busy = _whole(fields, "busy", 0, what)
        concurrency = _whole(fields, "concurrency", 1, what)
        try:
            last_seen = float(fields.get("last_seen", 0))
        except ValueError:
            last_seen = math.nan
        if not math.isfinite(last_seen):
            raise RecordError(f"unreadable {what}: field 'last_seen' must be a unix time")
        return cls(id=worker_id, pod=fields.get("pod", ""),
                   queues=[q for q in fields.get("queues", "").split(",") if q],
                   busy=busy, concurrency=concurrency, last_seen=last_seen,
                   current=tuple(t for t in fields.get("current", "").split(",") if t))


def _whole(fields: dict[str, str], name: str, default: int, what: str) -> int:
    text = fields.get(name)
    if text is None:
        return default
    try:
        if len(text) <= 20:
            return int(text)
    except ValueError:
        pass
    raise RecordError(f"unreadable {what}: field {name!r} must be a whole number")


__all__ = ["DEAD_PAGE_SIZE", "MAX_RECORD_BYTES", "DeadLetterRecord", "ResultRecord",
           "UnreadableRecord", "WorkerInfo", "decode_dead_letters", "decode_message"]
