"""runtime celery and rq pools under the operator: a real API server (pods on kwok nodes),
a real redis-server, and real ``celery worker`` / ``rq worker`` processes started by the
test under the names of the pool's pods, as the pods' containers would run them."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import yaml
from rq import Queue

from testenv.cluster import Cluster
from testenv.foreign_workers import CELERY_APP, ForeignWorker, celery_worker, rq_worker
from testenv.resources import FAST_SCALING, Pool, task_queue
from testenv.waiting import assert_stays, wait_for
from tests.integration.apps import celery_tasks

COST = "controller.kubernetes.io/pod-deletion-cost"


def pod_names(pool: Pool) -> set[str]:
    return {p["metadata"]["name"] for p in pool.pods()}


def annotation(pool: Pool, pod: str) -> str | None:
    found = pool.cluster.get("pod", pod, pool.namespace) or {}
    value: str | None = (found.get("metadata", {}).get("annotations") or {}).get(COST)
    return value


def foreign_pool(pools: Callable[[str], Pool], cluster: Cluster, namespace: str,
                 redis_url: str, name: str, runtime: str, target: int, **spec: Any) -> Pool:
    """A TaskQueue read as ``runtime``'s protocol and a pool of that runtime, at zero."""
    cluster.apply(yaml.safe_dump(task_queue(name, redis_url, protocol=runtime)),
                  namespace=namespace)
    pool = pools(name).apply([name], {"minReplicas": 0, "maxReplicas": 3,
                                      "targetPerReplica": target,
                                      "scaleToZeroAfterSeconds": 2, **FAST_SCALING},
                             runtime=runtime, **spec)
    pool.wait_replicas(0)
    return pool


def test_celery_burst_of_every_priority_scales_a_celery_pool_out_and_to_zero(
        pools: Callable[[str], Pool], cluster: Cluster, namespace: str, redis_url: str,
        redis_client: redis.Redis, celery_app: object, foreign: list[ForeignWorker],
        tmp_path: Path) -> None:
    pool = foreign_pool(pools, cluster, namespace, redis_url, "films", "celery", 5,
                        app=CELERY_APP)
    for priority in range(10):  # kombu puts them on four lists
        celery_tasks.sleep.apply_async((str(priority), 0.1), queue="films", priority=priority)
    pool.wait_replicas(2)
    assert pool.scale_events()[0].startswith("ready=10 inFlight=0 target=5 → 2")
    dep = pool.deployment()
    assert dep is not None
    [container] = dep["spec"]["template"]["spec"]["containers"]
    assert [container["command"][0], *container["args"][:5]] == [
        "celery", "-A", CELERY_APP, "worker", "-Q", "films"]
    for pod in pod_names(pool):
        foreign.append(celery_worker(redis_url, pod, ["films"],
                                     log=tmp_path / f"{pod}.log").start())
    wait_for("all ten ran", lambda: redis_client.llen("test:celery:done") == 10, 60,
             describe=lambda: "\n".join(w.output()[-2000:] for w in foreign))
    pool.wait_replicas(0, timeout=60)


def test_celery_pool_keeps_busy_workers_removes_idle_ones_first_and_they_drain(
        pools: Callable[[str], Pool], cluster: Cluster, namespace: str, redis_url: str,
        redis_client: redis.Redis, celery_app: object, foreign: list[ForeignWorker],
        tmp_path: Path) -> None:
    pool = foreign_pool(pools, cluster, namespace, redis_url, "films", "celery", 1,
                        app=CELERY_APP, terminationGracePeriodSeconds=60)
    celery_tasks.sleep.apply_async(("first", 16.0), queue="films")
    pool.wait_replicas(1)
    [first_pod] = pod_names(pool)
    # Two slots, so the second task runs beside the first: the busy worker's heartbeats
    # never show it idle between two tasks when the scale-down marks the pods.
    busy = celery_worker(redis_url, first_pod, ["films"], concurrency=2,
                         log=tmp_path / "busy.log").start()
    foreign.append(busy)
    wait_for("the first task runs", lambda: redis_client.llen("test:celery:started") == 1, 60,
             describe=busy.output)
    # keda#356: the queue is empty, the one worker busy; the pool stays, past scale-to-zero
    pool.wait("the running task seen in the heartbeats",
              lambda: (pool.status().get("queueReady"), pool.status().get("queueInFlight"))
              == (0, 1))
    assert_stays("one replica while its task runs", lambda: pool.replicas() == 1, 4.0,
                 describe=pool.describe)
    # a second task: the busy worker runs it beside the first, the pool grows
    celery_tasks.sleep.apply_async(("second", 14.0), queue="films")
    pool.wait_replicas(2)
    [idle_pod] = pod_names(pool) - {first_pod}
    idle = celery_worker(redis_url, idle_pod, ["films"], log=tmp_path / "idle.log").start()
    foreign.append(idle)
    # the first task ends, the second still runs: one in flight, one replica; the idle
    # worker's pod goes, the busy one stays
    pool.wait("scaled in to the busy worker's pod",
              lambda: pool.replicas() == 1 and pod_names(pool) == {first_pod}, 60)
    assert annotation(pool, first_pod) == "100"
    assert redis_client.lrange("test:celery:started", 0, -1) == ["first", "second"]
    idle.stop()  # its pod is gone; a kubelet would have stopped it
    # SIGTERM (the kubelet's, on scale-down): Celery's warm shutdown finishes the task
    busy.signal(signal.SIGTERM)
    assert busy.wait(60) == 0
    assert redis_client.lrange("test:celery:done", 0, -1) == ["first", "second"]
    pool.wait_replicas(0, timeout=60)


def test_rq_pool_scales_on_rq_jobs_keeps_the_busy_worker_and_it_drains(
        pools: Callable[[str], Pool], cluster: Cluster, namespace: str, redis_url: str,
        redis_client: redis.Redis, foreign: list[ForeignWorker], tmp_path: Path) -> None:
    pool = foreign_pool(pools, cluster, namespace, redis_url, "clips", "rq", 1,
                        terminationGracePeriodSeconds=60)
    rq_queue = Queue("clips", connection=redis.Redis.from_url(redis_url))
    job = "tests.integration.apps.rq_jobs.sleep"
    rq_queue.enqueue(job, "first", 10.0)
    pool.wait_replicas(1)
    dep = pool.deployment()
    assert dep is not None
    [container] = dep["spec"]["template"]["spec"]["containers"]
    assert [container["command"][0], *container["args"]] == [
        "rq", "worker", "--name", "$(POD_NAME)", "clips"]
    [first_pod] = pod_names(pool)
    first = rq_worker(redis_url, first_pod, ["clips"], log=tmp_path / "first.log").start()
    foreign.append(first)
    wait_for("the first job runs", lambda: redis_client.llen("test:rq:started") == 1, 60,
             describe=first.output)
    pool.wait("the running job seen in the started registry",
              lambda: (pool.status().get("queueReady"), pool.status().get("queueInFlight"))
              == (0, 1))
    assert_stays("one replica while its job runs", lambda: pool.replicas() == 1, 4.0,
                 describe=pool.describe)
    rq_queue.enqueue(job, "second", 20.0)
    pool.wait_replicas(2)
    [second_pod] = pod_names(pool) - {first_pod}
    second = rq_worker(redis_url, second_pod, ["clips"], log=tmp_path / "second.log").start()
    foreign.append(second)
    wait_for("the second job runs", lambda: redis_client.llen("test:rq:started") == 2, 60,
             describe=second.output)
    # the first job ends: its worker is idle and its pod goes; the busy one stays
    pool.wait("scaled in to the busy worker's pod",
              lambda: pool.replicas() == 1 and pod_names(pool) == {second_pod}, 60)
    assert annotation(pool, second_pod) == "100"
    first.stop()
    second.signal(signal.SIGTERM)  # RQ's warm shutdown: the job finishes first
    assert second.wait(60) == 0
    assert redis_client.lrange("test:rq:done", 0, -1) == ["first", "second"]
    pool.wait_replicas(0, timeout=60)
