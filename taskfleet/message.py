"""Task messages: JSON only, never pickle, validated field by field."""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import MessageError

PROTOCOL_VERSION = 1
# One encoder for every message: json.dumps with non-default options builds a new one
# per call. allow_nan=False: NaN and Infinity are not JSON, and other consumers refuse them.
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def new_task_id() -> str:
    """A time-ordered 128-bit id (UUIDv7 layout) as 32 hex digits; sorts by creation time."""
    # random, not os.urandom: ids need to be unique, not secret, and a system call per id
    # was a tenth of a batch enqueue. The module's generator is reseeded in a forked child.
    ms = time.time_ns() // 1_000_000
    value = (ms & 0xFFFFFFFFFFFF) << 80 | 0x7 << 76 | random.getrandbits(76)
    return f"{value:032x}"


@dataclass
class Message:
    """One task invocation as it travels through Redis."""

    id: str
    task: str
    queue: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    priority: int = 0
    retries: int = 0
    enqueued_at: float = 0.0
    celery: bool = False
    """Sent by a Celery client: the result goes where Celery's result backend reads it."""

    def encode(self) -> str:
        """The JSON text; TypeError when an argument is not JSON."""
        data = {"v": PROTOCOL_VERSION, "id": self.id, "task": self.task, "queue": self.queue,
                "args": self.args, "kwargs": self.kwargs, "priority": self.priority,
                "retries": self.retries, "enqueued_at": self.enqueued_at}
        if self.celery:
            data["celery"] = True
        return _encode_arguments(data)

    @classmethod
    def decode(cls, raw: str | bytes) -> Message:
        """Parse and validate; a bad message raises MessageError naming the field."""
        try:
            if isinstance(raw, str):
                # Replies are decoded with surrogateescape (connection.connect): bytes that
                # are not UTF-8 arrive as lone surrogates, which encoding finds.
                raw.encode("utf-8")
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
            # (UnicodeEncodeError is a ValueError: a body that is not UTF-8)
            raise MessageError(f"message is not valid JSON ({exc}); producers must send JSON"
                               ) from exc
        # Exact type checks: json.loads makes no subclasses, and type(True) is bool, not
        # int. This runs once per task, so it checks each field once and builds nothing.
        if type(data) is not dict:
            raise MessageError("message must be a JSON object with 'id', 'task' and 'queue'")
        get = data.get
        id_: Any
        task: Any
        queue: Any
        id_, task, queue = get("id"), get("task"), get("queue")
        for name, value in (("id", id_), ("task", task), ("queue", queue)):
            if type(value) is not str or not value:
                raise MessageError(f"message field '{name}' must be a non-empty string")
        args, kwargs = get("args", []), get("kwargs", {})
        if type(args) is not list:
            raise MessageError("message field 'args' must be a JSON array")
        if type(kwargs) is not dict:
            raise MessageError("message field 'kwargs' must be a JSON object")
        priority, retries = get("priority", 0), get("retries", 0)
        if type(priority) is not int:
            raise MessageError("message field 'priority' must be an integer")
        if type(retries) is not int:
            raise MessageError("message field 'retries' must be an integer")
        enqueued_at = get("enqueued_at", 0.0)
        if type(enqueued_at) is not float or not math.isfinite(enqueued_at):
            enqueued_at = _unix_time(enqueued_at)
        return cls(id_, task, queue, args, kwargs, priority, retries, enqueued_at,
                   get("celery") is True)


def encode_calls(task: str, queue: str, priority: int, enqueued_at: float,
                 arg_lists: Iterable[list[Any]]) -> list[tuple[str, str]]:
    """(id, JSON) of a new message per argument list, the same text as Message.encode: the
    fields the calls share are encoded once, and each call only its id and arguments (a
    batch enqueue spent a third of its time encoding the same fields again)."""
    head = f'{{"v":{PROTOCOL_VERSION},"id":"'
    middle = f'","task":{_encode(task)},"queue":{_encode(queue)},"args":'
    tail = "," + _encode({"kwargs": {}, "priority": priority, "retries": 0,
                          "enqueued_at": enqueued_at})[1:]
    out = []
    for args in arg_lists:
        task_id = new_task_id()
        out.append((task_id, f"{head}{task_id}{middle}{_encode_arguments(args)}{tail}"))
    return out


def _encode_arguments(value: Any) -> str:
    try:
        return _encode(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"task arguments must be JSON-serialisable ({exc}); pass ids or "
                        "plain data, not objects (NaN and Infinity are not JSON)") from exc


def _unix_time(value: Any) -> float:
    """The enqueue time as a finite float; MessageError for anything else (10**400 too)."""
    if not isinstance(value, bool) and isinstance(value, int | float):
        with contextlib.suppress(OverflowError):
            seconds = float(value)
            if math.isfinite(seconds):
                return seconds
    raise MessageError("message field 'enqueued_at' must be a unix time in seconds")


def check_arguments(args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """Refuse, at the producer, arguments of the wrong shape (JSON is checked by encode)."""
    if not isinstance(args, list | tuple):
        raise TypeError(f"args must be a list or tuple, not {type(args).__name__}")
    if not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}")
    return list(args), dict(kwargs)


def check_priority(priority: int) -> int:
    if not isinstance(priority, int) or not 0 <= priority <= 9:
        raise ValueError(
            f"priority must be an integer from 0 to 9 (9 most urgent), got {priority!r}")
    return priority
