"""Fires TaskQueue schedules on each controller pass (leader only), through the taskfleet
library's Scheduler, and reports them in status.schedules and as Events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from taskfleet.broker import Broker
from taskfleet.schedule import PassResult, Schedule, ScheduleError, Scheduler

from .act import Actions
from .conditions import rfc3339
from .metrics import OperatorMetrics
from .model import TaskQueue
from .observe import RedisDirectory, SecretRefError
from .registry import Key


class ScheduleRunner:
    def __init__(self, actuator: Actions, directory: RedisDirectory,
                 metrics: OperatorMetrics | None = None) -> None:
        self.actuator = actuator
        self.directory = directory
        self.metrics = metrics
        """Counts ticks sent and skipped, when given."""
        self.schedulers: dict[int, Scheduler] = {}
        self.reported: dict[Key, list[str]] = {}

    def _scheduler(self, tq: TaskQueue) -> Scheduler:
        client = self.directory.client(tq.namespace, tq.redis)
        found = self.schedulers.get(id(client))
        if found is None:
            found = self.schedulers[id(client)] = Scheduler(Broker(client))
        return found

    def run(self, tq: TaskQueue, now: float) -> tuple[list[dict[str, Any]], list[str]]:
        """Send what is due; returns status.schedules entries and the invalid ones' errors."""
        when = datetime.fromtimestamp(now, UTC)
        entries: list[dict[str, Any]] = []
        problems: list[str] = []
        for raw in tq.schedules:
            try:
                schedule = Schedule.from_dict(raw, queue=tq.queue_name, where="spec.schedules")
            except ScheduleError as exc:
                problems.append(str(exc))
                entries.append({"name": str(raw.get("name", "")), "message": str(exc)})
                continue
            try:
                result = self._scheduler(tq).run_due(schedule, when)
            except SecretRefError as exc:  # the queue's MetricsAvailable condition says it too
                entries.append({"name": schedule.name, "message": f"not sent: {exc}"})
                continue
            self._report(tq, schedule, result)
            entries.append(_entry(schedule, result))
        if problems and problems != self.reported.get(tq.key):
            self._record(tq, "InvalidSchedule", "; ".join(problems), "Warning")
        self.reported[tq.key] = problems
        return entries, problems

    def _report(self, tq: TaskQueue, s: Schedule, result: PassResult) -> None:
        if self.metrics is not None:
            self.metrics.schedule_ticks(tq, s.name, sent=int(result.sent is not None),
                                        skipped=len(result.skipped))
        if result.sent is not None:
            sent = rfc3339(result.sent.timestamp())
            self._record(tq, "Scheduled", f"schedule {s.name}: sent {s.task} for {sent} as "
                                          f"task {result.task_id}")
        for tick in result.skipped:
            self._record(tq, "MissedSchedule",
                         f"schedule {s.name}: tick {rfc3339(tick.timestamp())} skipped (more "
                         f"than startingDeadlineSeconds={s.starting_deadline_seconds:g} late)",
                         "Warning")

    def _record(self, tq: TaskQueue, reason: str, message: str, type_: str = "Normal") -> None:
        self.actuator.record_event("TaskQueue", tq.namespace, tq.name, tq.uid, reason, message,
                                   type_)


def _entry(s: Schedule, r: PassResult) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": s.name}
    if r.last_tick is not None:
        entry["lastScheduleTime"] = rfc3339(r.last_tick.timestamp())
    if r.next_tick is not None:
        entry["nextScheduleTime"] = rfc3339(r.next_tick.timestamp())
    if r.last_task_id:
        entry["lastTaskId"] = r.last_task_id
    if r.skipped:
        entry["lastSkippedTime"] = rfc3339(r.skipped[-1].timestamp())
    if s.suspend:
        entry["message"] = "suspended"
    return entry
