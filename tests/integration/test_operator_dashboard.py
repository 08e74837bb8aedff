"""The dashboard as the operator serves it shows what its controller read: a Celery and an
RQ queue with their figures as their own readers count them (a real operator, a real API
server and a real redis-server), and a page costs no Redis command (the server's INFO
commandstats before and after); worker heartbeats are read off the request path, and
only while somebody looks."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from rq import Queue

from taskfleet import App
from taskfleet.dashboard import AccessSettings, build_app
from taskfleet.dashboard.server import serve_in_thread
from taskfleet.heartbeat import WorkerInfo, publish
from taskfleet_operator.controller import Controller
from taskfleet_operator.dashboard import RegistrySource, WorkerHeartbeats
from taskfleet_operator.observe import RedisDirectory, RedisObserver
from taskfleet_operator.registry import Registry
from testenv.cluster import Cluster
from testenv.operator import DiscardedWrites, OperatorProcess
from testenv.redis_server import free_port
from testenv.resources import task_queue
from testenv.waiting import answers, wait_for
from tests.integration.apps import celery_tasks

QUEUES = (("films", "celery", 10), ("clips", "rq", 4), ("jobs", "native", 3))
"""(name, protocol, tasks enqueued) of each queue."""


def fill(redis_url: str) -> None:
    """Each queue's tasks, sent by its own protocol's client (Celery: one per priority, over
    kombu's four lists)."""
    for priority in range(10):
        celery_tasks.sleep.apply_async(("p", 0), queue="films", priority=priority)
    clips = Queue("clips", connection=redis.Redis.from_url(redis_url))
    for i in range(4):
        clips.enqueue("tests.integration.apps.rq_jobs.sleep", str(i), 0.1)
    App(redis_url).send_many("sample.add", [[i, i] for i in range(3)], queue="jobs")


def overview(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}api/overview", timeout=10) as answer:
        found: dict[str, Any] = json.loads(answer.read())
        return found


def ready_by_label(url: str) -> dict[str, Any]:
    return {r["label"]: r.get("ready", r.get("error")) for r in overview(url)["queues"]}


@pytest.fixture
def operator_dashboard(crds: Cluster, namespace: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    op = OperatorProcess(crds, namespace, tmp_path / "operator.log")
    op.argv += ["--dashboard-port", str(port)]
    op.start()
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for("the operator's dashboard up", lambda: answers(url), timeout=60,
                 describe=op.log)
        yield url
    finally:
        op.stop()
        print(f"--- operator log ---\n{op.log()}")


def test_celery_and_rq_queues_show_their_own_figures_under_the_operator(
        operator_dashboard: str, cluster: Cluster, namespace: str, redis_url: str,
        celery_app: object) -> None:
    for name, protocol, _ in QUEUES:
        cluster.apply(yaml.safe_dump(task_queue(name, redis_url, protocol=protocol)),
                      namespace=namespace)
    fill(redis_url)
    expected = {f"{namespace}/{name}": count for name, _, count in QUEUES}
    wait_for("every queue's figure on the dashboard",
             lambda: ready_by_label(operator_dashboard) == expected, timeout=30,
             describe=lambda: str(ready_by_label(operator_dashboard)))


NOT_READS = {"cmdstat_info", "cmdstat_hello", "cmdstat_ping", "cmdstat_client|setinfo",
             "cmdstat_client|setname", "cmdstat_subscribe", "cmdstat_psubscribe"}
"""INFO (this one), and what the observer's listeners send when they connect, in their own
threads and at their own moment (a Celery queue's event subscription): no reads."""


def commands(client: redis.Redis) -> dict[str, int]:
    """Calls of every command the server ran so far that reads or writes data."""
    stats: dict[str, dict[str, int]] = client.info("commandstats")
    return {name: figures["calls"] for name, figures in stats.items() if name not in NOT_READS}


@pytest.fixture
def in_process(redis_url: str) -> Iterator[tuple[Registry, RedisDirectory, Controller]]:
    registry = Registry()
    for name, protocol, _ in QUEUES:
        registry.queue_changed("ADDED", {
            "metadata": {"namespace": "ns", "name": name, "uid": name, "generation": 1},
            "spec": {"redis": {"url": redis_url}, "protocol": protocol}})
    directory = RedisDirectory(lambda namespace, ref: "")
    observer = RedisObserver(directory)
    yield registry, directory, Controller(registry, DiscardedWrites(replicas=1), observer,
                                          default_image="worker:test")
    observer.close()


def test_a_dashboard_page_costs_no_redis_command(
        in_process: tuple[Registry, RedisDirectory, Controller], redis_url: str,
        redis_client: redis.Redis, celery_app: object) -> None:
    registry, directory, controller = in_process
    fill(redis_url)
    controller.reconcile()  # the controller's pass reads every queue
    source = RegistrySource(registry, directory, lambda: controller.taskqueues.readings,
                            lambda: True, WorkerHeartbeats(directory))
    stop = threading.Event()
    port = free_port()
    serve_in_thread(build_app(source, AccessSettings()), "127.0.0.1", port, stop)
    try:
        url = f"http://127.0.0.1:{port}/"
        before = commands(redis_client)
        pages = [overview(url) for _ in range(20)]
        assert commands(redis_client) == before, "a page ran Redis commands"
    finally:
        stop.set()
    assert {r["label"]: r["ready"] for r in pages[-1]["queues"]} == {
        f"ns/{name}": count for name, _, count in QUEUES}


def test_worker_heartbeats_are_read_only_while_somebody_looks(
        in_process: tuple[Registry, RedisDirectory, Controller], redis_client: redis.Redis
        ) -> None:
    _, directory, controller = in_process
    controller.reconcile()  # the directory's client of the queues' Redis
    publish(redis_client, WorkerInfo(id="w1", pod="jobs-worker-1", queues=["jobs"], busy=1,
                                     concurrency=2, last_seen=time.time(),
                                     current=("sample.add t1",)))
    heartbeats = WorkerHeartbeats(directory, interval=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=heartbeats.run, args=(stop,), daemon=True)
    thread.start()
    try:
        before = commands(redis_client)
        time.sleep(1.0)
        assert commands(redis_client) == before, "nobody looked: nothing read"
        wait_for("the worker read once asked",
                 lambda: [w.pod for w in heartbeats.latest()] == ["jobs-worker-1"], timeout=10)
    finally:
        stop.set()
        thread.join(5)
