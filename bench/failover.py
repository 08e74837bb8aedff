"""Sentinel failover under load, and what replica_acks costs.

On a local Sentinel group (1 master, 2 replicas, 3 sentinels; down-after 1 s):

1. Failover runs: a producer sends tasks at a steady rate to two worker processes;
   the master is SIGKILLed after 30% are sent. For replica_acks 0 and 1: how long the
   producer, the workers, a scheduler pass (what `taskfleet beat` runs) and the
   operator's queue reads (both every 50 ms) were without a broker, how long the sentinels took, and
   how many acknowledged enqueues were lost.
2. The cost of replica_acks=1 (WAIT for one replica on enqueue and settle), without
   a failover, in the same run: single enqueues/s from one producer, batch enqueue
   (delay_many) tasks/s, and no-op tasks/s of one worker (concurrency 4).

    python bench/failover.py [--json PATH] [--runs N] [--tasks N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import write_json
from taskfleet import App, queue_stats
from testenv.failover_run import PROBE_SECONDS, SAMPLE, run_failover
from testenv.processes import WorkerProcess
from testenv.sentinel_group import DOWN_AFTER_MS, SentinelGroup
from testenv.waiting import wait_for

QUEUE = "cost"
WORKERS = 2
CONCURRENCY = 4
"""Of each worker, in the failover runs and the cost run."""
KILL_AT = 0.3
"""The master is SIGKILLed once this share of the tasks is sent."""
RATE = 500.0
"""Sends per second in the failover runs."""
COST_TASKS = 3000


def _wait_empty(app: App, timeout: float = 300.0) -> None:
    def empty() -> bool:
        st = queue_stats(app.redis, [QUEUE])[QUEUE]
        return st.ready == 0 and st.in_flight == 0

    wait_for("the worker done with the queue", empty, timeout, interval=0.01)


def cost(group: SentinelGroup, acks: int, n: int, log_dir: Path) -> dict[str, float]:
    group.flushall()
    app = App(group.url, replica_acks=acks)
    started = time.perf_counter()
    for i in range(n):
        app.send_task("sample.add", [i, 0], queue=QUEUE)
    single = n / (time.perf_counter() - started)
    group.flushall()
    started = time.perf_counter()
    app.send_many("sample.add", [(i, 0) for i in range(n * 4)], queue=QUEUE)
    batch = n * 4 / (time.perf_counter() - started)
    url = group.url + (f"&replica_acks={acks}" if acks else "")
    worker = WorkerProcess(url, SAMPLE, [QUEUE], concurrency=CONCURRENCY,
                           log=log_dir / f"cost-{acks}.log").start()
    try:
        while not queue_stats(app.redis, [QUEUE])[QUEUE].in_flight:  # warm, then time
            time.sleep(0.01)
        _wait_empty(app)
        app.send_many("sample.add", [(i, 0) for i in range(n * 3)], queue=QUEUE)
        started = time.perf_counter()
        _wait_empty(app)
        worked = n * 3 / (time.perf_counter() - started)
    finally:
        worker.stop()
    return {"enqueue_per_second": round(single), "batch_enqueue_per_second": round(batch),
            "worker_tasks_per_second": round(worked)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=5000)
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="taskfleet-bench-failover-"))
    results: dict[str, Any] = {
        "tasks": args.tasks,
        "parameters": {"tasks": args.tasks, "rate": RATE, "workers": WORKERS,
                       "concurrency": CONCURRENCY, "kill_at": KILL_AT,
                       "down_after_ms": DOWN_AFTER_MS, "probe_ms": PROBE_SECONDS * 1000,
                       "runs": args.runs, "cost_tasks": COST_TASKS,
                       "machine_cpus": os.cpu_count()},
        "runs": {}, "cost": {}}
    for acks in (0, 1):
        rows = []
        for _ in range(args.runs):
            group = SentinelGroup(password="data", sentinel_password="sentinel").start()
            try:
                rows.append(run_failover(group, args.tasks, acks, log_dir, workers=WORKERS,
                                         concurrency=CONCURRENCY, kill_at=KILL_AT,
                                         rate=RATE).as_dict())
            finally:
                group.close()
        results["runs"][f"replica_acks={acks}"] = rows
    group = SentinelGroup(password="data", sentinel_password="sentinel").start()
    try:
        for acks in (0, 1):
            results["cost"][f"replica_acks={acks}"] = cost(group, acks, COST_TASKS, log_dir)
    finally:
        group.close()
    print(f"{'failover runs':<16}{'lost':>6}{'acked':>7}{'failover s':>12}"
          f"{'producer s':>12}{'workers s':>11}{'beat s':>8}{'operator s':>12}")
    for name, rows in results["runs"].items():
        for r in rows:
            print(f"{name:<16}{r['lost']:>6}{r['tasks_acknowledged']:>7}"
                  f"{r['failover_seconds']:>12.2f}{r['producer_without_broker_seconds']:>12.2f}"
                  f"{r['workers_without_broker_seconds']:>11.2f}"
                  f"{r['beat_without_broker_seconds']:>8.2f}"
                  f"{r['operator_without_broker_seconds']:>12.2f}")
    base, acked = results["cost"]["replica_acks=0"], results["cost"]["replica_acks=1"]
    results["cost_ratio"] = {k: round(acked[k] / base[k], 2) for k in base}
    print(f"\n{'cost':<16}" + "".join(f"{k:>26}" for k in base))
    for name, row in results["cost"].items():
        print(f"{name:<16}" + "".join(f"{v:>26,}" for v in row.values()))
    print(f"{'ratio':<16}" + "".join(f"{v:>26}" for v in results["cost_ratio"].values()))
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
