"""On a real Redis Cluster (three masters, a replica each): what only a cluster can break."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from redis.crc import key_slot

from taskfleet import App, keys, queue_stats, scripts
from taskfleet.broker import Ack, DeadLetter, RetryLater, Return, message_json
from taskfleet.connection import connect
from taskfleet.message import Message
from taskfleet.result import success_record
from taskfleet.schedule import Schedule, Scheduler
from testenv.processes import ROOT, WorkerProcess
from testenv.redis_cluster import RedisClusterServers
from testenv.waiting import wait_for

SAMPLE = "tests.integration.apps.sample:app"
MOVING = "moving-5623"
"""A queue in slot 0: the lowest slot of whichever master has it, so `redis-cli --cluster
reshard --cluster-slots 1` moves exactly it."""


@pytest.fixture
def servers(redis_cluster: RedisClusterServers) -> RedisClusterServers:
    redis_cluster.flushall()
    return redis_cluster


def test_a_queues_slot_migrated_back_and_forth_while_workers_run_loses_nothing(
        servers: RedisClusterServers, workers: list[WorkerProcess], tmp_path: Path) -> None:
    assert key_slot(MOVING.encode()) == 0
    url = servers.url
    app = App(url)
    sent = [r.id for r in app.send_many("sample.add", [[i, 0] for i in range(2000)],
                                        queue=MOVING)]
    for i in range(2):
        workers.append(WorkerProcess(url, SAMPLE, [MOVING], concurrency=4,
                                     log=tmp_path / f"worker-{i}.log").start())
    more: list[str] = []

    def produce() -> None:  # single sends go on through the migrations
        for i in range(1000):
            more.append(app.send_task("sample.add", [i, 1], queue=MOVING).id)

    producer = threading.Thread(target=produce)
    producer.start()
    home = servers.port_of_slot(0)
    other = next(p for p in servers.master_ports() if p != home)
    for target in (other, home, other):
        servers.move_slot(0, target)
        assert servers.port_of_slot(0) == target
    producer.join(120)
    ids = sent + more
    assert len(ids) == 3000
    wait_for("every task done", lambda: queue_stats(app.redis, [MOVING])[MOVING].ready == 0
             and queue_stats(app.redis, [MOVING])[MOVING].in_flight == 0, 120)
    client = app.redis
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.exists(keys.result_key(task_id))
    missing = [t for t, found in zip(ids, pipe.execute(), strict=True) if not found]
    assert missing == [], f"{len(missing)} tasks without a result"
    st = queue_stats(app.redis, [MOVING])[MOVING]
    assert (st.ready, st.in_flight, st.delayed, st.dead) == (0, 0, 0, 0)


def test_a_wake_up_published_on_one_master_reaches_a_subscriber_on_another(
        servers: RedisClusterServers) -> None:
    """Wake-ups use plain PUBLISH, which a cluster sends to every node: a worker or the
    operator subscribed anywhere hears every queue."""
    client = connect(servers.url)
    names = ["alpha", "beta", "gamma", "delta"]
    subscriber = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    subscriber.psubscribe("tf:{*}:wake")
    nodes = {client.get_node_from_key(keys.QueueKeys(n).messages).name  # type: ignore[union-attr]
             for n in names}
    assert len(nodes) >= 2
    try:
        app = App(servers.url)
        for n in names:
            app.send_task("sample.add", [1, 1], queue=n)
        heard = set()
        for _ in range(50):
            message = subscriber.get_message(timeout=0.2)
            if message is not None:
                heard.add(keys.queue_of_key(message["channel"]))
            if heard == set(names):
                break
        assert heard == set(names)
    finally:
        subscriber.close()


def test_inspect_without_names_finds_the_queues_of_every_master(
        servers: RedisClusterServers) -> None:
    app = App(servers.url)
    names = ["alpha", "beta", "gamma", "delta"]
    for i, n in enumerate(names):
        app.send_many("sample.add", [[1, 1]] * (i + 1), queue=n)
    out = subprocess.run([sys.executable, "-m", "taskfleet", "--broker", servers.url,
                          "inspect", "--json"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    queues = json.loads(out)["queues"]
    assert {n: queues[n]["ready"] for n in names} == {"alpha": 1, "beta": 2, "gamma": 3,
                                                      "delta": 4}


def test_replica_acks_on_a_cluster_waits_on_each_queues_master(
        servers: RedisClusterServers, workers: list[WorkerProcess], tmp_path: Path) -> None:
    url = servers.url + "?replica_acks=1"
    app = App(url)
    assert app.broker.settings.replica_acks == 1
    names = ["alpha", "beta", "gamma", "delta"]
    results = [app.send_task("sample.add", [i, i], queue=n) for i, n in enumerate(names)]
    workers.append(WorkerProcess(url, SAMPLE, names, log=tmp_path / "worker.log").start())
    assert [r.get(timeout=30) for r in results] == [0, 2, 4, 6]
    assert "replica" not in (tmp_path / "worker.log").read_text(), "no WAIT came up short"


def test_every_script_runs_on_a_cluster_each_in_its_queues_slot(
        servers: RedisClusterServers) -> None:
    """Each Lua script, run by the operation that uses it, on queues of different masters:
    a script touching two slots would fail with CROSSSLOT here."""
    app = App(servers.url)
    broker = app.broker
    covered: set[str] = set()
    for name in ["alpha", "beta", "gamma"]:
        results = app.send_many("sample.add", [[i, i] for i in range(4)], queue=name)
        covered.add("ENQUEUE")
        taken = broker.fetch(name, 4, 30_000)
        covered.add("FETCH")
        assert len(taken) == 4
        for d in taken:
            d.message = Message.decode(message_json(d.body))
        time.sleep(0.01)  # a later deadline: EXTEND counts the leases it changed
        assert broker.extend(name, [d.id for d in taken], 30_000) == 4
        covered.add("EXTEND")
        assert d.message is not None
        broker.settle([Ack(taken[0], result=success_record("sample.add", 0)),
                       RetryLater(taken[1], d.message, due_ms=int(time.time() * 1000) + 60_000),
                       DeadLetter(taken[2], reason="test"), Return(taken[3])])
        covered |= {"STORE_RESULT", "RETRY", "DEAD", "RETURN"}
        assert results[0].get(timeout=5) == 0
        st = queue_stats(app.redis, [name])[name]
        covered.add("STATS")
        assert (st.ready, st.in_flight, st.delayed, st.dead) == (1, 0, 1, 1)
        schedule = Schedule.from_dict({"name": "s", "cron": "* * * * *", "task": "sample.add"},
                                      queue=name)
        scheduler = Scheduler(broker)
        t0 = datetime(2026, 11, 24, 9, 59, 30, tzinfo=UTC)
        scheduler.run_due(schedule, t0)
        assert scheduler.run_due(schedule, t0 + timedelta(seconds=40)).sent is not None
        covered.add("ENQUEUE_ONCE")
    every = {n for n, v in vars(scripts).items() if n.isupper() and not n.startswith("_")
             and isinstance(v, str)}
    # Many queues per call: one server only; on a cluster queue_stats sends STATS per queue.
    one_server_only = {"STATS_MANY"}
    assert covered == every - one_server_only, f"scripts not run here: {every - covered}"


def test_a_cluster_master_killed_under_load_loses_nothing_with_replica_acks(
        workers: list[WorkerProcess], tmp_path: Path) -> None:
    """The cluster promotes the dead master's replica; workers and the producer follow the
    new slot map without a restart."""
    own = RedisClusterServers().start()  # its own: a master dies
    try:
        url = own.url + "?replica_acks=1"
        app = App(url)
        names = ["alpha", "beta", "gamma", "delta"]
        for i in range(2):
            workers.append(WorkerProcess(url, SAMPLE, names, concurrency=4,
                                         extra=["--task-lease-seconds", "5"],
                                         log=tmp_path / f"worker-{i}.log").start())
        acknowledged: list[str] = []

        def produce() -> None:
            i = 0
            while i < 2000:
                try:
                    acknowledged.append(app.send_task("sample.add", [i, 0],
                                                      queue=names[i % 4]).id)
                    i += 1
                except Exception:  # an error is no promise: send it again
                    time.sleep(0.05)
                time.sleep(0.002)

        producer = threading.Thread(target=produce)
        producer.start()
        wait_for("a share sent", lambda: len(acknowledged) >= 500, 60)
        victim = own.port_of_slot(key_slot(b"alpha"))
        own.kill(victim)
        wait_for("the replica promoted", lambda: _promoted(own, victim), 60)
        # Back as the new master's replica: with replica_acks=1 its shard takes writes
        # again (until then they fail: there is no replica to acknowledge them).
        own.restart(victim)
        producer.join(300)
        assert len(acknowledged) == 2000

        def missing() -> list[str]:
            pipe = app.redis.pipeline(transaction=False)
            for task_id in acknowledged:
                pipe.exists(keys.result_key(task_id))
            return [t for t, found in zip(acknowledged, pipe.execute(), strict=True)
                    if not found]

        wait_for("every acknowledged task done", lambda: not missing(), 120,
                 describe=lambda: f"{len(missing())} without a result")
        assert victim not in own.master_ports()
    finally:
        for w in workers:
            w.stop()
        own.close()


def _promoted(servers: RedisClusterServers, dead: int) -> bool:
    try:
        return servers.port_of_slot(key_slot(b"alpha")) != dead
    except Exception:
        return False
