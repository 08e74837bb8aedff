"""Worker pods killed (a node lost) and scaled down (SIGTERM: drain and exit 0) under a
burst, a replacement started for each as a ReplicaSet would. Duplicates must stay within
the tasks the killed pods held."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import redis

from bench.faults.ledger import Ledger
from bench.faults.plan import TASK, Plan
from bench.faults.pods import Fleet, heartbeat_busy, held_by
from bench.faults.traffic import (
    Sent,
    dead_letters,
    random_sleeps,
    rounded,
    tally,
    task_arguments,
    wait_drained,
)
from taskfleet import App
from testenv.redis_server import RedisServer


def worker_faults(plan: Plan, rng: random.Random, logs: Path) -> dict[str, Any]:
    phase, queue = "worker_kills", "chaos-workers"
    broker, ledger_server = RedisServer().start(), RedisServer().start()
    with closing(broker), closing(ledger_server):
        app, ledger = App(broker.url), Ledger(ledger_server.url)
        client = redis.Redis.from_url(broker.url, decode_responses=True)
        fleet = Fleet(phase, queue, broker.url, ledger_server.url, logs)
        try:
            for _ in range(plan.worker_pods):
                fleet.add()
            fleet.wait_serving(client)
            sleeps = random_sleeps(rng, plan.worker_tasks)
            started = time.monotonic()
            ids = [r.id for r in app.send_many(
                TASK, task_arguments(phase, range(plan.worker_tasks), sleeps), queue=queue)]
            sent = Sent(acknowledged=set(range(plan.worker_tasks)), finished_at=started)
            kills, last_fault = inject_pod_faults(plan, rng, fleet, ledger, client, ids, started)
            drained = wait_drained(client, queue)
            fleet.scale_to_zero()
            sigterms = fleet.sigterm_outcomes()
            runs = ledger.runs(phase)
            result = tally(runs, sent, plan.worker_tasks)
            bound = sum(k["held"] for k in kills)
            result.update({
                "pods": plan.worker_pods, "sigkills": kills,
                "sigterms": sigterms,
                "sigterm_exit_codes": [s["exit_code"] for s in sigterms],
                "duplicate_bound": bound,
                "duplicates_within_bound": result["duplicates"] <= bound,
                "dead_lettered": dead_letters(client, queue),
                "drained": drained is not None,
                "drain_after_last_fault_s": rounded(drained, last_fault),
                "seconds": round(time.monotonic() - started, 1)})
            return result
        finally:
            fleet.kill_all()


def inject_pod_faults(plan: Plan, rng: random.Random, fleet: Fleet, ledger: Ledger,
                      client: redis.Redis, ids: Sequence[str], started: float
                      ) -> tuple[list[dict[str, Any]], float]:
    """SIGKILL or SIGTERM a random pod at random intervals, a replacement started at once,
    until most of the burst has run; returns the kills and when the last fault hit."""
    kills: list[dict[str, Any]] = []
    faults = 0
    last_fault = started
    while faults < plan.max_faults and \
            ledger.executions_so_far(fleet.phase) < 0.85 * len(ids):
        time.sleep(rng.uniform(*plan.fault_gap_seconds))
        live = sorted(fleet.live, key=lambda p: p.name)
        victim = live[rng.randrange(len(live))]
        # A scale-down's SIGTERM goes to a pod that has started serving: one still starting
        # its interpreter has no handler yet (docs/guarantees-and-chaos.md: ~30 ms), and a
        # container's PID 1 would not even receive it; a SIGKILL may hit any pod.
        serving = [p for p in live if p.serving()]
        if rng.random() < 0.5 or not serving:
            busy = heartbeat_busy(client, victim)
            children = victim.children()
            victim.kill()
            held = held_by(victim, children, busy, ledger, fleet.phase, client, fleet.queue,
                           ids)
            held["at_s"] = round(time.monotonic() - started, 2)
            kills.append(held)
        else:
            victim = serving[rng.randrange(len(serving))]
            fleet.scale_down(victim, f"scale-down at {time.monotonic() - started:.2f}s")
        last_fault = time.monotonic()
        fleet.add()  # the replacement, as the ReplicaSet would start one
        faults += 1
    return kills, last_fault
