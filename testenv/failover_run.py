"""A Sentinel failover under load: producers sending, workers running, the master killed.

Shared by tests/integration/test_failover.py (which asserts nothing is lost with
``replica_acks``) and bench/failover.py (which reports the figures of both settings).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from taskfleet import App, keys, live_workers
from taskfleet.errors import TaskfleetError
from taskfleet.schedule import Schedule, Scheduler
from taskfleet_operator.model import RedisRef, TaskQueue
from taskfleet_operator.observe import RedisDirectory, read_queues

from .processes import WorkerProcess
from .sentinel_group import SentinelGroup
from .waiting import wait_for

SAMPLE = "tests.integration.apps.sample:app"
QUEUE = "failover"
PROBE_SECONDS = 0.05
"""How often the scheduler and operator probes try Redis."""


@dataclass
class FailoverFigures:
    replica_acks: int
    tasks_acknowledged: int = 0
    """Enqueues whose send_task returned: the producer was told they were taken."""
    send_errors: int = 0
    done: int = 0
    lost: int = 0
    """Acknowledged, yet neither done nor waiting anywhere after the run."""
    producer_without_broker_seconds: float = 0.0
    """From the first failed send to the next one that succeeded."""
    workers_without_broker_seconds: float = 0.0
    """Longest gap between two finished tasks across the kill."""
    beat_without_broker_seconds: float = 0.0
    """Longest run of failed scheduler passes (every 50 ms)."""
    operator_without_broker_seconds: float = 0.0
    """Longest run of failed queue reads by the operator's observer (every 50 ms)."""
    failover_seconds: float = 0.0
    """From the kill until the sentinels agreed on a new master."""
    send_seconds: float = 0.0
    send_rate_target: float = 0.0
    sends_per_second: float = 0.0
    lost_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["lost_ids"] = d["lost_ids"][:20]
        return d


class Poller(threading.Thread):
    """Calls ``probe`` every PROBE_SECONDS until stopped; remembers the longest run of failures
    (a probe returns False or raises a Redis error)."""

    def __init__(self, probe: Callable[[], bool]) -> None:
        super().__init__(daemon=True)
        self.probe = probe
        self.stop = threading.Event()
        self.longest_outage = 0.0

    def run(self) -> None:
        failing_since: float | None = None
        while not self.stop.wait(PROBE_SECONDS):
            try:
                ok = self.probe()
            except (redis.RedisError, OSError):
                ok = False
            if not ok:
                failing_since = failing_since or time.monotonic()
            elif failing_since is not None:
                self.longest_outage = max(self.longest_outage, time.monotonic() - failing_since)
                failing_since = None


def beat_poller(url: str) -> Poller:
    """A scheduler's pass, as `taskfleet beat` makes it, on its own client."""
    scheduler = Scheduler(App(url).broker)
    schedule = Schedule.from_dict({"name": "probe", "cron": "0 0 1 1 *", "task": "sample.add"},
                                  queue="beat-probe")
    return Poller(lambda: scheduler.run_due(schedule, datetime.now(UTC)) is not None)


def operator_poller(url: str) -> Poller:
    """The operator's observation of a queue (observe.read_queues), on its own client."""
    directory = RedisDirectory(lambda namespace, ref: "")
    queue = TaskQueue("bench", "probe", "", 1, QUEUE, RedisRef(url=url))
    return Poller(lambda: read_queues(directory, [queue])[queue.key].stats is not None)


class Producer(threading.Thread):
    """Sends ``total`` tasks one by one, retrying through errors; remembers what was taken."""

    def __init__(self, app: App, total: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.app = app
        self.total = total
        self.rate = rate
        """Sends per second at most: a steady load the workers keep up with."""
        self.acknowledged: list[str] = []
        self.errors = 0
        self.longest_outage = 0.0
        self.started_at = self.finished_at = 0.0

    def run(self) -> None:
        self.started_at = time.monotonic()
        failing_since: float | None = None
        i = 0
        while i < self.total:
            try:
                result = self.app.send_task("sample.add", [i, 0], queue=QUEUE)
            except (redis.RedisError, TaskfleetError, OSError):
                self.errors += 1
                failing_since = failing_since or time.monotonic()
                time.sleep(0.05)
                continue
            if failing_since is not None:
                self.longest_outage = max(self.longest_outage, time.monotonic() - failing_since)
                failing_since = None
            self.acknowledged.append(result.id)
            i += 1
            ahead = self.started_at + i / self.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        self.finished_at = time.monotonic()


def run_failover(group: SentinelGroup, tasks: int, replica_acks: int, log_dir: Path,
                 workers: int = 2, concurrency: int = 4, kill_at: float = 0.3,
                 rate: float = 500.0) -> FailoverFigures:
    """Send ``tasks`` tasks while ``workers`` worker processes run them; kill the master
    once ``kill_at`` of them are sent; wait until every acknowledged task is done or
    provably gone, and count."""
    url = group.url
    figures = FailoverFigures(replica_acks=replica_acks)
    app = App(url, replica_acks=replica_acks)
    started = [WorkerProcess(url, SAMPLE, [QUEUE], concurrency=concurrency,
                             extra=["--task-lease-seconds", "5"],
                             log=log_dir / f"worker-{i}.log").start() for i in range(workers)]
    try:
        wait_for("the workers serving", lambda: len(live_workers(app.redis)) == workers, 60)
        pollers = [beat_poller(url), operator_poller(url)]
        for p in pollers:
            p.start()
        producer = Producer(app, tasks, rate)
        producer.start()
        wait_for("a share of the tasks sent", lambda: len(producer.acknowledged) >=
                 tasks * kill_at, 120)
        killed_at = time.monotonic()
        old = group.kill_master()
        group.wait_failed_over(old)
        figures.failover_seconds = time.monotonic() - killed_at
        producer.join(600)
        assert not producer.is_alive(), "the producer did not finish"
        for p in pollers:
            p.stop.set()
            p.join(30)
        figures.beat_without_broker_seconds = pollers[0].longest_outage
        figures.operator_without_broker_seconds = pollers[1].longest_outage
        figures.tasks_acknowledged = len(producer.acknowledged)
        figures.send_errors = producer.errors
        figures.producer_without_broker_seconds = producer.longest_outage
        figures.send_seconds = producer.finished_at - producer.started_at
        figures.sends_per_second = tasks / figures.send_seconds
        figures.send_rate_target = rate
        client = app.redis
        qk = keys.QueueKeys(QUEUE)

        def settled() -> bool:
            # Nothing ready, delayed or leased is left: the rest can only be done or lost.
            stats = client.eval(
                "return redis.call('HLEN', KEYS[1])", 1, qk.messages)  # type: ignore[no-untyped-call]
            return int(stats) == 0

        wait_for("every task taken out of the queue", settled, 300)
        done_at: list[float] = []
        pipe = client.pipeline(transaction=False)
        for task_id in producer.acknowledged:
            pipe.lindex(keys.result_key(task_id), 0)
        for task_id, raw in zip(producer.acknowledged, pipe.execute(), strict=True):
            if raw is None:
                figures.lost_ids.append(task_id)
            else:
                done_at.append(float(json.loads(raw)["date_done"]))
        figures.done = len(done_at)
        figures.lost = len(figures.lost_ids)
        done_at.sort()
        figures.workers_without_broker_seconds = max(
            (b - a for a, b in itertools.pairwise(done_at)), default=0.0)
        return figures
    finally:
        for w in started:
            w.stop()
