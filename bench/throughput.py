"""No-op task throughput of taskfleet and its peers, on one local redis-server.

For each system and concurrency (1 and 4): start the workers, let them warm
up, then enqueue N no-op tasks and time until every one is done, using each
system's own view of "done" (queue empty and nothing in flight). Also times
batch enqueue from one process. The raw ceiling runs taskfleet's Redis
operations per task in a bare redis-py loop. Ratios are what to quote; the
absolute figures depend on the machine.

    python bench/throughput.py [--json PATH] [--tasks N] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench.report import write_json
from taskfleet import App, keys, queue_stats, scripts
from taskfleet.message import new_task_id
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]

QUEUE = "bench"


def _env(url: str) -> dict[str, str]:
    return {**os.environ, "BENCH_REDIS_URL": url, "TASKFLEET_BROKER_URL": url,
            "PYTHONPATH": str(ROOT)}


def _wait(done: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark did not finish in time")
        time.sleep(0.005)


class System:
    name = ""
    tasks = 0

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, decode_responses=True)

    def worker_argv(self, concurrency: int) -> list[list[str]]:
        raise NotImplementedError

    def enqueue(self, n: int) -> None:
        raise NotImplementedError

    def drained(self) -> bool:
        raise NotImplementedError


class Taskfleet(System):
    name = "taskfleet"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.app = App(url)

    def worker_argv(self, concurrency: int) -> list[list[str]]:
        pool = "inline" if concurrency == 1 else "processes"
        return [[sys.executable, "-m", "taskfleet", "--broker", self.url, "--log-level",
                 "WARNING", "worker", "--app", "bench.peers.taskfleet_app:app", "--queues",
                 QUEUE, "--concurrency", str(concurrency), "--pool", pool]]

    def enqueue(self, n: int) -> None:
        self.app.send_many("bench.noop", [()] * n, queue=QUEUE)

    def drained(self) -> bool:
        s = queue_stats(self.client, [QUEUE])[QUEUE]
        return s.ready == 0 and s.in_flight == 0


class Raw(Taskfleet):
    name = "raw_redis"

    def worker_argv(self, concurrency: int) -> list[list[str]]:
        return [[sys.executable, "-m", "bench.peers.raw_worker", self.url, QUEUE]] * concurrency

    def enqueue(self, n: int) -> None:
        script = self.client.register_script(scripts.ENQUEUE)
        qk = keys.QueueKeys(QUEUE)
        pipe = self.client.pipeline(transaction=False)
        for start in range(0, n, 500):
            argv: list[str] = [qk.wake_channel]
            for _ in range(min(500, n - start)):
                tid = new_task_id()
                argv += [tid, "0", '0{"id":"' + tid + '"}', "0"]
            script(keys=qk.all_keys(), args=argv, client=pipe)
        pipe.execute()


class Celery(System):
    name = "celery"

    def worker_argv(self, concurrency: int) -> list[list[str]]:
        pool = ["-P", "solo"] if concurrency == 1 else ["-P", "prefork", "-c", str(concurrency)]
        return [[sys.executable, "-m", "celery", "-A", "bench.peers.celery_app", "worker",
                 "-Q", QUEUE, "-l", "WARNING", *pool]]

    def enqueue(self, n: int) -> None:
        os.environ["BENCH_REDIS_URL"] = self.url
        from bench.peers.celery_app import noop

        for _ in range(n):
            noop.apply_async(queue=QUEUE)

    def drained(self) -> bool:
        return int(self.client.llen(QUEUE)) == 0 and int(self.client.hlen("unacked")) == 0


class RQ(System):
    name = "rq"

    def worker_argv(self, concurrency: int) -> list[list[str]]:
        return [[sys.executable, "-m", "rq.cli", "worker", "--url", self.url, "-w",
                 "rq.worker.SimpleWorker", "-q", QUEUE]] * concurrency

    def _queue(self) -> Any:
        from rq import Queue

        return Queue(QUEUE, connection=redis.Redis.from_url(self.url))

    def enqueue(self, n: int) -> None:
        from rq import Queue

        from bench.peers.rq_tasks import noop

        q = self._queue()
        q.enqueue_many([Queue.prepare_data(noop) for _ in range(n)])

    def drained(self) -> bool:
        from rq.registry import StartedJobRegistry

        q = self._queue()
        return bool(q.count == 0 and StartedJobRegistry(queue=q).count == 0)


def run_workers(system: System, concurrency: int, n: int) -> float:
    """Tasks per second, workers warm, enqueue included in the time."""
    system.client.flushall()
    procs = [subprocess.Popen(argv, cwd=ROOT, env=_env(system.url), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
             for argv in system.worker_argv(concurrency)]
    try:
        system.enqueue(20)  # warm-up: workers connected, code imported
        _wait(system.drained, 60)
        time.sleep(0.2)
        start = time.perf_counter()
        system.enqueue(n)
        _wait(system.drained, 600)
        return n / (time.perf_counter() - start)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


def enqueue_rate(system: System, n: int) -> float:
    system.client.flushall()
    start = time.perf_counter()
    system.enqueue(n)
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    n = 300 if args.quick else args.tasks
    server = RedisServer().start()
    results: dict[str, Any] = {"systems": {}, "tasks": n,
                               "machine": {"cpus": os.cpu_count(),
                                           "python": platform.python_version()}}
    try:
        for cls in (Taskfleet, Celery, RQ, Raw):
            system = cls(server.url)
            row: dict[str, Any] = {"by_concurrency": {}}
            for c in (1, 4):
                row["by_concurrency"][str(c)] = round(run_workers(system, c, n), 1)
                print(f"  {system.name:<10} c={c}: {row['by_concurrency'][str(c)]:>9.1f} tasks/s",
                      flush=True)
            row["tasks_per_second"] = row["by_concurrency"]["1"]
            batch = 2000 if args.quick else (50_000 if cls in (Taskfleet, Raw) else 10_000)
            row["enqueue_per_second"] = round(enqueue_rate(system, batch), 1)
            results["systems"][system.name] = row
    finally:
        server.close()

    s = results["systems"]
    tf = s["taskfleet"]["by_concurrency"]
    results["ratios"] = {
        f"taskfleet_vs_{peer}_c{c}": round(tf[c] / s[name]["by_concurrency"][c], 2)
        for peer, name in (("celery", "celery"), ("rq", "rq"), ("raw", "raw_redis"))
        for c in ("1", "4")}
    results["ratios"]["enqueue_vs_raw"] = round(
        s["taskfleet"]["enqueue_per_second"] / s["raw_redis"]["enqueue_per_second"], 2)
    print()
    print(f"{'system':<12}{'c=1 tasks/s':>14}{'c=4 tasks/s':>14}{'enqueue/s':>12}")
    for name, row in s.items():
        print(f"{name:<12}{row['by_concurrency']['1']:>14.0f}{row['by_concurrency']['4']:>14.0f}"
              f"{row['enqueue_per_second']:>12.0f}")
    print()
    for k, v in results["ratios"].items():
        print(f"{k:<28}{v:>6.2f}x")
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    # SIGTERM (a CI timeout, kill) still runs the cleanup in main's finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    raise SystemExit(main())
