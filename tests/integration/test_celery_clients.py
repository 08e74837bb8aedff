"""Celery clients (Celery 5.7, its own send_task and AsyncResult) with taskfleet workers
serving the queue (``--celery-queues``), on a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from taskfleet import App
from taskfleet.keys import QueueKeys
from taskfleet_operator.deployment import build_deployment
from taskfleet_operator.model import parse_task_queue, parse_worker_pool
from testenv.foreign_workers import ForeignWorker, celery_worker
from testenv.processes import WorkerProcess
from testenv.waiting import wait_for

MOVED_APP = "tests.integration.apps.celery_moved:app"
FAILING_APP = "tests.integration.apps.celery_failing:app"


@pytest.fixture
def celery_client(redis_url: str) -> Iterator[Celery]:
    """A Celery producer that does not import the task code (send_task by name)."""
    client = Celery("web", broker=redis_url, backend=redis_url)
    yield client
    client.close()


def worker(redis_url: str, *extra: str) -> WorkerProcess:
    return WorkerProcess(redis_url, MOVED_APP, ["films"],
                         extra=["--celery-queues", "films", *extra])


def test_send_task_of_every_priority_runs_on_taskfleet_and_get_returns_the_result(
        redis_url: str, redis_client: redis.Redis, celery_client: Celery,
        workers: list[WorkerProcess]) -> None:
    results = [celery_client.send_task("video.sleep", args=[f"v{p}", 0.01], queue="films",
                                       priority=p) for p in range(10)]
    workers.append(worker(redis_url).start())
    assert sorted(r.get(timeout=60) for r in results) == sorted(f"v{p}" for p in range(10))
    assert all(r.status == "SUCCESS" for r in results)
    assert redis_client.llen("test:celery:done") == 10
    for step in ("", "\x06\x163", "\x06\x166", "\x06\x169"):
        assert redis_client.llen(f"films{step}") == 0


def test_a_waiting_get_wakes_when_the_task_finishes(
        redis_url: str, celery_client: Celery, workers: list[WorkerProcess]) -> None:
    workers.append(worker(redis_url).start())
    result = celery_client.send_task("video.sleep", args=["late", 1.5], queue="films")
    assert result.get(timeout=60) == "late"


def test_kill_9_of_the_worker_mid_task_loses_nothing(
        redis_url: str, redis_client: redis.Redis, celery_client: Celery,
        workers: list[WorkerProcess]) -> None:
    result = celery_client.send_task("video.sleep", args=["kept", 4.0], queue="films")
    first = worker(redis_url, "--task-lease-seconds", "2").start()
    workers.append(first)
    wait_for("the task runs", lambda: redis_client.llen("test:celery:started") == 1, 30)
    first.kill_group()
    assert redis_client.llen("test:celery:done") == 0
    workers.append(worker(redis_url, "--task-lease-seconds", "2").start())
    assert result.get(timeout=60) == "kept"
    assert redis_client.lrange("test:celery:started", 0, -1) == ["kept", "kept"]
    assert redis_client.lrange("test:celery:done", 0, -1) == ["kept"]


def test_a_pickled_message_is_dead_lettered_with_the_reason_and_never_run(
        redis_url: str, redis_client: redis.Redis, celery_client: Celery,
        workers: list[WorkerProcess]) -> None:
    pickled = celery_client.send_task("video.sleep", args=["evil", 0], queue="films",
                                      serializer="pickle")
    fine = celery_client.send_task("video.sleep", args=["fine", 0], queue="films")
    workers.append(worker(redis_url).start())
    assert fine.get(timeout=60) == "fine"
    dead = App(redis_url).broker.dead_list("films")
    assert [d.id for d in dead] == [pickled.id]
    assert "serialized as 'application/x-python-serialize': refused and never deserialized" \
        in dead[0].reason
    assert redis_client.lrange("test:celery:started", 0, -1) == ["fine"]


def test_a_failed_task_fails_the_clients_get(
        redis_url: str, celery_client: Celery, workers: list[WorkerProcess]) -> None:
    result = celery_client.send_task("video.broken", args=["v9"], queue="films")
    workers.append(worker(redis_url).start())
    with pytest.raises(Exception, match="cannot transcode v9"):
        result.get(timeout=60)
    assert result.status == "FAILURE"


def test_countdown_and_callbacks_are_refused_with_the_reason(
        redis_url: str, redis_client: redis.Redis, celery_client: Celery,
        workers: list[WorkerProcess]) -> None:
    later = celery_client.send_task("video.sleep", args=["later", 0], queue="films",
                                    countdown=30)
    linked = celery_client.send_task("video.sleep", args=["linked", 0], queue="films",
                                     link=celery_client.signature("video.sleep",
                                                                  args=["cb", 0]))
    fine = celery_client.send_task("video.sleep", args=["fine", 0], queue="films")
    workers.append(worker(redis_url).start())
    assert fine.get(timeout=60) == "fine"
    reasons = {d.id: d.reason for d in App(redis_url).broker.dead_list("films")}
    assert "eta/countdown/expires are not carried over" in reasons[later.id]
    assert "callbacks are not carried over" in reasons[linked.id]
    assert redis_client.lrange("test:celery:started", 0, -1) == ["fine"]


def test_the_processes_pool_passes_celery_queues_to_its_children(
        redis_url: str, celery_client: Celery, workers: list[WorkerProcess]) -> None:
    results = [celery_client.send_task("video.sleep", args=[f"p{i}", 0.01], queue="films")
               for i in range(4)]
    workers.append(WorkerProcess(redis_url, MOVED_APP, ["films"], concurrency=2,
                                 pool="processes", extra=["--celery-queues", "films"]).start())
    assert sorted(r.get(timeout=60) for r in results) == ["p0", "p1", "p2", "p3"]


def test_a_celery_message_over_the_limit_is_dead_lettered_by_adopt_undecoded(
        redis_url: str, redis_client: redis.Redis, celery_client: Celery,
        workers: list[WorkerProcess]) -> None:
    """Celery checks no size: a message over taskfleet's 1 MiB limit (one that would run
    fine) is moved by ADOPT straight to the dead-letter list, whole, with the reason."""
    big = celery_client.send_task("video.sleep", args=["x" * (1 << 20), 0], queue="films")
    fine = celery_client.send_task("video.sleep", args=["fine", 0], queue="films")
    workers.append(worker(redis_url).start())
    assert fine.get(timeout=60) == "fine"
    [dead] = App(redis_url).broker.dead_list("films")
    assert dead.reason.startswith("Celery message of "), dead.reason
    assert "over the limit of 1048576 (max_message_bytes): refused undecoded" in dead.reason
    assert json.loads(dead.body)["headers"]["id"] == big.id, "kept whole"
    assert redis_client.lrange("test:celery:started", 0, -1) == ["fine"]


def test_dead_lettered_celery_tasks_are_requeued_onto_their_celery_queue_for_celery(
        redis_url: str, redis_client: redis.Redis, celery_client: Celery,
        workers: list[WorkerProcess], foreign: list[ForeignWorker], tmp_path: Path) -> None:
    """`taskfleet dead requeue` puts a Celery client's dead-lettered task back on its
    Celery queue in Celery's wire format: a real `celery worker` runs both kinds (the
    client's envelope as sent, and a task retried by taskfleet first) and the client's
    get() returns their results."""
    retried = celery_client.send_task("video.sleep", args=["again", 0], queue="films")
    unknown = celery_client.send_task("video.where", args=[0], queue="films", priority=5)
    sent = {json.loads(raw)["headers"]["id"]: raw
            for step in ("", "\x06\x163") for raw in redis_client.lrange(f"films{step}", 0, -1)}
    failing = WorkerProcess(redis_url, FAILING_APP, ["films"],
                            extra=["--celery-queues", "films"]).start()
    workers.append(failing)
    wait_for("both dead-lettered", lambda: redis_client.llen(QueueKeys("films").dead) == 2, 60,
             describe=failing.output)
    failing.stop()
    listed = dead_command(redis_url, "list")
    reasons = {d["id"]: d["reason"] for d in map(json.loads, listed.stdout.splitlines())}
    assert reasons[retried.id].startswith("failed after 1 retries: OSError"), reasons
    assert reasons[unknown.id].startswith("unknown task 'video.where'"), reasons

    requeue = dead_command(redis_url, "requeue")
    assert (requeue.returncode, requeue.stdout, requeue.stderr) == (0, "requeued 2\n", "")
    assert redis_client.llen(QueueKeys("films").dead) == 0
    # where a Celery client puts them: the client's envelope as it sent it, on the list of
    # its priority; the retried task as a new envelope (retries reset) on the bare list
    assert redis_client.lrange("films\x06\x163", 0, -1) == [sent[unknown.id]]
    [again] = redis_client.lrange("films", 0, -1)
    envelope = json.loads(again)
    assert (envelope["headers"]["id"], envelope["headers"]["task"],
            envelope["headers"]["retries"]) == (retried.id, "video.sleep", 0)
    assert QueueKeys("films").messages not in redis_client.keys("tf:*"), \
        "nothing went to the taskfleet queue"

    assert retried.status == unknown.status == "FAILURE", "as their dead-lettering left them"
    celery = celery_worker(redis_url, "films-celery-0", ["films"],
                           log=tmp_path / "celery.log").start()
    foreign.append(celery)

    def outcome(task_id: str) -> object:  # a new handle: a final state is cached
        return celery_client.AsyncResult(task_id).state
    wait_for("the Celery worker ran both", lambda: outcome(retried.id) == outcome(unknown.id)
             == "SUCCESS", 90, describe=celery.output)
    assert celery_client.AsyncResult(retried.id).get(timeout=10) == "again"
    assert celery_client.AsyncResult(unknown.id).get(timeout=10) == "films-celery-0"


def dead_command(redis_url: str, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taskfleet", "--broker", redis_url, "dead",
                           action, "films"], capture_output=True, text=True, timeout=60)


def test_a_queues_priority_steps_reach_the_worker_through_its_deployment(
        redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess]) -> None:
    """spec.celery.prioritySteps other than kombu's default: Celery clients configured
    with them send into other priority lists, which the worker serves because the
    Deployment passes the steps and the worker takes them (it read the default lists
    whatever the TaskQueue said)."""
    client = Celery("web", broker=redis_url, backend=redis_url)
    client.conf.broker_transport_options = {"priority_steps": [0, 5]}
    try:
        results = [client.send_task("video.sleep", args=[f"s{p}", 0.01], queue="films",
                                    priority=p) for p in range(10)]
        assert redis_client.llen("films\x06\x165") > 0, "kombu used the step-5 list"
        pool = parse_worker_pool({"metadata": {"namespace": "ns", "name": "films"},
                                  "spec": {"queues": ["films"], "app": MOVED_APP}})
        tq = parse_task_queue({"metadata": {"namespace": "ns", "name": "films"},
                               "spec": {"redis": {"url": redis_url}, "protocol": "celery",
                                        "celery": {"prioritySteps": [0, 5]}}})
        args = build_deployment(pool, [tq], 1)["spec"]["template"]["spec"][
            "containers"][0]["args"]
        workers.append(WorkerProcess(redis_url, MOVED_APP, ["films"],
                                     extra=args[args.index("--celery-queues"):]).start())
        assert sorted(r.get(timeout=30) for r in results) == sorted(f"s{p}" for p in range(10))
        assert redis_client.llen("films") == redis_client.llen("films\x06\x165") == 0
    finally:
        client.close()
