"""Least privilege on Redis: everything taskfleet does works as a user created with the rule
of taskfleet.acl, and that user can touch nothing else.

A real redis-server whose default user has a password (the administrator's), and a
``taskfleet`` user made with ``ACL SETUSER`` from the rule. Producer, worker, CLI, beat
and the operator's reads all run with the user's URL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from taskfleet import App, TaskFailed, acl, live_workers, queue_stats
from taskfleet.connection import connect
from taskfleet.keys import QueueKeys
from taskfleet_operator.wakeups import PATTERN as OPERATOR_WAKE_PATTERN
from testenv.processes import ROOT, WorkerProcess, terminate
from testenv.redis_server import RedisServer
from testenv.resources import SAMPLE_APP
from testenv.waiting import wait_for

USER, PASSWORD = "taskfleet", "tf-user-secret"


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    s = RedisServer(password="admin-secret").start()
    admin = redis.Redis.from_url(s.url)
    admin.execute_command(*acl.setuser_args(USER, PASSWORD))
    admin.close()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(server.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def url(server: RedisServer, admin: redis.Redis) -> str:
    """The broker URL a least-privileged deployment would use."""
    return f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0"


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taskfleet", "--broker", url, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_producer_worker_and_cli_work_under_the_acl_user(url: str,
                                                         workers: list[WorkerProcess]) -> None:
    producer = App(url)

    @producer.task(name="sample.add")
    def add(x: int, y: int) -> int:
        raise AssertionError("runs in the worker, not here")

    by_name = producer.send_task("sample.add", [1, 2])
    delayed = producer.send_task("sample.add", [2, 2], countdown=0.5)
    by_delay = add.delay(3, 3)
    many = producer.send_many("sample.add", [(i, i) for i in range(20)])
    retried = producer.send_task("sample.ask_retry")  # one retry, then the dead-letter list
    unknown = producer.send_task("no.such.task")
    assert queue_stats(producer.redis, ["default"])["default"].delayed == 1

    workers.append(WorkerProcess(url, SAMPLE_APP, ["default"], concurrency=2).start())
    assert by_name.get(timeout=20) == 3
    assert delayed.get(timeout=20) == 4
    assert by_delay.get(timeout=20) == 6
    assert [r.get(timeout=20) for r in many] == [2 * i for i in range(20)]
    with pytest.raises(TaskFailed, match="not yet"):
        retried.get(timeout=20)
    with pytest.raises(TaskFailed, match="unknown task"):
        unknown.get(timeout=20)
    wait_for("worker heartbeat", lambda: live_workers(producer.redis), 20)

    inspect = cli(url, "inspect", "--json")  # finds the queues with SCAN
    assert inspect.returncode == 0, inspect.stderr
    data = json.loads(inspect.stdout)
    assert data["queues"]["default"]["dead"] == 2
    assert len(data["workers"]) == 1
    listed = cli(url, "dead", "list", "default")
    assert listed.returncode == 0, listed.stderr
    reasons = sorted(json.loads(line)["reason"] for line in listed.stdout.splitlines())
    assert reasons[0].startswith("failed after 1 retries") and "unknown task" in reasons[1]
    assert cli(url, "dead", "purge", "default").stdout.strip() == "purged 2"


def test_beat_under_the_acl_user(url: str, admin: redis.Redis, tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("schedules:\n  - {name: tick, cron: '* * * * *', task: sample.add, "
                        "args: [1, 2], queue: acl-beat}\n")
    # As if a beat had run two minutes ago: the first pass sends the last minute's tick
    # (claim and send in one script) instead of waiting for the next one.
    admin.hset(QueueKeys("acl-beat").schedule_state("tick"), "last_tick", str(time.time() - 120))
    beat = subprocess.Popen([sys.executable, "-m", "taskfleet", "--broker", url, "beat",
                             "--schedule", str(schedule), "--interval", "0.2"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for("beat sent the tick",
                 lambda: queue_stats(App(url).redis, ["acl-beat"])["acl-beat"].ready == 1, 15)
    finally:
        terminate(beat)  # type: ignore[arg-type]
    assert beat.returncode == 0
    assert beat.stderr is not None and "NOPERM" not in beat.stderr.read()


def test_the_operators_reads_under_the_acl_user(server: RedisServer, url: str) -> None:
    # As the operator connects for a TaskQueue with passwordFrom: user in the URL, password
    # apart (workers get it as $TASKFLEET_BROKER_PASSWORD)
    client = connect(f"redis://{USER}@127.0.0.1:{server.port}/0", password=PASSWORD)
    listener = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    # Redis compares a PSUBSCRIBE pattern with the user's channel patterns literally
    listener.psubscribe(OPERATOR_WAKE_PATTERN)
    App(url).send_task("sample.add", [1, 1], queue="woken")
    woke = wait_for("wake-up published", lambda: listener.get_message(timeout=0.2), 5)
    assert woke["channel"] == QueueKeys("woken").wake_channel
    listener.close()
    stats = queue_stats(client, ["woken", "empty"])
    assert (stats["woken"].ready, stats["empty"].ready) == (1, 0)
    assert live_workers(client) == []  # the heartbeats it reads before a scale-down


@pytest.mark.parametrize("command", [
    ("SET", "other:key", "1"),
    ("GET", "other:key"),
    ("FLUSHALL",),
    ("CONFIG", "GET", "maxmemory"),
    ("KEYS", "*"),
    ("EVAL", "return 1", "0"),
    ("SUBSCRIBE", "other-channel"),
])
def test_other_keys_and_dangerous_commands_are_refused(url: str, admin: redis.Redis,
                                                       command: tuple[str, ...]) -> None:
    admin.set("other:key", "theirs")
    client = redis.Redis.from_url(url)
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.execute_command(*command)
    finally:
        client.close()
    assert admin.get("other:key") == "theirs"


def test_a_script_cannot_reach_past_the_key_pattern(url: str, admin: redis.Redis) -> None:
    admin.set("other:key", "theirs")
    client = redis.Redis.from_url(url)
    declared = client.register_script("return redis.call('GET', KEYS[1])")
    undeclared = client.register_script("return redis.call('GET', 'other:key')")
    with pytest.raises(redis.exceptions.NoPermissionError):
        declared(keys=["other:key"])
    with pytest.raises(redis.exceptions.ResponseError, match="can't access at least one"):
        undeclared()
    client.close()
