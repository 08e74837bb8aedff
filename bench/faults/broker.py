"""The broker's faults: redis-server SIGKILLed and restarted on its port and data
directory (append-only file, fsync always or every second) while producers keep sending,
and frozen (SIGSTOP) for longer than the task lease."""

from __future__ import annotations

import random
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from bench.faults.paced import PacedRun
from bench.faults.plan import CONCURRENCY, LEASE_SECONDS, Plan
from bench.faults.traffic import in_flight
from testenv.redis_server import RedisServer


def redis_restart(plan: Plan, rng: random.Random, logs: Path, appendfsync: str
                  ) -> dict[str, Any]:
    broker = RedisServer(appendfsync=appendfsync).start()
    ledger_server = RedisServer().start()
    with closing(broker), closing(ledger_server):
        run = PacedRun(f"redis_restart_{appendfsync}", plan, rng, logs, broker, ledger_server,
                       plan.paced_pods, plan.send_window_seconds)
        try:
            run.start()
            run.when_busy(run.all_slots_busy)
            before = in_flight(run.client, run.queue)
            broker.kill()
            crashed = time.monotonic()
            time.sleep(rng.uniform(0.5, 1.5))
            broker.start()  # same port, same directory: the append-only file is replayed
            back = time.monotonic()
            result = run.finish(back)
            result.update({"appendfsync": appendfsync, "in_flight_at_crash": before,
                           "down_s": round(back - crashed, 2)})
            return result
        finally:
            run.fleet.kill_all()


def redis_pause(plan: Plan, rng: random.Random, logs: Path) -> dict[str, Any]:
    broker, ledger_server = RedisServer().start(), RedisServer().start()
    with closing(broker), closing(ledger_server):
        run = PacedRun("redis_pause", plan, rng, logs, broker, ledger_server, plan.paced_pods,
                       plan.send_window_seconds)
        try:
            run.start()
            run.when_busy(run.all_slots_busy)
            before = in_flight(run.client, run.queue)
            paused_for = LEASE_SECONDS + rng.uniform(1.0, 2.0)
            broker.pause()
            time.sleep(paused_for)
            broker.resume()
            back = time.monotonic()
            result = run.finish(back)
            slots = plan.paced_pods * CONCURRENCY
            result.update({"paused_s": round(paused_for, 2), "in_flight_at_pause": before,
                           "duplicate_bound": slots,
                           "duplicates_within_bound": result["duplicates"] <= slots})
            return result
        finally:
            run.fleet.kill_all()
