"""Task throughput of taskfleet and the Python task queues a user would pick instead,
on one local redis-server, every task body the same single Redis INCR.

Peers, each at the settings its own documentation gives for many short tasks
(see each bench/peers/*_app.py): Celery, RQ, Dramatiq, huey, taskiq (stream
broker), arq, SAQ and streaQ; taskfleet with its result stored (its default)
and without; and the raw ceiling, taskfleet's Redis work per task in a bare
redis-py loop. Each runs with one worker process and with one per core.

A run starts the workers, warms them up, then enqueues N tasks and times until
the shared counter says every body ran (bench/peers/body.py): the one measure
of "done" that means the same in every system. Enqueueing is inside the timed
window, with each system's fastest client call. Rounds are interleaved (every
system once, then again) so that a slow minute of the machine hits all of
them; the table gives the median and the range. Batch enqueue from one
process is timed apart. Ratios are what to quote; absolute figures depend on
the machine.

    python bench/throughput.py [--json PATH] [--tasks N] [--rounds R] [--quick]
                               [--only NAME,...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.peers import body
from bench.report import write_json
from taskfleet import App, keys, scripts
from taskfleet.message import new_task_id
from testenv.processes import ROOT, children_of, cpu_seconds
from testenv.redis_server import RedisServer
from testenv.waiting import wait_for

BIN = Path(sys.executable).parent
QUEUE = "bench"
WARM_UP = 20

AT_LEAST_ONCE = "at-least-once"
AT_MOST_ONCE = "at-most-once"


def _run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


class System:
    """One peer: how to start its workers, how to enqueue, what it guarantees."""

    name = ""
    guarantee = ""
    settings = ""
    """The settings used, as the table's footnote gives them."""

    def __init__(self, url: str) -> None:
        self.url = url

    def env(self) -> dict[str, str]:
        return {**os.environ, body.URL_ENV: self.url, "TASKFLEET_BROKER_URL": self.url,
                "PYTHONPATH": str(ROOT)}

    def worker_argv(self, processes: int) -> list[list[str]]:
        raise NotImplementedError

    def enqueue(self, n: int) -> None:
        raise NotImplementedError


class Taskfleet(System):
    name = "taskfleet"
    guarantee = AT_LEAST_ONCE
    settings = "one `taskfleet worker --pool inline` process each (defaults otherwise)"
    task = "bench.incr"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.app = App(url)

    def worker_argv(self, processes: int) -> list[list[str]]:
        return [[sys.executable, "-m", "taskfleet", "--broker", self.url, "--log-level",
                 "WARNING", "worker", "--app", "bench.peers.taskfleet_incr:app", "--queues",
                 QUEUE, "--pool", "inline"]] * processes

    def enqueue(self, n: int) -> None:
        self.app.send_many(self.task, [()] * n, queue=QUEUE)


class TaskfleetNoResult(Taskfleet):
    name = "taskfleet-noresult"
    settings = "as taskfleet, the task with `ignore_result=True`"
    task = "bench.incr_no_result"


class TaskfleetThreads(Taskfleet):
    name = "taskfleet-threads"
    settings = "`taskfleet worker --pool threads --concurrency 8` (Dramatiq's thread count), " \
        "results stored"

    def worker_argv(self, processes: int) -> list[list[str]]:
        return [[sys.executable, "-m", "taskfleet", "--broker", self.url, "--log-level",
                 "WARNING", "worker", "--app", "bench.peers.taskfleet_incr:app", "--queues",
                 QUEUE, "--pool", "threads", "--concurrency", "8"]] * processes


class Raw(Taskfleet):
    name = "raw-redis"
    settings = "taskfleet's Redis calls per task in a bare redis-py loop (the ceiling)"

    def worker_argv(self, processes: int) -> list[list[str]]:
        return [[sys.executable, "-m", "bench.peers.raw_worker", self.url, QUEUE]] * processes

    def enqueue(self, n: int) -> None:
        client = redis.Redis.from_url(self.url)
        script = client.register_script(scripts.ENQUEUE)
        qk = keys.QueueKeys(QUEUE)
        pipe = client.pipeline(transaction=False)
        for start in range(0, n, 500):
            argv: list[str] = [qk.wake_channel]
            for _ in range(min(500, n - start)):
                tid = new_task_id()
                argv += [tid, "0", '0{"id":"' + tid + '","task":"bench.incr"}', "0"]
            script(keys=qk.all_keys(), args=argv, client=pipe)
        pipe.execute()


class Celery(System):
    name = "celery"
    guarantee = AT_MOST_ONCE
    settings = ("`-P solo` for one process, `-P prefork -c N` for N; "
                "worker_prefetch_multiplier=64; acks_late off (the default)")

    def worker_argv(self, processes: int) -> list[list[str]]:
        pool = ["-P", "solo"] if processes == 1 else ["-P", "prefork", "-c", str(processes)]
        return [[sys.executable, "-m", "celery", "-A", "bench.peers.celery_app", "worker",
                 "-Q", QUEUE, "-l", "WARNING", "--without-gossip", "--without-mingle", *pool]]

    def enqueue(self, n: int) -> None:
        os.environ[body.URL_ENV] = self.url
        from bench.peers.celery_app import incr

        for _ in range(n):
            incr.apply_async(queue=QUEUE)


class RQ(System):
    name = "rq"
    guarantee = AT_MOST_ONCE
    settings = "`rq worker -w rq.worker.SimpleWorker` (no fork per job), one per process"

    def worker_argv(self, processes: int) -> list[list[str]]:
        return [[str(BIN / "rq"), "worker", "--url", self.url, "-w",
                 "rq.worker.SimpleWorker", "-q", QUEUE]] * processes

    def enqueue(self, n: int) -> None:
        from rq import Queue

        from bench.peers.rq_tasks import incr

        q = Queue(QUEUE, connection=redis.Redis.from_url(self.url))
        q.enqueue_many([Queue.prepare_data(incr) for _ in range(n)])


class Dramatiq(System):
    name = "dramatiq"
    guarantee = AT_LEAST_ONCE
    settings = "`dramatiq -p N` with its default 8 threads; dramatiq_queue_prefetch=64"

    def env(self) -> dict[str, str]:
        return {**super().env(), "dramatiq_queue_prefetch": "64"}

    def worker_argv(self, processes: int) -> list[list[str]]:
        return [[str(BIN / "dramatiq"), "bench.peers.dramatiq_app", "-p", str(processes),
                 "-Q", QUEUE]]

    def enqueue(self, n: int) -> None:
        os.environ[body.URL_ENV] = self.url
        from bench.peers.dramatiq_app import incr

        for _ in range(n):  # Dramatiq has no batch send
            incr.send()


class Huey(System):
    name = "huey"
    guarantee = AT_MOST_ONCE
    settings = "`huey_consumer -w 1 -k thread` for one process, `-w N -k process` for N"

    def worker_argv(self, processes: int) -> list[list[str]]:
        kind = ["-w", "1", "-k", "thread"] if processes == 1 else \
            ["-w", str(processes), "-k", "process"]
        return [[str(BIN / "huey_consumer"), "bench.peers.huey_app.huey", "-q", *kind]]

    def enqueue(self, n: int) -> None:
        os.environ[body.URL_ENV] = self.url
        from bench.peers.huey_app import incr

        for _ in range(n):
            incr()


class Taskiq(System):
    name = "taskiq"
    guarantee = AT_LEAST_ONCE
    settings = "RedisStreamBroker, `taskiq worker --workers N` (100 async tasks each)"

    def worker_argv(self, processes: int) -> list[list[str]]:
        return [[str(BIN / "taskiq"), "worker", "bench.peers.taskiq_app:broker",
                 "--workers", str(processes), "--log-level", "WARNING"]]

    def enqueue(self, n: int) -> None:
        os.environ[body.URL_ENV] = self.url
        from bench.peers.taskiq_app import broker, incr

        async def send() -> None:
            await broker.startup()
            try:
                for _ in range(n):
                    await incr.kiq()
            finally:
                await broker.shutdown()

        _run(send())


class Arq(System):
    name = "arq"
    guarantee = AT_LEAST_ONCE
    settings = "one `arq` process each, max_jobs 10 (default), poll_delay 10 ms"

    def worker_argv(self, processes: int) -> list[list[str]]:
        return [[str(BIN / "arq"), "bench.peers.arq_app.WorkerSettings"]] * processes

    def enqueue(self, n: int) -> None:
        from arq import create_pool
        from arq.connections import RedisSettings

        async def send() -> None:
            pool = await create_pool(RedisSettings.from_dsn(self.url))
            try:
                for _ in range(n):
                    await pool.enqueue_job("incr", _queue_name=QUEUE)
            finally:
                await pool.aclose()

        _run(send())


class Saq(System):
    name = "saq"
    guarantee = AT_MOST_ONCE
    settings = "`saq --workers N`, concurrency 10 (default); a swept job is retried only " \
               "if retries > 1"

    def worker_argv(self, processes: int) -> list[list[str]]:
        return [[str(BIN / "saq"), "bench.peers.saq_app.settings", "--workers",
                 str(processes), "--quiet"]]

    def enqueue(self, n: int) -> None:
        os.environ[body.URL_ENV] = self.url
        from saq import Queue

        async def send() -> None:
            queue = Queue.from_url(self.url, name="bench")
            await queue.connect()
            try:
                for _ in range(n):
                    await queue.enqueue("incr")
            finally:
                await queue.disconnect()

        _run(send())


class Streaq(System):
    name = "streaq"
    guarantee = AT_LEAST_ONCE
    settings = "`streaq run --workers N`, concurrency 16 (default)"

    def worker_argv(self, processes: int) -> list[list[str]]:
        return [[str(BIN / "streaq"), "run", "bench.peers.streaq_app:worker", "--workers",
                 str(processes)]]

    def enqueue(self, n: int) -> None:
        os.environ[body.URL_ENV] = self.url
        from bench.peers.streaq_app import incr, worker

        async def send() -> None:
            async with worker:
                await worker.enqueue_many([incr.enqueue() for _ in range(n)])

        _run(send())


SYSTEMS: tuple[type[System], ...] = (Taskfleet, TaskfleetNoResult, TaskfleetThreads, Raw,
                                     Celery, RQ, Dramatiq, Huey, Taskiq, Arq, Saq, Streaq)
OURS = frozenset({"taskfleet", "taskfleet-noresult", "taskfleet-threads", "raw-redis"})
"""taskfleet's own rows: the peers are every other system."""


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process and every descendant alive now (user + system)."""
    try:
        total = cpu_seconds(pid)
    except (OSError, IndexError, ValueError):
        return 0.0
    return total + sum(tree_cpu_seconds(child) for child in children_of(pid))


@dataclass
class Run:
    tasks_per_second: float
    worker_cpu_us_per_task: float
    """Workers' CPU (every process of the system's workers) per task, in the timed window."""
    redis_cpu_percent: float
    """redis-server's CPU over the timed window, in % of one core."""


def run_workers(system: System, processes: int, n: int, client: redis.Redis,
                redis_pid: int) -> Run:
    """Tasks per second with warm workers, enqueue inside the timed window."""
    client.flushall()
    procs = [subprocess.Popen(argv, cwd=ROOT, env=system.env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
             for argv in system.worker_argv(processes)]

    def counted(expected: int) -> Callable[[], bool]:
        return lambda: int(client.get(body.COUNTER) or 0) >= expected

    try:
        system.enqueue(WARM_UP)
        wait_for(f"{system.name} warm-up", counted(WARM_UP), 120, interval=0.002)
        time.sleep(0.3)
        workers0 = sum(tree_cpu_seconds(p.pid) for p in procs)
        redis0 = tree_cpu_seconds(redis_pid)
        start = time.perf_counter()
        system.enqueue(n)
        wait_for(f"{system.name} x{processes}", counted(WARM_UP + n), 600, interval=0.002)
        elapsed = time.perf_counter() - start
        workers = sum(tree_cpu_seconds(p.pid) for p in procs) - workers0
        return Run(n / elapsed, workers / n * 1e6,
                   100 * (tree_cpu_seconds(redis_pid) - redis0) / elapsed)
    finally:
        for p in procs:  # the whole group: prefork children, consumer processes
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def enqueue_rate(system: System, n: int, client: redis.Redis) -> float:
    client.flushall()
    start = time.perf_counter()
    system.enqueue(n)
    return n / (time.perf_counter() - start)


def summary(samples: list[float]) -> dict[str, Any]:
    return {"median": round(statistics.median(samples), 1), "min": round(min(samples), 1),
            "max": round(max(samples), 1), "samples": [round(s, 1) for s in samples]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tasks", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="small sizes and one round, for a smoke run")
    parser.add_argument("--only", default="", help="comma-separated system names")
    args = parser.parse_args()
    n = 200 if args.quick else args.tasks
    rounds = 1 if args.quick else args.rounds
    cores = os.cpu_count() or 1
    widths = sorted({1, cores})
    chosen = [cls for cls in SYSTEMS if not args.only or cls.name in args.only.split(",")]
    server = RedisServer().start()
    client = redis.Redis.from_url(server.url)
    samples: dict[str, dict[int, list[Run]]] = {c.name: {w: [] for w in widths}
                                                for c in chosen}
    enqueue: dict[str, float] = {}
    try:
        for r in range(rounds):
            for cls in chosen:
                system = cls(server.url)
                for w in widths:
                    assert server.process is not None
                    run = run_workers(system, w, n, client, server.process.pid)
                    samples[cls.name][w].append(run)
                    print(f"  round {r + 1}/{rounds} {cls.name:<19} x{w}: "
                          f"{run.tasks_per_second:>9.0f} tasks/s "
                          f"{run.worker_cpu_us_per_task:>6.0f} us CPU/task, "
                          f"redis-server {run.redis_cpu_percent:.0f}%", flush=True)
        for cls in chosen:
            batch = 2000 if args.quick else 20_000
            enqueue[cls.name] = round(enqueue_rate(cls(server.url), batch, client), 1)
    finally:
        client.close()
        server.close()

    systems: dict[str, Any] = {}
    for cls in chosen:
        systems[cls.name] = {
            "guarantee": cls.guarantee, "settings": cls.settings,
            "processes": {str(w): {
                **summary([r.tasks_per_second for r in samples[cls.name][w]]),
                "worker_cpu_us_per_task": round(statistics.median(
                    r.worker_cpu_us_per_task for r in samples[cls.name][w]), 1),
                "redis_cpu_percent": round(statistics.median(
                    r.redis_cpu_percent for r in samples[cls.name][w]), 1)}
                for w in widths},
            "enqueue_per_second": enqueue[cls.name]}
    results: dict[str, Any] = {
        "tasks": n, "rounds": rounds, "task_body": "one Redis INCR",
        "machine": {"cpus": cores, "python": platform.python_version()},
        "systems": systems, "ratios": ratios(systems, widths)}

    head = "".join(f"{f'x{w} tasks/s (range)':>26}{'us/task':>9}" for w in widths)
    print(f"\n{'system':<20}{'guarantee':<15}{head}{'enqueue/s':>12}")
    for name, row in systems.items():
        cells = "".join(
            f"{row['processes'][str(w)]['median']:>10.0f} "
            f"({row['processes'][str(w)]['min']:>6.0f}-{row['processes'][str(w)]['max']:<6.0f})"
            f"{row['processes'][str(w)]['worker_cpu_us_per_task']:>9.0f}"
            for w in widths)
        print(f"{name:<20}{row['guarantee']:<15}{cells}{row['enqueue_per_second']:>12.0f}")
    print("\nus/task: the workers' CPU per task (all their processes), median of the rounds")
    print()
    for k, v in results["ratios"].items():
        print(f"{k:<46}{v:>6.2f}x")
    write_json(args.json, results)
    return 0


def ratios(systems: dict[str, Any], widths: list[int]) -> dict[str, float]:
    """taskfleet (results stored) against the fastest peer of each kind, the ceiling,
    and itself at one process; batch enqueue against the fastest peer's."""
    def median(name: str, w: int) -> float:
        return float(systems[name]["processes"][str(w)]["median"])

    peers = [name for name in systems if name not in OURS]
    out: dict[str, float] = {}
    if "taskfleet" not in systems:
        return out
    for w in widths:
        tf = median("taskfleet", w)
        if peers:
            best = max(peers, key=lambda p: median(p, w))
            out[f"taskfleet_vs_fastest_peer_x{w} ({best})"] = round(tf / median(best, w), 2)
        alo = [p for p in peers if systems[p]["guarantee"] == AT_LEAST_ONCE]
        if alo:
            best = max(alo, key=lambda p: median(p, w))
            out[f"taskfleet_vs_fastest_at_least_once_x{w} ({best})"] = round(
                tf / median(best, w), 2)
        if "raw-redis" in systems:
            out[f"taskfleet_share_of_raw_x{w}"] = round(tf / median("raw-redis", w), 2)
    if len(widths) > 1:
        out[f"taskfleet_x{widths[-1]}_vs_x1"] = round(
            median("taskfleet", widths[-1]) / median("taskfleet", 1), 2)
    if peers:
        best = max(peers, key=lambda p: float(systems[p]["enqueue_per_second"]))
        out[f"enqueue_vs_fastest_peer ({best})"] = round(
            systems["taskfleet"]["enqueue_per_second"] / systems[best]["enqueue_per_second"], 2)
    return out


if __name__ == "__main__":
    # SIGTERM (a CI timeout, kill) still runs the cleanup in main's finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    raise SystemExit(main())
