"""A phase whose producer sends at a steady pace while its pods run and one fault hits:
the broker's crash, its pause, a pod's partition."""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.faults.ledger import Ledger
from bench.faults.plan import BURST_FRACTION, CONCURRENCY, Plan
from bench.faults.pods import Fleet
from bench.faults.traffic import (
    Sent,
    dead_letters,
    in_flight,
    random_sleeps,
    rounded,
    send_paced,
    tally,
    wait_drained,
)
from taskfleet import App
from testenv.redis_server import RedisServer
from testenv.waiting import WaitTimedOut, wait_for


@dataclass
class PacedRun:
    """The pods, the producer and the figures of one paced phase."""

    phase: str
    plan: Plan
    rng: random.Random
    logs: Path
    broker: RedisServer
    ledger_server: RedisServer
    pods: int
    window_seconds: float
    queue: str = "chaos"
    sent: Sent = field(default_factory=Sent)
    started: float = 0.0

    def __post_init__(self) -> None:
        self.app = App(self.broker.url)
        self.client = redis.Redis.from_url(self.broker.url, decode_responses=True)
        self.ledger = Ledger(self.ledger_server.url)
        self.fleet = Fleet(self.phase, self.queue, self.broker.url, self.ledger_server.url,
                           self.logs)
        self.sleeps = random_sleeps(self.rng, self.plan.paced_tasks)
        burst = int(BURST_FRACTION * len(self.sleeps))
        self.producer = threading.Thread(target=send_paced, daemon=True, args=(
            self.app, self.phase, self.queue, self.sleeps, burst, self.window_seconds,
            self.sent))

    def start(self) -> None:
        for _ in range(self.pods):
            self.fleet.add()
        self.fleet.wait_serving(self.client)
        self.started = time.monotonic()
        self.producer.start()

    def when_busy(self, busy: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``busy`` holds (every worker has a task), so the fault finds tasks in
        flight; after ``timeout`` the fault goes ahead anyway, and the figures say so."""
        with contextlib.suppress(WaitTimedOut):
            wait_for("tasks in flight", busy, timeout, interval=0.01)

    def all_slots_busy(self) -> bool:
        return in_flight(self.client, self.queue) >= self.pods * CONCURRENCY

    def finish(self, fault_over: float) -> dict[str, Any]:
        """Producer done, backlog drained, pods scaled to zero: the figures."""
        self.producer.join()
        drained = wait_drained(self.client, self.queue)
        for pod in self.fleet.live:
            pod.children()
        executions = self.ledger.executions(self.phase)
        self.fleet.scale_to_zero()
        sigterms = self.fleet.sigterm_outcomes()
        active = pods_active_after(executions, self.fleet, fault_over)
        result = tally(Counter(i for i, _, _ in executions), self.sent, self.plan.paced_tasks)
        result.update({
            "pods": self.pods, "sigterms": sigterms,
            "sigterm_exit_codes": [s["exit_code"] for s in sigterms],
            "tasks_started_per_pod_after_the_fault": active,
            "pods_resumed": all(n > 0 for n in active.values()),
            "dead_lettered": dead_letters(self.client, self.queue),
            "drained": drained is not None,
            "drain_after_last_fault_s": rounded(drained, fault_over),
            "producer_done_after_fault_s": round(self.sent.finished_at - fault_over, 2),
            "drain_after_last_send_s": rounded(drained, self.sent.finished_at),
            "seconds": round(time.monotonic() - self.started, 1)})
        return result


def pods_active_after(executions: Sequence[tuple[int, int, float]], fleet: Fleet,
                      since_monotonic: float) -> dict[str, int]:
    """Tasks each pod started after a moment: a pod at 0 stopped taking work."""
    since = time.time() - (time.monotonic() - since_monotonic)
    owner = fleet.pids()
    counts = {pod.name: 0 for pod in fleet.pods}
    for _, pid, at in executions:
        if at >= since and pid in owner:
            counts[owner[pid]] += 1
    return counts
