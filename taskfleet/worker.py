"""The worker: takes tasks from queues in priority order and runs them.

One loop thread talks to Redis for taking and settling tasks; tasks run on a
small pool of daemon threads (``threads``) or in the loop thread itself
(``inline``, what each child of the processes pool uses). Two helper threads
keep leases and the heartbeat alive and turn queue wake-ups into notices for
the loop.

SIGTERM drains: no new tasks, running ones finish within ``drain_timeout``,
the rest go back to the front of their queue, exit code 0. A second SIGTERM
(for a pool child, its supervisor's signals.FORCE_STOP) or the end of the drain
window returns the running tasks at once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue as queue_mod
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import redis

from . import heartbeat, keys, signals
from .app import App
from .broker import Delivery, Outcome, Return
from .execution import ShutdownInterrupt, run, task_name
from .settings import WorkerSettings
from .subscription import hold_subscription

log = logging.getLogger("taskfleet.worker")

IDLE_WAIT_SECONDS = 1.0
"""Longest idle wait between fetches: the safety net for a missed wake-up."""
FAST_TASK_SECONDS = 0.005
"""Below this average run time the inline pool prefetches and settles in batches."""
GIVE_BACK_AFTER_SECONDS = 1.0
"""A task running this long sends the prefetched ones back to the queue for others."""
PREFETCH = 32
"""Extra tasks the inline pool holds while its tasks are fast: at most 32 x 5 ms of
work, and one settle-and-fetch round trip per 33 tasks (12 % more tasks/s than 8 in
bench/profile_worker.py)."""
SETTLE_BATCH = 64
"""Most outcomes written in one round trip while fast tasks run back to back."""
REDIS_BACKOFF = (0.5, 5.0)
"""First and longest wait between attempts while Redis is unreachable."""
AVERAGE_WEIGHT = 0.2
"""Weight of the newest run time in the inline pool's moving average: a few slow tasks
turn prefetching off, one does not."""


@dataclass
class _Finished:
    outcome: Outcome
    duration: float


class _Wake:
    pass


_WAKE = _Wake()

# What a signal handler tells the relay thread (taskfleet.worker.Worker._relay_signals).
_DRAINING, _FORCED, _ORPHANED = 1, 2, 3
Notice = _Finished | _Wake
"""What the loop thread is told: a task finished, or there may be work."""


class Metrics:
    """Hooks a metrics exporter implements; the default records nothing."""

    def started(self, task: str) -> None: ...

    def finished(self, task: str, outcome: Outcome, duration: float) -> None: ...


class AdaptivePrefetch:
    """The inline pool's prefetch: hold several tasks only while tasks are fast.

    A worker that prefetches slow tasks keeps them waiting behind the one it
    runs (Celery's prefetch trap), so the buffer exists only while the average
    run time is under FAST_TASK_SECONDS, and is given back to the queue when
    the current task runs past GIVE_BACK_AFTER_SECONDS.
    """

    def __init__(self, size: int = PREFETCH) -> None:
        self.size = size
        self.buffer: deque[Delivery] = deque()
        """Leased, not started."""
        self.average_seconds: float | None = None
        self.current_started: float | None = None

    @property
    def fast(self) -> bool:
        return self.average_seconds is not None and self.average_seconds < FAST_TASK_SECONDS

    def capacity(self) -> int:
        """Tasks to hold at once: the one that runs, plus the buffer while tasks are fast."""
        return 1 + (self.size if self.fast else 0)

    def task_started(self) -> None:
        self.current_started = time.monotonic()

    def task_finished(self, duration: float) -> None:
        self.current_started = None
        avg = self.average_seconds
        self.average_seconds = duration if avg is None else \
            (1 - AVERAGE_WEIGHT) * avg + AVERAGE_WEIGHT * duration

    def should_give_back(self) -> bool:
        """True while tasks wait in the buffer behind one that has run too long."""
        started = self.current_started
        return bool(self.buffer) and started is not None and \
            time.monotonic() - started >= GIVE_BACK_AFTER_SECONDS


class Worker:
    """Serves ``settings.queues`` of ``app`` until drained.

    The loop thread fetches (take and lease in one script), runs or hands out
    tasks, and settles their outcomes in batches with the next fetch; the
    keeper thread extends leases and publishes the heartbeat; the waker turns
    queue wake-ups into notices so an idle worker answers at once.
    """

    def __init__(self, app: App, settings: WorkerSettings, metrics: Metrics | None = None
                 ) -> None:
        self.app = app
        self.settings = settings
        self.queues = list(settings.queues)
        self.lease_ms = int((settings.task_lease_seconds or app.task_lease_seconds) * 1000)
        self.pod = os.environ.get("POD_NAME") or socket.gethostname()
        self.id = f"{self.pod}-{os.getpid()}-{os.urandom(3).hex()}"
        self.health_file = Path(settings.health_file) if settings.health_file else None
        self.metrics = metrics or Metrics()
        self.prefetch = AdaptivePrefetch()
        self.notices: queue_mod.Queue[Notice] = queue_mod.Queue()
        self.running: dict[str, Delivery] = {}
        """Leased by this worker: started, or waiting in the prefetch buffer."""
        self._lock = threading.Lock()  # guards running and the buffer against the keeper
        self.draining = False
        self.forced = False
        self._interrupted = False  # ShutdownInterrupt raised into the task once, never twice
        self._stop = threading.Event()
        self._beat_now = threading.Event()  # asks the keeper for a heartbeat now
        self._published_busy = False
        self._inline_busy = False  # the main thread runs a task body: a forced stop interrupts it
        self._signal_pipe: int | None = None
        """Write end of the pipe the signal handlers tell the relay thread through."""
        self._work: queue_mod.Queue[Delivery] = queue_mod.Queue()

    @property
    def inline(self) -> bool:
        return self.settings.pool == "inline"

    # -- public -----------------------------------------------------------------------

    def run(self) -> int:
        """Serve until drained; returns the process exit code."""
        read_end, self._signal_pipe = os.pipe()
        os.set_blocking(self._signal_pipe, False)  # a handler must never block
        self._start_thread(lambda: self._relay_signals(read_end), "signals")
        for sig in signals.STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        signal.signal(signals.FORCE_STOP, self._on_force_stop)
        signal.signal(signals.ORPHANED, self._on_orphaned)
        for signum in signals.take_held():  # a stop that came while the app loaded
            if signum == signals.FORCE_STOP:
                self._on_force_stop(signum, None)
            else:
                self._on_signal(signum, None)
        self._start_thread(self._keeper, "keeper")
        self._start_thread(self._waker, "waker")
        if not self.inline:
            for i in range(self.settings.concurrency):
                self._start_thread(self._executor, f"task-{i}")
        log.info("worker %s serving %s (pool=%s, concurrency=%d)", self.id,
                 ",".join(self.queues), self.settings.pool, self.settings.concurrency)
        try:
            self._loop()
        finally:
            self._stop.set()
            self._beat_now.set()
            pipe, self._signal_pipe = self._signal_pipe, None  # a late signal writes nowhere
            if pipe is not None:
                os.close(pipe)  # ends the relay thread
            with contextlib.suppress(redis.RedisError):
                heartbeat.withdraw(self.app.redis, self.id)
        log.info("worker %s stopped", self.id)
        return 0

    def stop(self, force: bool = False) -> None:
        """Ask the worker to drain (or, with force, to return running tasks and stop)."""
        self.draining = True
        self._beat_now.set()
        if force:
            self.forced = True
        self.notices.put(_WAKE)

    # -- the loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        pending: list[Outcome] = []
        backoff = REDIS_BACKOFF[0]
        while not self._shut_down(pending):
            if self._run_buffered(pending):
                continue
            try:
                took = self._settle_and_fetch(pending)
            except redis.RedisError as exc:
                # A refused command (a script error, NOPERM, OOM) is not a lost connection;
                # say which, so the log points at the fix.
                problem = "redis refused a command" if isinstance(exc, redis.ResponseError) \
                    else "redis unreachable"
                log.error("%s (%s); retrying in %.1fs", problem, exc, backoff)
                self._collect(pending, self._wait(backoff))
                backoff = min(backoff * 2, REDIS_BACKOFF[1])
                continue
            backoff = REDIS_BACKOFF[0]
            self._note_busy()
            if not took and not self.prefetch.buffer:  # nothing in hand: wait for news
                self._collect(pending, self._wait(IDLE_WAIT_SECONDS))
                self._note_busy()

    def _shut_down(self, pending: list[Outcome]) -> bool:
        """Return what a drain or a forced stop gives back; True once nothing runs."""
        if self.forced:
            with self._lock:
                pending.extend(Return(d) for d in self.running.values())
                self.running.clear()
                self.prefetch.buffer.clear()
        if not self.draining:
            return False
        pending.extend(Return(d) for d in self._take_buffer())
        if self.running:
            return False
        self._settle_until_done(pending)
        return True

    def _run_buffered(self, pending: list[Outcome]) -> bool:
        """Inline pool: run the next prefetched task. True to run the next one before
        settling (fast tasks settle together, at most a few ms late; slow ones at once)."""
        if not self.inline:
            return False
        with self._lock:
            delivery = self.prefetch.buffer.popleft() if self.prefetch.buffer else None
        if delivery is None:
            return False
        self.prefetch.task_started()
        done = self._execute(delivery, interruptible=True)
        self.prefetch.task_finished(done.duration)
        self._collect(pending, [done])
        return bool(self.prefetch.buffer) and self.prefetch.fast and \
            len(pending) < SETTLE_BATCH

    def _settle_and_fetch(self, pending: list[Outcome]) -> bool:
        """Write finished outcomes and take new tasks; True when tasks were taken."""
        capacity = self.prefetch.capacity() if self.inline else self.settings.concurrency
        free = 0 if self.draining else capacity - len(self.running)
        broker = self.app.broker
        if free <= 0:
            if pending:
                broker.settle(pending)
                pending.clear()
            return False
        deliveries: list[Delivery] = []
        for i, name in enumerate(self.queues):
            if i == 0:  # the settle rides with the first fetch: one round trip
                deliveries = broker.settle(pending, fetch=(name, free, self.lease_ms))
                pending.clear()
            else:
                deliveries = broker.fetch(name, free, self.lease_ms)
            if deliveries:
                break
        for d in deliveries:
            self._hand_out(d)
        return bool(deliveries)

    def _hand_out(self, delivery: Delivery) -> None:
        with self._lock:
            self.running[delivery.id] = delivery
            if self.inline:
                self.prefetch.buffer.append(delivery)
                return
        self._work.put(delivery)

    def _take_buffer(self) -> list[Delivery]:
        """Prefetched tasks out of this worker's hands (they have not started)."""
        with self._lock:
            taken = list(self.prefetch.buffer)
            self.prefetch.buffer.clear()
            for d in taken:
                self.running.pop(d.id, None)
        return taken

    def _give_back_if_stuck(self) -> None:
        if not self.prefetch.should_give_back():
            return
        taken = self._take_buffer()
        if taken:
            log.info("task running long: %d prefetched task(s) back to the queue", len(taken))
            self.app.broker.settle([Return(d) for d in taken])

    def _execute(self, delivery: Delivery, interruptible: bool = False) -> _Finished:
        """Run one task; ``interruptible`` (the inline pool's main thread) lets a forced
        stop raise ShutdownInterrupt into it."""
        started = time.monotonic()
        name = task_name(delivery, self.app.broker_settings.max_message_bytes)
        self.metrics.started(name)
        outcome: Outcome
        try:
            # Inside the try on both ends: wherever the interrupt lands, it is caught here.
            self._inline_busy = interruptible
            outcome = run(self.app, delivery)
            self._inline_busy = False
        except ShutdownInterrupt:
            self._inline_busy = False
            outcome = Return(delivery)
        duration = time.monotonic() - started
        self.metrics.finished(name, outcome, duration)
        return _Finished(outcome, duration)

    def _collect(self, pending: list[Outcome], notices: list[Notice]) -> None:
        for notice in notices:
            if isinstance(notice, _Finished):
                with self._lock:
                    # A task returned by a forced shutdown may still finish; its
                    # outcome no longer belongs to this worker.
                    if self.running.pop(notice.outcome.delivery.id, None) is None:
                        continue
                pending.append(notice.outcome)

    def _wait(self, timeout: float) -> list[Notice]:
        """Block for the next notice (a finished task, a wake-up), then take all queued."""
        notices: list[Notice] = []
        try:
            notices.append(self.notices.get(timeout=timeout))
        except queue_mod.Empty:
            return notices
        while True:
            try:
                notices.append(self.notices.get_nowait())
            except queue_mod.Empty:
                return notices

    def _note_busy(self) -> None:
        """Publish idle <-> busy changes at once (not every task): the operator removes
        idle pods first, so it must not see a busy pod as idle for a heartbeat period."""
        busy = bool(self.running)
        if busy != self._published_busy:
            self._published_busy = busy
            self._beat_now.set()

    def _settle_until_done(self, pending: list[Outcome]) -> None:
        """Final settle; keeps trying while Redis is away, so nothing is lost on the way out."""
        deadline = time.monotonic() + 30.0
        while pending:
            try:
                self.app.broker.settle(pending)
                pending.clear()
            except redis.RedisError as exc:
                if time.monotonic() > deadline:
                    log.error("could not settle %d tasks before exit (%s); their leases will "
                              "expire and they will run again", len(pending), exc)
                    return
                time.sleep(0.5)

    # -- threads ----------------------------------------------------------------------

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        threading.Thread(target=target, name=f"taskfleet-{name}", daemon=True).start()

    def _executor(self) -> None:
        while True:
            delivery = self._work.get()
            self.notices.put(self._execute(delivery))

    def _keeper(self) -> None:
        """Extends leases of running tasks and publishes the heartbeat, every lease/3;
        gives prefetched tasks back when the current one runs long."""
        interval = min(self.lease_ms / 3000.0, heartbeat.STALE_AFTER_SECONDS / 3)
        client = self.app.redis
        last_beat = 0.0
        while not self._stop.is_set():
            try:
                self._give_back_if_stuck()
            except redis.RedisError as exc:
                log.warning("could not give prefetched tasks back: %s", exc)
            if not self._beat_now.is_set() and time.monotonic() - last_beat < interval:
                self._beat_now.wait(0.5)
                continue
            self._beat_now.clear()
            last_beat = time.monotonic()
            try:
                with self._lock:
                    by_queue: dict[str, list[str]] = {}
                    for d in self.running.values():
                        by_queue.setdefault(d.queue, []).append(d.id)
                    busy = len(self.running) - len(self.prefetch.buffer)
                    waiting = {d.id for d in self.prefetch.buffer}
                    current = tuple(f"{d.message.task if d.message else '?'} {d.id}"
                                    for d in self.running.values() if d.id not in waiting)
                for q, ids in by_queue.items():
                    self.app.broker.extend(q, ids, self.lease_ms)
                heartbeat.publish(client, heartbeat.WorkerInfo(
                    id=self.id, pod=self.pod, queues=self.queues, busy=busy,
                    concurrency=self.settings.concurrency, last_seen=time.time(),
                    current=current))
                if self.health_file is not None:
                    self.health_file.touch()
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)
            except OSError as exc:
                log.warning("health file %s: %s", self.health_file, exc)

    def _waker(self) -> None:
        """Turns 'queue no longer empty' notifications into loop wake-ups; a (re)made
        subscription wakes the loop too (what was published while it was down is lost)."""
        channels = [keys.QueueKeys(q).wake_channel for q in self.queues]
        hold_subscription(self.app.redis, lambda pubsub: pubsub.subscribe(*channels),
                          lambda message: self.notices.put(_WAKE), self._stop,
                          what="queue wake-ups", on_subscribed=lambda: self.notices.put(_WAKE))

    # -- signals ----------------------------------------------------------------------
    #
    # A handler runs in the main thread between two of its bytecodes, also while that
    # thread holds a lock that is not reentrant (an Event's, the notices queue's). So the
    # handlers only set flags, raise ShutdownInterrupt into an inline task, and write one
    # event to a pipe; the relay thread does what takes a lock (logging, waking the loop
    # and the keeper, the drain timer). A handler that woke the loop itself deadlocked
    # the worker when the signal came while the loop was inside Event.set.

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.draining:
            self.draining = True
            self._tell_relay(_DRAINING, signum)
        elif not self.settings.supervised:  # a supervised child gets each stop twice
            self._on_force_stop(signum, frame)

    def _on_force_stop(self, signum: int, frame: FrameType | None) -> None:
        self._force(_FORCED, signum)

    def _on_orphaned(self, signum: int, frame: FrameType | None) -> None:
        self._force(_ORPHANED, signum)

    def _force(self, event: int, signum: int) -> None:
        if not self.forced:
            self.draining = self.forced = True
            self._tell_relay(event, signum)
        if self._inline_busy and not self._interrupted:
            self._interrupted = True
            raise ShutdownInterrupt()

    def _tell_relay(self, event: int, signum: int) -> None:
        if self._signal_pipe is None:
            return
        with contextlib.suppress(OSError):  # full (the relay is behind) or closed
            os.write(self._signal_pipe, bytes((event, signum)))  # atomic: under PIPE_BUF

    def _relay_signals(self, read_end: int) -> None:
        """Acts on what the handlers told, outside of them; ends when the pipe closes."""
        unread = b""
        try:
            while data := os.read(read_end, 64):
                unread += data
                while len(unread) >= 2:
                    self._on_stop_event(unread[0], unread[1])
                    unread = unread[2:]
        finally:
            os.close(read_end)

    def _on_stop_event(self, event: int, signum: int) -> None:
        if event == _DRAINING:
            log.info("signal %d: draining (%d running, up to %.0fs)", signum,
                     len(self.running), self.settings.drain_timeout)
            timer = threading.Timer(self.settings.drain_timeout, self._drain_expired)
            timer.daemon = True
            timer.start()
        elif event == _ORPHANED:
            log.warning("the pool's supervisor is gone: returning %d task(s) to their queues "
                        "and exiting", len(self.running))
        else:
            log.info("signal %d %s: returning running tasks to their queues", signum,
                     "again" if signum in signals.STOP_SIGNALS else "(stop now)")
        self._beat_now.set()
        self.notices.put(_WAKE)

    def _drain_expired(self) -> None:
        if self.running:
            log.info("drain window of %.0fs over: returning running tasks",
                     self.settings.drain_timeout)
            os.kill(os.getpid(), signals.FORCE_STOP)  # the main thread runs the handler
