"""One pod cut off by a network partition: it runs in a network namespace of its own,
and its veth link goes down for longer than the task lease, then up again."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import redis

from bench.faults.paced import PacedRun
from bench.faults.plan import CONCURRENCY, LEASE_SECONDS, RESUME_SECONDS, Plan
from bench.faults.pods import heartbeat_busy, held_by
from taskfleet import keys
from taskfleet.broker import message_json
from taskfleet.connection import text
from taskfleet.message import Message
from testenv.netns import VethNamespace, netns_available
from testenv.redis_server import RedisServer


def partition(plan: Plan, rng: random.Random, logs: Path) -> dict[str, Any]:
    why_not = netns_available()
    if why_not is not None:
        return {"skipped": why_not}
    ns = VethNamespace(f"tfchaos{os.getpid()}", slot=os.getpid())
    try:
        ns.create()
        binds = ["127.0.0.1", ns.host_address]
        broker, ledger_server = RedisServer(bind=binds).start(), RedisServer(bind=binds).start()
        with closing(broker), closing(ledger_server):
            return cut_one_pod_off(plan, rng, logs, ns, broker, ledger_server)
    finally:
        ns.remove()


def cut_one_pod_off(plan: Plan, rng: random.Random, logs: Path, ns: VethNamespace,
                    broker: RedisServer, ledger_server: RedisServer) -> dict[str, Any]:
    # sends go on for a while after the link is back, so the cut-off pod can show it resumes
    run = PacedRun("partition", plan, rng, logs, broker, ledger_server, plan.paced_pods - 1,
                   plan.send_window_seconds + RESUME_SECONDS)
    try:
        island = run.fleet.add(broker_url=broker.url_at(ns.host_address),
                               ledger_url=ledger_server.url_at(ns.host_address), wrap=ns.argv)
        run.start()
        run.when_busy(lambda: heartbeat_busy(run.client, island) >= CONCURRENCY)
        busy = heartbeat_busy(run.client, island)
        children = island.children()
        ns.link_down()
        cut = time.monotonic()
        time.sleep(0.3)  # what was on its way through the link when it went down
        ids = task_ids(run.client, run.queue)
        held = held_by(island, children, busy, run.ledger, run.phase, run.client, run.queue,
                       ids)
        down_for = LEASE_SECONDS + rng.uniform(1.5, 2.5)
        time.sleep(max(0.0, cut + down_for - time.monotonic()))
        ns.link_up()
        up = time.monotonic()
        result = run.finish(up)
        executions = run.ledger.executions(run.phase)
        runs = Counter(i for i, _, _ in executions)
        resumed = first_run_after(executions, set(island.pids), up)
        result.update({
            "cut_off_pod": island.name, "link_down_s": round(up - cut, 2),
            "held_at_cut": held,
            "held_tasks_run_again": sum(1 for i in held["started_unacknowledged"]
                                        if runs[i] > 1),
            "duplicate_bound": held["held"],
            "duplicates_within_bound": result["duplicates"] <= held["held"],
            "cut_off_pod_resumed": resumed is not None,
            "cut_off_pod_first_task_after_link_up_s": resumed,
            "cut_off_pod_log_lines": notable_lines(island.output())})
        return result
    finally:
        run.fleet.kill_all()


def task_ids(client: redis.Redis, queue: str) -> list[str]:
    """Index -> task id of what is stored in a queue now (leased, ready or delayed)."""
    found: dict[int, str] = {}
    for task_id, body in client.hgetall(keys.QueueKeys(queue).messages).items():
        message = Message.decode(message_json(text(body)))
        found[int(message.args[1])] = text(task_id)
    size = max(found) + 1 if found else 0
    return [found.get(i, "") for i in range(size)]


def first_run_after(executions: Sequence[tuple[int, int, float]], pids: set[int],
                    since_monotonic: float) -> float | None:
    since = time.time() - (time.monotonic() - since_monotonic)
    later = [at for _, pid, at in executions if pid in pids and at >= since]
    return round(min(later) - since, 2) if later else None


def notable_lines(log: str, limit: int = 12) -> list[str]:
    """The warnings and errors of a pod's log (its view of the fault)."""
    lines = [ln for ln in log.splitlines() if " WARNING " in ln or " ERROR " in ln]
    return lines[:limit // 2] + lines[-limit // 2:] if len(lines) > limit else lines
