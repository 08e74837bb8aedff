"""Sentinel failover under load, on a real Sentinel group (1 master, 2 replicas, 3 sentinels)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from taskfleet import App, queue_stats
from taskfleet.errors import ReplicaAckTimeout
from taskfleet.schedule import PassResult, Schedule, Scheduler
from testenv.failover_run import run_failover
from testenv.sentinel_group import SentinelGroup
from testenv.waiting import wait_for


def test_a_failover_during_5000_tasks_loses_nothing_with_replica_acks(
        killable_sentinel_group: SentinelGroup, tmp_path: Path) -> None:
    figures = run_failover(killable_sentinel_group, tasks=5000, replica_acks=1, log_dir=tmp_path)
    print(figures.as_dict())
    assert figures.tasks_acknowledged == 5000
    assert figures.lost == 0, f"acknowledged tasks lost: {figures.lost_ids}"
    assert figures.done == 5000
    assert figures.send_errors > 0, "the producer never saw the failover: the kill came too late"


def test_with_replica_acks_an_enqueue_no_replica_took_is_not_acknowledged(
        killable_sentinel_group: SentinelGroup) -> None:
    """Redis replicates asynchronously: the master acknowledges an enqueue before any
    replica has it. With replica_acks the producer is told when no replica took it in
    time (ReplicaAckTimeout) instead of being promised a task a failover could lose."""
    plain = App(killable_sentinel_group.url)
    acked = App(killable_sentinel_group.url + "&replica_acks=1&replica_ack_timeout_ms=300")
    assert acked.broker.settings.replica_acks == 1
    acked.send_task("sample.add", [0, 0], queue="lag")  # replicas answer: acknowledged
    paused = killable_sentinel_group.pause_replicas()  # stopped: they acknowledge nothing
    try:
        plain.send_task("sample.add", [1, 1], queue="lag")  # Redis's default: promised
        with pytest.raises(ReplicaAckTimeout, match="reached 0 of the 1 replica"):
            acked.send_task("sample.add", [2, 2], queue="lag")
    finally:
        killable_sentinel_group.resume(paused)
    acked.send_task("sample.add", [3, 3], queue="lag")  # replicas back: acknowledged again


def test_replica_acks_wait_1000_ms_by_default_then_refuse(redis_url: str) -> None:
    """One server has no replica: with replica_acks=1 an enqueue waits for one the
    default replica_ack_timeout_ms (1000), then raises ReplicaAckTimeout."""
    app = App(redis_url + "?replica_acks=1")
    began = time.monotonic()
    with pytest.raises(ReplicaAckTimeout, match=r"reached 0 of the 1 replica.* within 1000 ms"):
        app.send_task("sample.add", [1, 1])
    waited = time.monotonic() - began
    assert 0.95 <= waited < 1.8, f"waited {waited:.2f}s for a replica, not 1s"
    assert queue_stats(app.redis, ["default"])["default"].ready == 1, "on the master"


def test_replica_acks_beyond_the_replicas_there_are_refused(
        sentinel_group: SentinelGroup) -> None:
    """The group has two replicas: two acknowledgements come, a third never does."""
    sentinel_group.flushall()
    two = App(sentinel_group.url + "&replica_acks=2&replica_ack_timeout_ms=2000")
    two.send_task("sample.add", [1, 1], queue="acks")
    three = App(sentinel_group.url + "&replica_acks=3&replica_ack_timeout_ms=300")
    with pytest.raises(ReplicaAckTimeout, match="reached 2 of the 3 replica"):
        three.send_task("sample.add", [2, 2], queue="acks")
    with pytest.raises(ReplicaAckTimeout, match="reached 2 of the 3 replica"):
        three.send_many("sample.add", [[3, 3], [4, 4]], queue="acks")


def test_a_scheduler_sends_the_next_tick_on_the_new_master_without_a_restart(
        killable_sentinel_group: SentinelGroup) -> None:
    """What `taskfleet beat` does each pass, on the same client through a failover."""
    app = App(killable_sentinel_group.url)
    scheduler = Scheduler(app.broker)
    s = Schedule.from_dict({"name": "tick", "cron": "* * * * *", "task": "sample.add",
                            "args": [1, 1]}, queue="beat")
    t0 = datetime(2026, 11, 24, 9, 59, 30, tzinfo=UTC)
    scheduler.run_due(s, t0)
    assert scheduler.run_due(s, t0 + timedelta(seconds=40)).sent is not None  # 10:00
    killable_sentinel_group.wait_replicated()
    killable_sentinel_group.wait_failed_over(killable_sentinel_group.kill_master())

    def next_pass() -> PassResult | None:
        try:
            return scheduler.run_due(s, t0 + timedelta(seconds=100))  # 10:01
        except redis.RedisError:  # beat logs it and tries again next pass
            return None

    result = wait_for("a pass that reaches the new master", next_pass, 30)
    assert result.sent == datetime(2026, 11, 24, 10, 1, tzinfo=UTC)
    assert queue_stats(app.redis, ["beat"])["beat"].ready == 2, "both ticks, once each"
