"""The worker: takes tasks from queues in priority order and runs them.

One loop thread talks to Redis for taking and settling tasks; tasks run on a
small pool of daemon threads (``threads``) or in the loop thread itself
(``inline``, what each child of the processes pool uses). Two helper threads
keep leases and the heartbeat alive and turn queue wake-ups into events.

SIGTERM drains: no new tasks, running ones finish within ``drain_timeout``,
the rest go back to the front of their queue, exit code 0. A second SIGTERM
or the end of the drain window returns the running tasks at once.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Literal

import redis

from . import heartbeat, keys
from .app import App
from .broker import Delivery, Outcome, Return
from .execution import ShutdownInterrupt, run

log = logging.getLogger("taskfleet.worker")

PoolKind = Literal["threads", "inline"]
_WAIT_SECONDS = 1.0
"""Longest idle wait between fetches: the safety net for a missed wake-up."""
FAST_TASK_SECONDS = 0.005
"""Below this average run time the inline pool prefetches and settles in batches."""
GIVE_BACK_AFTER_SECONDS = 1.0
"""A task running this long sends the prefetched ones back to the queue for others."""
_SETTLE_BATCH = 64


@dataclass
class _Done:
    outcome: Outcome
    duration: float


class _Wake:
    pass


_WAKE = _Wake()
Event = _Done | _Wake


class Metrics:
    """Hooks a metrics exporter implements; the default records nothing."""

    def started(self, task: str) -> None: ...

    def finished(self, task: str, outcome: Outcome, duration: float) -> None: ...


class Worker:
    def __init__(self, app: App, queues: Sequence[str], *, concurrency: int = 1,
                 pool: PoolKind = "threads", drain_timeout: float = 25.0,
                 lease_seconds: float | None = None, pod: str | None = None,
                 health_file: str | None = None, metrics: Metrics | None = None,
                 install_signals: bool = True, prefetch: int = 8) -> None:
        if not queues:
            raise ValueError("a worker needs at least one queue (--queues a,b)")
        if concurrency < 1:
            raise ValueError(f"--concurrency must be >= 1, got {concurrency}")
        if pool == "inline" and concurrency != 1:
            raise ValueError("the inline pool runs one task at a time: use --concurrency 1")
        self.app = app
        self.queues = list(queues)
        self.concurrency = concurrency
        self.pool = pool
        self.drain_timeout = drain_timeout
        self.lease_ms = int((lease_seconds or app.lease_seconds) * 1000)
        self.pod = pod or os.environ.get("POD_NAME") or socket.gethostname()
        self.id = f"{self.pod}-{os.getpid()}-{os.urandom(3).hex()}"
        self.health_file = Path(health_file) if health_file else None
        self.metrics = metrics or Metrics()
        self.install_signals = install_signals
        self.prefetch = prefetch
        self.buffer: deque[Delivery] = deque()
        """Inline pool: leased, not started (adaptive prefetch; see _capacity)."""
        self._avg_seconds: float | None = None
        self._current_started: float | None = None

        self.events: queue_mod.Queue[Event] = queue_mod.Queue()
        self.running: dict[str, Delivery] = {}
        self._lock = threading.Lock()  # guards running against the keeper thread
        self.draining = False
        self.forced = False
        self._stop = threading.Event()
        self._beat_now = threading.Event()  # asks the keeper for a heartbeat now
        self._published_busy = False
        self._inline_busy = False
        self._work: queue_mod.Queue[Delivery] = queue_mod.Queue()
        self.last_redis_ok = time.monotonic()

    # -- public -----------------------------------------------------------------------

    def run(self) -> int:
        """Serve until drained; returns the process exit code."""
        if self.install_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        self._start_thread(self._keeper, "keeper")
        self._start_thread(self._waker, "waker")
        if self.pool == "threads":
            for i in range(self.concurrency):
                self._start_thread(self._executor, f"task-{i}")
        log.info("worker %s serving %s (pool=%s, concurrency=%d)", self.id,
                 ",".join(self.queues), self.pool, self.concurrency)
        try:
            self._loop()
        finally:
            self._stop.set()
            self._beat_now.set()
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
        self.events.put(_WAKE)

    # -- the loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        pending: list[Outcome] = []
        backoff = 0.5
        while True:
            if self.forced:
                with self._lock:
                    pending.extend(Return(d) for d in self.running.values())
                    self.running.clear()
                    self.buffer.clear()
            if self.draining:
                pending.extend(Return(d) for d in self._take_buffer())
            if self.draining and not self.running:
                self._settle_until_done(pending)
                return
            if self.pool == "inline":
                with self._lock:
                    delivery = self.buffer.popleft() if self.buffer else None
                if delivery is not None:
                    self._run_inline(delivery, pending)
                    # Fast tasks settle together, at most a few ms late; slow ones at once.
                    if self.buffer and self._fast() and len(pending) < _SETTLE_BATCH:
                        continue
            try:
                started = self._settle_and_fetch(pending)
                backoff = 0.5
            except redis.RedisError as exc:
                log.error("redis unreachable (%s); retrying in %.1fs", exc, backoff)
                self._wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._note_busy()
            if started or (self.pool == "inline" and self.buffer):
                continue  # work in hand: no waiting for a wake-up
            self._collect(pending, self._wait(_WAIT_SECONDS))
            self._note_busy()

    def _settle_and_fetch(self, pending: list[Outcome]) -> bool:
        """Write finished outcomes and take new tasks; True when tasks were started."""
        free = 0 if self.draining else self._capacity() - len(self.running)
        broker = self.app.broker
        if free <= 0:
            if pending:
                broker.settle(pending)
                pending.clear()
                self.last_redis_ok = time.monotonic()
            return False
        deliveries: list[Delivery] = []
        for i, name in enumerate(self.queues):
            if i == 0:
                deliveries = broker.settle(pending, fetch=(name, free, self.lease_ms))
                pending.clear()
            else:
                deliveries = broker.fetch(name, free, self.lease_ms)
            if deliveries:
                break
        self.last_redis_ok = time.monotonic()
        for d in deliveries:
            self._start(d, pending)
        return bool(deliveries)

    def _capacity(self) -> int:
        """Tasks to hold at once. The inline pool takes several only while its tasks are
        fast, so a long task never keeps others waiting behind it (Celery's prefetch trap)."""
        if self.pool == "threads":
            return self.concurrency
        return 1 + (self.prefetch if self._fast() else 0)

    def _fast(self) -> bool:
        return self._avg_seconds is not None and self._avg_seconds < FAST_TASK_SECONDS

    def _start(self, delivery: Delivery, pending: list[Outcome]) -> None:
        with self._lock:
            self.running[delivery.id] = delivery
            if self.pool == "inline":
                self.buffer.append(delivery)
                return
        self._work.put(delivery)

    def _run_inline(self, delivery: Delivery, pending: list[Outcome]) -> None:
        self._inline_busy = True
        self._current_started = time.monotonic()
        try:
            done = self._execute(delivery)
        finally:
            self._inline_busy = False
            self._current_started = None
        avg = self._avg_seconds
        self._avg_seconds = done.duration if avg is None else 0.8 * avg + 0.2 * done.duration
        self._collect(pending, [done])

    def _take_buffer(self) -> list[Delivery]:
        """Prefetched tasks out of this worker's hands (they have not started)."""
        with self._lock:
            taken = list(self.buffer)
            self.buffer.clear()
            for d in taken:
                self.running.pop(d.id, None)
        return taken

    def _give_back_if_stuck(self) -> None:
        started = self._current_started
        if not self.buffer or started is None:
            return
        if time.monotonic() - started < GIVE_BACK_AFTER_SECONDS:
            return
        taken = self._take_buffer()
        if taken:
            log.info("task running long: %d prefetched task(s) back to the queue", len(taken))
            self.app.broker.settle([Return(d) for d in taken])

    def _execute(self, delivery: Delivery) -> _Done:
        started = time.monotonic()
        name = delivery.message.task if delivery.message else "?"
        self.metrics.started(name)
        try:
            outcome = run(self.app, delivery)
        except ShutdownInterrupt:
            outcome = Return(delivery)
        duration = time.monotonic() - started
        task = delivery.message.task if delivery.message else name
        self.metrics.finished(task, outcome, duration)
        return _Done(outcome, duration)

    def _collect(self, pending: list[Outcome], events: list[Event]) -> None:
        for event in events:
            if isinstance(event, _Done):
                with self._lock:
                    # A task returned by a forced shutdown may still finish; its
                    # outcome no longer belongs to this worker.
                    if self.running.pop(event.outcome.delivery.id, None) is None:
                        continue
                pending.append(event.outcome)

    def _wait(self, timeout: float) -> list[Event]:
        """Block for the next event (a finished task, a wake-up), then take all queued."""
        events: list[Event] = []
        try:
            events.append(self.events.get(timeout=timeout))
        except queue_mod.Empty:
            return events
        while True:
            try:
                events.append(self.events.get_nowait())
            except queue_mod.Empty:
                return events

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
            self.events.put(self._execute(delivery))

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
                    busy = len(self.running) - len(self.buffer)
                for q, ids in by_queue.items():
                    self.app.broker.extend(q, ids, self.lease_ms)
                heartbeat.publish(client, heartbeat.WorkerInfo(
                    id=self.id, pod=self.pod, queues=self.queues, busy=busy,
                    concurrency=self.concurrency, last_seen=time.time()))
                self.last_redis_ok = time.monotonic()
                if self.health_file is not None:
                    self.health_file.touch()
            except redis.RedisError as exc:
                log.warning("heartbeat failed: %s", exc)
            except OSError as exc:
                log.warning("health file %s: %s", self.health_file, exc)

    def _waker(self) -> None:
        """Turns 'queue no longer empty' notifications into loop wake-ups."""
        channels = [keys.QueueKeys(q).wake_channel for q in self.queues]
        while not self._stop.is_set():
            pubsub = self.app.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(*channels)
                while not self._stop.is_set():
                    if pubsub.get_message(timeout=1.0) is not None:
                        self.events.put(_WAKE)
            except redis.RedisError:
                self._stop.wait(1.0)
            finally:
                with contextlib.suppress(redis.RedisError):
                    pubsub.close()

    # -- signals ----------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self.draining:
            log.info("signal %d: draining (%d running, up to %.0fs)", signum, len(self.running),
                     self.drain_timeout)
            self.stop()
            timer = threading.Timer(self.drain_timeout, self._drain_expired)
            timer.daemon = True
            timer.start()
            return
        log.info("signal %d again: returning running tasks to their queues", signum)
        self.stop(force=True)
        if self._inline_busy:
            raise ShutdownInterrupt()

    def _drain_expired(self) -> None:
        if self.running:
            log.info("drain window of %.0fs over: returning running tasks", self.drain_timeout)
            os.kill(os.getpid(), signal.SIGTERM)
