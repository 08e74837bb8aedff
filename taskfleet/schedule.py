"""Schedules: cron ticks sent as tasks exactly once, however many schedulers run.

Used by the operator (TaskQueue.spec.schedules) and by ``taskfleet beat``.
Each pass looks at the ticks since the last one handled; the newest is sent if
it is within ``starting_deadline_seconds`` of now (older ones, and a late
newest, are skipped, as a CronJob does). Sending claims the tick with SET NX
in the same Lua script that enqueues the task, so there is no window between
claim and send: a scheduler that dies before the script has sent nothing and
the next pass sends the tick; one that dies after has sent it, and the claim
stops anyone sending it again.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from . import keys, scripts
from .broker import Broker, stored_body
from .connection import text
from .cron import Cron, CronError, next_tick, parse, ticks_between, zone
from .message import Message, new_task_id

CLAIM_TTL_SECONDS = 7 * 86400
"""Tick claims outlive any deadline a schedule may have, then go."""


class ScheduleError(ValueError):
    """A schedule is wrong; the message names the schedule and the field."""


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: Cron
    timezone: ZoneInfo
    task: str
    queue: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    starting_deadline_seconds: float = 300.0
    suspend: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any], queue: str | None = None,
                  where: str = "schedules") -> Schedule:
        if not isinstance(d, dict):
            raise ScheduleError(f"{where}: every schedule must be a mapping with name, cron "
                                "and task")
        name = d.get("name")
        label = f"{where}[{name!r}]" if name else where
        if not isinstance(name, str) or not name:
            raise ScheduleError(f"{where}: every schedule needs a name")
        for key in ("cron", "task"):
            if not isinstance(d.get(key), str) or not d[key]:
                raise ScheduleError(f"{label}.{key} must be a non-empty string")
        try:
            cron = parse(d["cron"])
        except CronError as exc:
            raise ScheduleError(f"{label}.cron: {exc}") from None
        timezone = d.get("timezone")
        if timezone is not None and not isinstance(timezone, str):
            raise ScheduleError(f"{label}.timezone must be an IANA name such as Europe/Paris")
        try:
            tz = zone(timezone or "UTC")
        except CronError as exc:
            raise ScheduleError(f"{label}.timezone: {exc}") from None
        q = queue or d.get("queue")
        if not isinstance(q, str) or not q:
            raise ScheduleError(f"{label}.queue must name the queue to send to")
        args, kwargs = d.get("args") or [], d.get("kwargs") or {}
        if not isinstance(args, list):
            raise ScheduleError(f"{label}.args must be a list")
        if not isinstance(kwargs, dict):
            raise ScheduleError(f"{label}.kwargs must be a mapping")
        deadline = d.get("startingDeadlineSeconds", 300)
        # The upper bound refuses NaN, infinity and integers too big for a float.
        if isinstance(deadline, bool) or not isinstance(deadline, int | float) or \
                not 0 < deadline <= sys.float_info.max:
            raise ScheduleError(f"{label}.startingDeadlineSeconds must be a positive number")
        suspend = d.get("suspend")
        if suspend is not None and not isinstance(suspend, bool):  # "false" is no false
            raise ScheduleError(f"{label}.suspend must be true or false")
        return cls(name=name, cron=cron, timezone=tz, task=d["task"], queue=q, args=args,
                   kwargs=kwargs, starting_deadline_seconds=float(deadline),
                   suspend=bool(suspend))


@dataclass(frozen=True)
class PassResult:
    sent: datetime | None = None
    """The tick this pass sent (None: nothing was due, or another scheduler sent it)."""
    task_id: str | None = None
    skipped: tuple[datetime, ...] = ()
    last_tick: datetime | None = None
    last_task_id: str | None = None
    next_tick: datetime | None = None


class Scheduler:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._send_once = broker.redis.register_script(scripts.ENQUEUE_ONCE)

    def run_due(self, s: Schedule, now: datetime) -> PassResult:
        """Send the tick due at ``now`` for one schedule, if any, exactly once."""
        client = self.broker.redis
        qk = keys.QueueKeys(s.queue)
        state_key = qk.schedule_state(s.name)
        # The first pass that sees a schedule starts it from now: no backfill.
        client.hsetnx(state_key, "last_tick", str(now.timestamp()))
        raw = {text(k): text(v) for k, v in client.hgetall(state_key).items()}
        last = datetime.fromtimestamp(float(raw["last_tick"]), UTC)
        last_task = raw.get("last_task_id")
        upcoming = next_tick(s.cron, s.timezone, now)
        if s.suspend:
            client.hset(state_key, "last_tick", str(now.timestamp()))
            return PassResult(last_tick=_time(raw.get("last_sent")), last_task_id=last_task,
                              next_tick=None)
        due = ticks_between(s.cron, s.timezone, last, now)
        if not due:
            return PassResult(last_tick=_time(raw.get("last_sent")), last_task_id=last_task,
                              next_tick=upcoming)
        newest = due[-1]
        skipped = list(due[:-1])
        sent_tick = sent_id = None
        if (now - newest).total_seconds() <= s.starting_deadline_seconds:
            ours = new_task_id()
            task_id = text(self._send_once(
                keys=[*qk.all_keys(), qk.tick_claim(s.name, int(newest.timestamp()))],
                args=[qk.wake_channel, ours, keys.priority_band(0),
                      stored_body(Message(id=ours, task=s.task, queue=s.queue, args=s.args,
                                          kwargs=s.kwargs, enqueued_at=time.time())),
                      CLAIM_TTL_SECONDS * 1000]))
            if task_id == ours:
                sent_tick, sent_id = newest, ours
            client.hset(state_key, mapping={"last_tick": str(newest.timestamp()),
                                            "last_sent": str(newest.timestamp()),
                                            "last_task_id": task_id})
            last_sent: datetime | None = newest
            last_task = task_id
        else:
            skipped.append(newest)
            client.hset(state_key, mapping={"last_tick": str(newest.timestamp()),
                                            "last_skipped": str(newest.timestamp())})
            last_sent = _time(raw.get("last_sent"))
        return PassResult(sent=sent_tick, task_id=sent_id, skipped=tuple(skipped),
                          last_tick=last_sent, last_task_id=last_task, next_tick=upcoming)


def _time(value: str | None) -> datetime | None:
    return datetime.fromtimestamp(float(value), UTC) if value else None
