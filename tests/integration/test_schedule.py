"""Schedules on a real redis-server: exactly once per tick, whoever runs them.

The scheduler takes ``now`` as an argument, so these tests walk a clock across
ticks instead of waiting for real minutes; one test runs `taskfleet beat`
processes in real time.
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from taskfleet import App, queue_stats
from taskfleet.broker import message_json
from taskfleet.keys import QueueKeys
from taskfleet.message import Message
from taskfleet.schedule import Schedule, ScheduleError, Scheduler
from testenv.processes import ROOT
from testenv.waiting import assert_stays, wait_for
from tests.conftest import all_broker_modes

T0 = datetime(2026, 11, 24, 9, 59, 30, tzinfo=UTC)


def every_minute(**extra: object) -> Schedule:
    return Schedule.from_dict({"name": "report", "cron": "* * * * *", "task": "report.hourly",
                               "args": [1], "kwargs": {"fmt": "pdf"}, **extra}, queue="reports")


def sent(app: App) -> list[Message]:
    qk = QueueKeys("reports")
    ids = [e.split(":", 1)[1] for e in app.redis.lrange(qk.ready(0), 0, -1)]
    return [Message.decode(message_json(app.redis.hget(qk.messages, i))) for i in ids]


@pytest.fixture
def app(redis_url: str) -> App:
    return App(redis_url)


@all_broker_modes
def test_two_schedulers_send_each_tick_once(app: App) -> None:
    a, b = Scheduler(app.broker), Scheduler(App(app.broker_url).broker)
    s = every_minute()
    assert a.run_due(s, T0).sent is None, "first sight starts from now: no backfill"
    now = T0
    for step in range(10):
        now += timedelta(seconds=20)
        first, second = (a, b) if step % 2 else (b, a)
        r1, r2 = first.run_due(s, now), second.run_due(s, now)
        assert r1.sent is None or r2.sent is None, "never both"
    messages = sent(app)
    assert len(messages) == 3, "ticks at 10:00, 10:01, 10:02 within 200 s"
    assert [m.task for m in messages] == ["report.hourly"] * 3
    assert (messages[0].args, messages[0].kwargs) == ([1], {"fmt": "pdf"})


@all_broker_modes
def test_crash_after_sending_never_sends_twice(app: App) -> None:
    s = every_minute()
    scheduler = Scheduler(app.broker)
    scheduler.run_due(s, T0)
    state = QueueKeys("reports").schedule_state("report")
    before = app.redis.hgetall(state)
    result = scheduler.run_due(s, T0 + timedelta(seconds=40))
    assert result.sent == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    # The process died right after the send script, before recording the tick:
    app.redis.delete(state)
    app.redis.hset(state, mapping=before)
    again = Scheduler(App(app.broker_url).broker).run_due(s, T0 + timedelta(seconds=45))
    assert again.sent is None
    assert again.last_task_id == result.task_id, "the tick's task is known, not resent"
    assert len(sent(app)) == 1


def test_tick_older_than_the_deadline_is_skipped(app: App) -> None:
    s = every_minute(startingDeadlineSeconds=30)
    scheduler = Scheduler(app.broker)
    scheduler.run_due(s, T0)
    # the scheduler was away from 10:00 until 10:05:45: 10:05 is 45 s late
    result = scheduler.run_due(s, T0 + timedelta(minutes=6, seconds=15))
    assert result.sent is None
    assert result.skipped[-1] == datetime(2026, 11, 24, 10, 5, tzinfo=UTC)
    assert len(result.skipped) == 6
    assert sent(app) == []
    # only the newest missed tick runs when it is within the deadline
    ok = scheduler.run_due(s, T0 + timedelta(minutes=8, seconds=40))
    assert ok.sent == datetime(2026, 11, 24, 10, 8, tzinfo=UTC)
    assert ok.skipped == (datetime(2026, 11, 24, 10, 6, tzinfo=UTC),
                          datetime(2026, 11, 24, 10, 7, tzinfo=UTC))
    assert len(sent(app)) == 1


def test_suspend_stops_sending_and_resuming_does_not_backfill(app: App) -> None:
    scheduler = Scheduler(app.broker)
    scheduler.run_due(every_minute(), T0)
    scheduler.run_due(every_minute(suspend=True), T0 + timedelta(minutes=3))
    assert sent(app) == []
    resumed = scheduler.run_due(every_minute(), T0 + timedelta(minutes=3, seconds=10))
    assert resumed.sent is None and resumed.skipped == ()
    assert scheduler.run_due(every_minute(), T0 + timedelta(minutes=3, seconds=40)).sent


def test_schedule_errors_name_the_schedule_and_field() -> None:
    with pytest.raises(ScheduleError, match=r"schedules\['r'\]\.cron: cron '\* \* \*'"):
        Schedule.from_dict({"name": "r", "cron": "* * *", "task": "t"}, queue="q")
    with pytest.raises(ScheduleError, match=r"schedules\['r'\]\.timezone: unknown time zone"):
        Schedule.from_dict({"name": "r", "cron": "@hourly", "task": "t",
                            "timezone": "Moon/Base"}, queue="q")


@all_broker_modes
def test_beat_processes_send_each_tick_once_in_real_time(redis_url: str,
                                                         redis_client: redis.Redis,
                                                         tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("schedules:\n"
                        "  - {name: ping, cron: '* * * * *', task: sample.add, args: [1, 2],\n"
                        "     queue: beat}\n")
    argv = [sys.executable, "-m", "taskfleet", "--broker", redis_url, "beat", "--schedule",
            str(schedule), "--interval", "0.2"]
    beats = [subprocess.Popen(argv, cwd=ROOT) for _ in range(2)]
    try:
        time.sleep(1.5)  # both have seen the schedule
        boundary = (int(time.time()) // 60 + 1) * 60
        time.sleep(max(0.0, boundary - time.time()) + 2.0)
        app = App(redis_url)
        def sent() -> int:
            return queue_stats(app.redis, ["beat"])["beat"].ready

        wait_for("the tick was sent", lambda: sent() >= 1, 10)
        assert_stays("exactly one task for the tick", lambda: sent() == 1, 1.0)
    finally:
        for b in beats:
            b.terminate()
        assert [b.wait(10) for b in beats] == [0, 0]


def test_beat_refuses_a_bad_schedule_file(redis_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedules:\n  - {name: r, cron: '61 * * * *', task: t, queue: q}\n")
    out = subprocess.run([sys.executable, "-m", "taskfleet", "--broker", redis_url, "beat",
                          "--schedule", str(bad)], cwd=ROOT, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    assert "schedules['r'].cron: cron minute field '61'" in out.stderr
