"""A TaskQueue's every-minute schedule through the control plane's faults: each tick must
be sent exactly once."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import redis

from taskfleet import keys
from taskfleet.broker import message_json
from taskfleet.connection import text
from taskfleet.message import Message
from testenv.cluster import Cluster
from testenv.waiting import wait_for


def first_tick_of(cluster: Cluster, namespace: str, queue: str, schedule: str) -> float:
    """The first tick of a TaskQueue's schedule: the first minute after its status showed
    it."""

    def next_schedule_time() -> float:
        """The time of the next tick, or 0.0 while the status does not show it."""
        tq = cluster.get("taskqueue", queue, namespace) or {}
        for s in (tq.get("status") or {}).get("schedules", []):
            if s.get("name") == schedule and s.get("nextScheduleTime"):
                return datetime.strptime(s["nextScheduleTime"], "%Y-%m-%dT%H:%M:%SZ") \
                    .replace(tzinfo=UTC).timestamp()
        return 0.0

    return wait_for("the schedule in the TaskQueue's status", next_schedule_time, 60,
                    interval=0.5)


def next_tick_after(moment: float) -> float:
    return (int(moment) // 60 + 1) * 60.0


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def count_ticks(client: redis.Redis, queue: str, schedule: str, first_tick: float,
                until: float) -> dict[str, Any]:
    """Tasks per tick: every tick from the first to ``until`` should have exactly one. The
    tick's claim names the task sent for it; a task of the queue matching no claim, or a
    tick with no task, would break "exactly once"."""
    qk = keys.QueueKeys(queue)
    claims = {int(k.rsplit(":", 1)[1]): v for k in client.scan_iter(
        match=f"{qk.tag}:tick:{schedule}:*") if (v := client.get(k)) is not None}
    tasks = {text(task_id): Message.decode(message_json(text(body)))
             for task_id, body in client.hgetall(qk.messages).items()}
    expected = [t for t in range(int(first_tick), int(until) + 1, 60)]
    per_tick = {minute(t): int(claims.get(t) in tasks) for t in expected}
    lateness = {minute(t): round(tasks[task_id].enqueued_at - t, 2)
                for t, task_id in sorted(claims.items()) if task_id in tasks}
    claimed_ids = set(claims.values())
    by_minute = Counter(minute(m.enqueued_at) for m in tasks.values())
    return {"ticks_expected": len(expected), "tasks_per_tick": per_tick,
            "sent_after_tick_s": lateness,
            "tasks_by_minute_sent": dict(sorted(by_minute.items())),
            "tasks": len(tasks), "tasks_matching_no_tick": len(set(tasks) - claimed_ids),
            "exactly_once": all(v == 1 for v in per_tick.values())
            and len(tasks) == len(expected)}


def minute(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M")
