"""Running one delivered task and turning what happened into a settle outcome.

Nothing here raises: bad input becomes a dead letter with a reason, so a
worker never stops on it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from types import FrameType
from typing import Any

import redis

from . import keys
from .app import App, Task
from .backoff import retry_delay
from .broker import Ack, DeadLetter, Delivery, Outcome, RetryLater, Return, message_json
from .errors import MessageError, TaskNotFound, TimeLimitExceeded
from .errors import Retry as RetryRequest
from .message import Message
from .records import decode_message
from .result import RETRY, STARTED, failure_record, success_record

log = logging.getLogger("taskfleet.worker")


class ShutdownInterrupt(BaseException):
    """Raised into a running task when a forced shutdown returns it to its queue.

    A BaseException, so a task's ``except Exception`` does not swallow it.
    """


def prepare(app: App, delivery: Delivery) -> tuple[Task[Any, Any], Message] | DeadLetter:
    """Decode the message and find its task, or say why it cannot run (arguments that do
    not fit the task are found when the call raises: see _bad_arguments)."""
    limit = app.broker_settings.max_message_bytes
    if delivery.message is None and (size := body_bytes(delivery.body)) > limit:
        return DeadLetter(delivery, f"message of {size:,} bytes, over the limit of "
                                    f"{limit:,} (max_message_bytes): refused "
                                    "undecoded")
    try:
        message = delivery.message or decode_message(message_json(delivery.body))
    except MessageError as exc:
        return DeadLetter(delivery, f"undecodable message: {exc}")
    delivery.message = message
    task = app.tasks.get(message.task)
    if task is None:  # AsyncResult.get raises TaskNotFound from this record
        return DeadLetter(delivery, f"unknown task {message.task!r}: the worker's app does not "
                                    "register it; deploy the code that defines it or fix the name",
                          failure_record(message.task, f"unknown task {message.task!r}", None,
                                         error_type=TaskNotFound.__name__))
    return task, message


def _bad_arguments(delivery: Delivery, task: Task[Any, Any], message: Message
                   ) -> DeadLetter | None:
    """Why the message's arguments do not fit the task, or None. Checked only once the
    call raised TypeError: binding a signature costs more than many tasks' bodies."""
    try:
        task.signature.bind(*message.args, **message.kwargs)
    except TypeError as exc:
        error = f"bad arguments for task {message.task!r}: {exc}"
        return DeadLetter(delivery, error, failure_record(message.task, error, None))
    return None


def body_bytes(body: str) -> int:
    """The size of a stored body in bytes (a producer's JSON is ASCII: one byte a char)."""
    return len(body) if body.isascii() else len(body.encode("utf-8", "surrogatepass"))


def task_name(delivery: Delivery, max_bytes: int) -> str:
    """The delivery's task name, its message decoded once here for :func:`run` too; '?'
    when the message cannot be decoded or is over ``max_bytes`` (:func:`run`
    dead-letters it)."""
    if delivery.message is None:
        if body_bytes(delivery.body) > max_bytes:
            return "?"
        try:
            delivery.message = decode_message(message_json(delivery.body))
        except MessageError:
            return "?"
    return delivery.message.task


def run(app: App, delivery: Delivery) -> Outcome:
    """Run a delivery to completion and return its outcome."""
    prepared = prepare(app, delivery)
    if isinstance(prepared, DeadLetter):
        log.warning("task %s -> dead letter: %s", delivery.id, prepared.reason)
        return prepared
    task, message = prepared
    if task.settings.track_started:
        try:
            app.redis.set(keys.state_key(message.id), STARTED, ex=app.broker_settings.result_ttl)
        except redis.RedisError as exc:  # a status nicety; the task runs all the same
            log.warning("task %s: STARTED not recorded (%s)", message.id, exc)
    try:
        if task.settings.time_limit is None:  # no context manager per task when unlimited
            value = task.fn(*message.args, **message.kwargs)
        else:
            with time_limit(task.settings.time_limit, task.name):
                value = task.fn(*message.args, **message.kwargs)
    except ShutdownInterrupt:
        return Return(delivery)
    except RetryRequest as req:
        return _retry_or_dead(delivery, task, message, req, req.countdown)
    except Exception as exc:
        bad = _bad_arguments(delivery, task, message) if isinstance(exc, TypeError) else None
        if bad is not None:  # the call itself did not fit: no retry can help
            log.warning("task %s -> dead letter: %s", delivery.id, bad.reason)
            return bad
        if isinstance(exc, task.settings.retry_for):
            return _retry_or_dead(delivery, task, message, exc, None)
        return _dead(delivery, task, message, exc)
    if task.settings.ignore_result:
        return Ack(delivery)
    try:
        return Ack(delivery, success_record(task.name, value))
    except (TypeError, ValueError) as exc:
        error = f"task {task.name!r} returned a value JSON cannot carry: {exc}"
        return Ack(delivery, failure_record(task.name, error, None))


@contextlib.contextmanager
def time_limit(seconds: float, task_name: str) -> Iterator[None]:
    """Interrupt the task with TimeLimitExceeded after ``seconds``.

    Only the main thread can be interrupted (SIGALRM), so the limit holds in
    the processes pool; in the threads pool an overrun is only logged.
    """
    if threading.current_thread() is not threading.main_thread():
        started = time.monotonic()
        yield
        if time.monotonic() - started > seconds:
            log.warning("task %s overran its time_limit of %ss (not enforceable in the threads "
                        "pool; use --pool processes)", task_name, seconds)
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeLimitExceeded(f"task {task_name} exceeded its time_limit of {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _retry_or_dead(delivery: Delivery, task: Task[Any, Any], message: Message,
                   exc: BaseException, countdown: float | None) -> Outcome:
    settings = task.settings
    if message.retries >= settings.max_retries:
        return _dead(delivery, task, message, exc)
    delay = countdown if countdown is not None else retry_delay(
        message.retries, settings.retry_backoff, settings.retry_backoff_max,
        settings.retry_jitter)
    log.info("task %s %s failed (%r); retry %d/%d in %.1fs", task.name, message.id, exc,
             message.retries + 1, settings.max_retries, delay)
    message.retries += 1
    return RetryLater(delivery, message, int((time.time() + delay) * 1000), state=RETRY)


def _dead(delivery: Delivery, task: Task[Any, Any], message: Message, exc: BaseException
          ) -> DeadLetter:
    error = f"{type(exc).__name__}: {exc}"
    tb = "".join(traceback.format_exception(exc))
    reason = f"failed after {message.retries} retries: {error}"
    log.warning("task %s %s %s", task.name, message.id, reason)
    return DeadLetter(delivery, reason, failure_record(task.name, error, tb))


__all__ = ["ShutdownInterrupt", "prepare", "run", "task_name"]
