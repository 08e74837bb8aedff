"""TaskQueues of protocol celery and rq read by the operator's observe step, against a real
redis-server, real Celery 5 and RQ workers, and tasks sent by their own clients."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from rq import Queue, Worker
from rq.executions import prepare_execution

from taskfleet import celery_wire
from taskfleet.broker import Broker
from taskfleet.connection import connect
from taskfleet.settings import BrokerSettings
from taskfleet_operator.deployment import build_deployment
from taskfleet_operator.model import RedisRef, TaskQueue, parse_worker_pool
from taskfleet_operator.observe import RedisDirectory, RedisObserver
from testenv.foreign_workers import (
    BIN,
    CELERY_APP,
    ForeignWorker,
    celery_worker,
    rq_worker,
)
from testenv.processes import ROOT
from testenv.waiting import wait_for
from tests.integration.apps import celery_tasks

POD = "films-7d9c8b6f5-x2k4q"
"""A pod name as a Deployment named ``films`` gives it."""


def queue(name: str, url: str, protocol: str) -> TaskQueue:
    return TaskQueue(namespace="ns", name=name, uid="", generation=1, queue_name=name,
                     redis=RedisRef(url=url), protocol=protocol)


@pytest.fixture
def observer() -> Iterator[RedisObserver]:
    found = RedisObserver(RedisDirectory(lambda ns, ref: ""))
    yield found
    found.close()


def test_celery_priorities_0_to_9_are_all_counted(redis_url: str, redis_client: redis.Redis,
                                                  observer: RedisObserver,
                                                  celery_app: object) -> None:
    for priority in range(10):
        celery_tasks.sleep.apply_async(("p", 0), queue="films", priority=priority)
    tq = queue("films", redis_url, "celery")
    stats = observer.read_queues([tq])[tq.key].stats
    assert stats is not None
    assert (stats.ready, stats.in_flight) == (10, 0)
    # kombu spreads them over four lists; the bare list (what one LLEN reads) has three
    assert redis_client.llen("films") == 3
    assert sum(redis_client.llen(f"films\x06\x16{step}") for step in (3, 6, 9)) == 7


def test_celery_running_and_reserved_tasks_are_in_flight(
        redis_url: str, redis_client: redis.Redis, observer: RedisObserver,
        foreign: list[ForeignWorker], celery_app: object, tmp_path: Path) -> None:
    tq = queue("films", redis_url, "celery")
    observer.read_queues([tq])  # subscribes to the worker events
    foreign.append(celery_worker(redis_url, POD, ["films"], concurrency=2,
                                 log=tmp_path / "celery.log").start())
    for i in range(5):
        celery_tasks.sleep.apply_async((str(i), 8.0), queue="films")
    wait_for("two tasks running", lambda: redis_client.llen("test:celery:started") == 2, 60,
             describe=foreign[0].output)
    # two run (acknowledged, so no longer in Redis), three are prefetched into unacked
    wait_for("the heartbeats say two run on the pod",
             lambda: observer.busy_by_pod(tq) == {POD: 2}, 15,
             describe=lambda: str(observer.busy_by_pod(tq)))
    stats = observer.read_queues([tq])[tq.key].stats
    assert stats is not None
    assert (stats.ready, stats.in_flight) == (0, 3)
    assert redis_client.hlen("unacked") == 3


def test_celery_heartbeats_unknown_until_heard_then_idle(
        redis_url: str, observer: RedisObserver, foreign: list[ForeignWorker],
        tmp_path: Path) -> None:
    tq = queue("films", redis_url, "celery")
    foreign.append(celery_worker(redis_url, POD, ["films"], log=tmp_path / "celery.log").start())
    assert observer.busy_by_pod(tq) is None, "no data yet: the pool must hold, not scale"
    wait_for("an idle worker heard", lambda: observer.busy_by_pod(tq) == {POD: 0}, 30,
             describe=foreign[0].output)
    foreign[0].stop()  # worker-offline: gone at once
    wait_for("the stopped worker forgotten", lambda: observer.busy_by_pod(tq) == {}, 15)


def test_rq_ready_oldest_age_started_and_busy_workers(
        redis_url: str, redis_client: redis.Redis, observer: RedisObserver,
        foreign: list[ForeignWorker], tmp_path: Path) -> None:
    rq_queue = Queue("clips", connection=redis.Redis.from_url(redis_url))
    for i in range(3):
        rq_queue.enqueue("tests.integration.apps.rq_jobs.sleep", str(i), 8.0)
    tq = queue("clips", redis_url, "rq")
    time.sleep(1.2)
    stats = observer.read_queues([tq])[tq.key].stats
    assert stats is not None
    assert (stats.ready, stats.in_flight) == (3, 0)
    assert 1.0 <= stats.oldest_age_seconds < 60
    assert observer.busy_by_pod(tq) == {}
    foreign.append(rq_worker(redis_url, POD, ["clips"], log=tmp_path / "rq.log").start())
    wait_for("one job running", lambda: redis_client.llen("test:rq:started") == 1, 60,
             describe=foreign[0].output)
    stats = observer.read_queues([tq])[tq.key].stats
    assert stats is not None
    assert (stats.ready, stats.in_flight) == (2, 1)
    assert observer.busy_by_pod(tq) == {POD: 1}


def test_an_rq_job_being_started_is_counted_once(redis_url: str,
                                                observer: RedisObserver) -> None:
    """RQ's worker registers a job's execution (the started registry) before its work
    horse removes the id from the intermediate list (rq/executions.py prepare_execution,
    BaseWorker.prepare_job_execution): in between, the job is in both, and must be
    counted once (counted twice, a pool scaled up for a job it already runs)."""
    connection = redis.Redis.from_url(redis_url)
    rq_queue = Queue("clips", connection=connection)
    job = rq_queue.enqueue("tests.integration.apps.rq_jobs.sleep", "x", 0.0)
    rq_queue.enqueue("tests.integration.apps.rq_jobs.sleep", "y", 0.0)
    # as a worker takes it: moved to the intermediate list, then its execution prepared
    connection.lmove(rq_queue.key, rq_queue.intermediate_queue_key, "LEFT", "RIGHT")
    prepare_execution(Worker([rq_queue], connection=connection, name=POD), job)
    tq = queue("clips", redis_url, "rq")
    stats = observer.read_queues([tq])[tq.key].stats
    assert stats is not None
    assert (stats.ready, stats.in_flight) == (1, 1)


def test_celery_tasks_a_taskfleet_worker_took_stay_counted(
        redis_url: str, observer: RedisObserver, celery_app: object) -> None:
    for i in range(3):
        celery_tasks.sleep.apply_async((str(i), 0), queue="films", priority=i * 3)
    broker = Broker(connect(redis_url),
                    BrokerSettings(celery_queues={"films": celery_wire.DEFAULT_PRIORITY_STEPS}))
    taken = broker.fetch("films", 2, 30_000)  # moved from Celery's lists and leased
    assert [d.id for d in taken] != []
    tq = queue("films", redis_url, "celery")
    stats = observer.read_queues([tq])[tq.key].stats
    assert stats is not None
    assert (stats.ready, stats.in_flight) == (1, 2)


def probe(pool_spec: dict[str, object], tq: TaskQueue, env: dict[str, str]
          ) -> subprocess.CompletedProcess[bytes]:
    """Run the liveness probe of the pool's Deployment as the kubelet would, in the pod's
    environment (here: the host, with the pod's variables)."""
    pool = parse_worker_pool({"metadata": {"namespace": "ns", "name": "films"},
                              "spec": {"queues": [tq.name], **pool_spec}})
    [c] = build_deployment(pool, [tq], 1)["spec"]["template"]["spec"]["containers"]
    command = [str(BIN / c) if i == 0 and c in ("python",) else c
               for i, c in enumerate(c["livenessProbe"]["exec"]["command"])]
    return subprocess.run(command, env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
                                        "POD_NAME": POD, **env},
                          cwd=ROOT, capture_output=True, timeout=60)


def test_the_celery_and_rq_liveness_probes_pass_on_a_live_worker_and_fail_without(
        redis_url: str, foreign: list[ForeignWorker], tmp_path: Path) -> None:
    celery_pool = {"runtime": "celery", "app": CELERY_APP}
    celery_env = {"CELERY_BROKER_URL": redis_url}
    tq = queue("films", redis_url, "celery")
    assert probe(celery_pool, tq, celery_env).returncode != 0, "no worker: fails"
    live = celery_worker(redis_url, POD, ["films"], log=tmp_path / "celery.log").start()
    foreign.append(live)
    wait_for("the celery probe passes", lambda: probe(celery_pool, tq, celery_env)
             .returncode == 0, 60, describe=live.output)
    rq_tq = queue("clips", redis_url, "rq")
    rq_env = {"RQ_REDIS_URL": redis_url}
    assert probe({"runtime": "rq"}, rq_tq, rq_env).returncode != 0, "no worker: fails"
    rq_live = rq_worker(redis_url, POD, ["clips"], log=tmp_path / "rq.log").start()
    foreign.append(rq_live)
    wait_for("the rq probe passes", lambda: probe({"runtime": "rq"}, rq_tq, rq_env)
             .returncode == 0, 60, describe=rq_live.output)
    rq_live.stop()  # a clean stop removes the worker's key
    assert probe({"runtime": "rq"}, rq_tq, rq_env).returncode != 0
