"""Faults one at a time, each fixed, each with the test that failed before the fix:
orphaned pool children, a stop while starting, malformed queue entries, oversized and
non-JSON arguments, dead-letter lists that grew without bound."""

from __future__ import annotations

import json
import math
import os
import re
import signal
from pathlib import Path

import pytest
import redis

from taskfleet import App, MessageTooLarge, queue_stats
from taskfleet.keys import QueueKeys
from taskfleet.message import Message
from testenv.processes import WorkerProcess, children_of
from testenv.waiting import assert_stays, wait_for

SAMPLE = "tests.integration.apps.sample:app"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_pool_children_leave_with_their_supervisor_and_return_their_tasks(
        redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]) -> None:
    app = App(redis_url)
    w = WorkerProcess(redis_url, SAMPLE, ["default"], concurrency=2, pool="processes").start()
    workers.append(w)
    children = wait_for("two pool children", lambda: len(children_of(w.pid)) == 2
                        and children_of(w.pid), 20)
    app.send_task("sample.sleep_record", ["long", 60.0])
    wait_for("the long task started", lambda: redis_client.llen("test:runs:started") == 1, 20)
    os.kill(w.pid, signal.SIGKILL)  # the supervisor only, as the OOM killer would
    w.wait(5)
    wait_for("both children gone", lambda: not any(alive(c) for c in children), 3, interval=0.05)
    # returned at once, not after the 30 s lease: another worker can take it now
    stats = queue_stats(app.redis, ["default"])["default"]
    assert (stats.ready, stats.in_flight) == (1, 0), stats


@pytest.mark.parametrize("pool", ["processes", "threads"])
def test_a_worker_stopped_while_it_starts_exits_0(redis_url: str, pool: str, tmp_path: Path,
                                                   workers: list[WorkerProcess]) -> None:
    marker = tmp_path / "importing"
    w = WorkerProcess(redis_url, "tests.integration.apps.slow_start:app", ["default"],
                      pool=pool, env={"SLOW_START_MARKER": str(marker)}).start()
    workers.append(w)
    wait_for("the worker is importing its app", marker.exists, 10, interval=0.05)
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0


def test_malformed_entries_are_dead_lettered_and_the_queue_keeps_flowing(
        redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]) -> None:
    app = App(redis_url)
    qk = QueueKeys("default")
    # what a buggy producer or a hand edit leaves behind
    redis_client.rpush(qk.ready(0), "no-colon-here")
    redis_client.hset(qk.messages, "bandless", '{"id": "bandless"}')
    redis_client.zadd(qk.delayed, {"bandless": 1})
    assert queue_stats(app.redis, ["default"])["default"].ready >= 1, "stats still read"
    result = app.send_task("sample.add", [2, 3])
    start = WorkerProcess(redis_url, SAMPLE, ["default"]).start()
    workers.append(start)
    assert result.get(timeout=20) == 5
    records = wait_for("both dead-lettered", lambda: len(app.broker.dead_list("default")) == 2
                       and app.broker.dead_list("default"), 20)
    reasons = sorted(r.reason for r in records)
    assert reasons[0].startswith("ready entry is not <ready-since ms>:<task id>")
    assert reasons[1].startswith("stored body does not start with a priority band digit")
    assert start.process is not None and start.process.poll() is None, "the worker runs on"


def test_a_refused_command_is_not_reported_as_unreachable(
        redis_url: str, redis_client: redis.Redis, tmp_path: Path,
        workers: list[WorkerProcess]) -> None:
    redis_client.set(QueueKeys("broken").leases, "not a sorted set")  # WRONGTYPE in FETCH
    w = WorkerProcess(redis_url, SAMPLE, ["broken"], log=tmp_path / "worker.log").start()
    workers.append(w)
    wait_for("the error logged", lambda: "redis refused a command" in w.output(), 20)
    assert "redis unreachable" not in w.output()


def test_oversized_and_non_json_arguments_are_refused_at_the_producer(
        redis_url: str) -> None:
    app = App(redis_url, max_message_bytes=10_000)
    with pytest.raises(MessageTooLarge, match=r"over the limit of 10,000 "
                                              r"\(App\(max_message_bytes=\.\.\.\)\)"):
        app.send_task("sample.record", ["x" * 20_000])
    with pytest.raises(MessageTooLarge, match="over the limit of 10,000"):  # the batch path
        app.send_many("sample.record", [["small"], ["x" * 20_000]])
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(TypeError, match="NaN and Infinity are not JSON"):
            app.send_task("sample.add", [bad, 1])
    stats = queue_stats(app.redis, ["default"])["default"]
    assert (stats.ready, stats.delayed) == (0, 0), "nothing was stored"
    assert App(redis_url).send_task("sample.record", ["x" * 500_000]).id, \
        "the default limit (1 MiB) lets ordinary payloads through"


def test_the_default_message_limit_is_1_mib(redis_url: str) -> None:
    app = App(redis_url)

    @app.task(name="sample.record")
    def record(value: str) -> str:
        return value

    with pytest.raises(MessageTooLarge) as too_large:
        record.delay("x" * (2 << 20))
    found = re.search(r"the message is ([0-9,]+) bytes", str(too_large.value))
    assert found is not None, str(too_large.value)
    size = int(found[1].replace(",", ""))
    envelope = size - (2 << 20)  # the message without its payload
    # 16 bytes of slack either side: the envelope's timestamp varies in length
    assert record.delay("x" * ((1 << 20) - envelope - 16)).id, "just under 1 MiB: sent"
    with pytest.raises(MessageTooLarge) as over:
        record.delay("x" * ((1 << 20) - envelope + 16))
    assert queue_stats(app.redis, ["default"])["default"].ready == 1
    assert "over the limit of 1,048,576" in str(over.value)


def test_dead_letter_lists_are_capped_and_count_what_they_drop(
        redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]) -> None:
    app = App(redis_url)
    for i in range(5):
        app.send_task("no.such.task", [i])
    workers.append(WorkerProcess(redis_url, SAMPLE, ["default"],
                                 extra=["--dead-letter-limit", "3"]).start())
    wait_for("five dead letters, three kept",
             lambda: queue_stats(app.redis, ["default"])["default"].dead_trimmed == 2, 20)
    kept = app.broker.dead_list("default")
    assert [json.loads(r.body)["args"] for r in kept] == [[4], [3], [2]], \
        "the newest are kept"
    # the queue's own setting (the operator writes it from TaskQueue.spec) wins
    redis_client.hset(QueueKeys("default").settings, "dead_letter_limit", 1)
    app.send_task("no.such.task", [5])
    wait_for("trimmed to the queue's setting",
             lambda: queue_stats(app.redis, ["default"])["default"].dead == 1, 20)
    assert queue_stats(app.redis, ["default"])["default"].dead_trimmed == 5
    assert_stays("the cap holds", lambda: queue_stats(app.redis, ["default"])["default"].dead
                 == 1, 1.0)


def test_a_dead_letter_list_keeps_10000_records_by_default_and_all_with_0(
        redis_url: str, workers: list[WorkerProcess]) -> None:
    app = App(redis_url)
    count = 10_001
    app.send_many("no.such.task", [[i] for i in range(count)], queue="capped")
    app.send_many("no.such.task", [[i] for i in range(count)], queue="uncapped")
    workers.append(WorkerProcess(redis_url, SAMPLE, ["capped"], pool="inline").start())
    workers.append(WorkerProcess(redis_url, SAMPLE, ["uncapped"], pool="inline",
                                 extra=["--dead-letter-limit", "0"]).start())

    def settled() -> bool:
        stats = queue_stats(app.redis, ["capped", "uncapped"])
        return all((s.ready, s.in_flight) == (0, 0) for s in stats.values())

    wait_for("every task dead-lettered", settled, 180,
             describe=lambda: str(queue_stats(app.redis, ["capped", "uncapped"])))
    stats = queue_stats(app.redis, ["capped", "uncapped"])
    assert (stats["capped"].dead, stats["capped"].dead_trimmed) == (10_000, 1)
    assert (stats["uncapped"].dead, stats["uncapped"].dead_trimmed) == (count, 0)
    capped = QueueKeys("capped").dead
    assert json.loads(json.loads(app.redis.lindex(capped, 0))["body"])["args"] == [count - 1]
    assert json.loads(json.loads(app.redis.lindex(capped, -1))["body"])["args"] == [1], \
        "the oldest record went"


def test_a_task_enqueued_twice_by_a_retried_script_is_queued_once(redis_url: str) -> None:
    """redis-py re-sends a command whose reply was lost; the task must not run twice."""
    app = App(redis_url)
    message = Message(id="same-id", task="sample.add", queue="default", args=[1, 2])
    app.broker.enqueue([(message, 0)])
    app.broker.enqueue([(message, 0)])  # the re-sent script
    assert queue_stats(app.redis, ["default"])["default"].ready == 1


def test_a_child_that_dies_while_draining_makes_the_pool_exit_non_zero(
        redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]) -> None:
    app = App(redis_url)
    w = WorkerProcess(redis_url, SAMPLE, ["default"], pool="processes").start()
    workers.append(w)
    app.send_task("sample.sleep_record", ["long", 30.0])
    wait_for("the task started", lambda: redis_client.llen("test:runs:started") == 1, 20)
    [child] = children_of(w.pid)
    w.signal(signal.SIGTERM)  # drain: the child finishes its task...
    os.kill(child, signal.SIGKILL)  # ...but dies (the OOM killer) before it can
    assert w.wait(30) == 1, "not a clean drain: the exit code says so"
