"""The producer's side of a phase and the counting after it: what was sent, what ran,
what was lost and what ran twice."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from bench.faults.plan import DRAIN_TIMEOUT_SECONDS, TASK, TASK_MS
from taskfleet import App, queue_stats
from testenv.waiting import WaitTimedOut, wait_for


@dataclass
class Sent:
    """What a producer knows about its sends."""

    acknowledged: set[int] = field(default_factory=set)
    """Indices whose send Redis acknowledged."""
    failed_attempts: int = 0
    resent: set[int] = field(default_factory=set)
    """Indices sent again after a failed attempt (that attempt may have landed)."""
    not_sent: set[int] = field(default_factory=set)
    """Indices given up on: a failed send is not a lost task."""
    finished_at: float = 0.0


def random_sleeps(rng: random.Random, n: int) -> list[int]:
    return [rng.randint(*TASK_MS) for _ in range(n)]


def task_arguments(phase: str, indices: Sequence[int], sleeps: Sequence[int]
                   ) -> list[tuple[str, int, int]]:
    return [(phase, i, sleeps[i]) for i in indices]


def send_paced(app: App, phase: str, queue: str, sleeps: Sequence[int], burst: int,
               window: float, sent: Sent, batch: int = 10) -> None:
    """Send ``burst`` tasks at once (a backlog, so every worker is busy when the fault
    hits), then the rest in small batches spread over ``window`` seconds, as a web tier
    would. A batch whose send fails on a connection error is sent again, as a real producer
    would, with new task ids: a producer cannot know whether the failed attempt landed."""
    n = len(sleeps)
    batches = [list(range(burst))] + [list(range(i, min(i + batch, n)))
                                      for i in range(burst, n, batch)]
    start = time.monotonic()
    give_up = start + window + 60.0
    for k, indices in enumerate(batches):
        delay = start + window * k / len(batches) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        while True:
            try:
                app.send_many(TASK, task_arguments(phase, indices, sleeps), queue=queue)
                sent.acknowledged.update(indices)
                break
            except (redis.ConnectionError, redis.TimeoutError):
                sent.failed_attempts += 1
                if time.monotonic() > give_up:
                    sent.not_sent.update(indices)
                    break
                sent.resent.update(indices)
                time.sleep(0.2)
    sent.finished_at = time.monotonic()


def queue_empty(client: redis.Redis, queue: str) -> bool:
    """Nothing ready, leased or delayed; False while the broker does not answer."""
    try:
        s = queue_stats(client, [queue])[queue]
    except redis.RedisError:
        return False
    return s.ready == 0 and s.in_flight == 0 and s.delayed == 0


def wait_drained(client: redis.Redis, queue: str, timeout: float = DRAIN_TIMEOUT_SECONDS
                 ) -> float | None:
    """When the backlog was gone (monotonic), or None if it was not within ``timeout``."""
    try:
        wait_for(f"queue {queue} drained", lambda: queue_empty(client, queue), timeout,
                 interval=0.05)
    except WaitTimedOut:
        return None
    return time.monotonic()


def in_flight(client: redis.Redis, queue: str) -> int:
    return queue_stats(client, [queue])[queue].in_flight


def dead_letters(client: redis.Redis, queue: str) -> int:
    return queue_stats(client, [queue])[queue].dead


def tally(runs: Counter[int], sent: Sent, tasks: int) -> dict[str, Any]:
    """Lost: acknowledged and never run. Duplicates: runs beyond the first."""
    lost = sorted(i for i in sent.acknowledged if runs[i] == 0)
    duplicates = sum(max(0, c - 1) for c in runs.values())
    resent_duplicates = sum(max(0, runs[i] - 1) for i in sent.resent)
    return {"tasks": tasks, "sent": len(sent.acknowledged), "not_sent": len(sent.not_sent),
            "failed_send_attempts": sent.failed_attempts,
            "runs": sum(runs.values()), "distinct_tasks_run": len(runs), "lost": len(lost),
            "lost_indices": lost[:50], "duplicates": duplicates,
            "duplicates_of_resent_tasks": resent_duplicates,
            "landed_despite_failed_send": sum(1 for i in sent.not_sent if runs[i] > 0)}


def rounded(end: float | None, start: float) -> float | None:
    return None if end is None else round(end - start, 2)
