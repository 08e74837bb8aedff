"""``taskfleet worker``: the workers of this project.

Drain: on SIGTERM a worker stops taking tasks, gives running ones until
``--drain-timeout`` (the pod's grace period less DRAIN_MARGIN_SECONDS), then returns what
is unfinished to its queue and exits. Running tasks: each worker's heartbeat in Redis
(taskfleet.heartbeat) says how many it runs; the queue's leases count them too.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import redis

from taskfleet import live_workers
from taskfleet.celery_wire import DEFAULT_PRIORITY_STEPS, priority_steps_option

from ..protocols import CELERY, NATIVE, QueueRedis
from .base import DRAIN_MARGIN_SECONDS, WorkerRuntime

if TYPE_CHECKING:
    from ..model import TaskQueue, WorkerPool

log = logging.getLogger("taskfleet.operator")

HEALTH_FILE = "/tmp/taskfleet-health"
"""Where a worker writes its heartbeat's success, for its liveness probe."""


class TaskfleetRuntime(WorkerRuntime):
    name = "taskfleet"
    serves = (NATIVE.name, CELERY.name)
    broker_settings_apart = True

    def command(self, pool: WorkerPool, queues: list[TaskQueue]) -> list[str]:
        spec = pool.spec
        drain = max(1, pool.grace_seconds - DRAIN_MARGIN_SECONDS)
        args = ["taskfleet", "worker", "--app", spec["app"],
                "--queues", ",".join(q.queue_name for q in queues),
                "--concurrency", str(spec.get("concurrency", 1)),
                "--pool", spec.get("pool", "processes"), "--drain-timeout", str(drain),
                "--health-file", HEALTH_FILE, *celery_options(queues)]
        port = pool.metrics_port
        if port is not None:
            args += ["--metrics-port", str(port)]
        return args

    def liveness_command(self, pool: WorkerPool) -> list[str]:
        health = pool.spec.get("healthCheck") or {}
        return ["taskfleet", "health", "--file", HEALTH_FILE,
                "--max-age", str(health.get("maxAgeSeconds", 60))]

    def running_by_pod(self, queue_redis: QueueRedis, queue: TaskQueue
                       ) -> dict[str, int] | None:
        client = queue_redis.client_of(queue)
        if client is None:
            return None
        try:
            workers = live_workers(client)
        except redis.RedisError as exc:
            log.warning("cannot read worker heartbeats: %s", queue_redis.redact(str(exc)))
            return None  # unknown, as the interface says: no deletion costs this pass
        busy: dict[str, int] = {}
        for w in workers:
            busy[w.pod] = busy.get(w.pod, 0) + w.busy
        return busy


def celery_options(queues: list[TaskQueue]) -> list[str]:
    """taskfleet workers also take Celery clients' messages from protocol celery queues,
    from the priority lists the queue's prioritySteps name (kombu's default unsaid)."""
    celery = [q for q in queues if q.protocol == CELERY.name]
    if not celery:
        return []
    options = ["--celery-queues", ",".join(q.queue_name for q in celery)]
    for q in celery:
        if q.priority_steps != DEFAULT_PRIORITY_STEPS:
            options += ["--celery-priority-steps",
                        priority_steps_option(q.queue_name, q.priority_steps)]
    return options


RUNTIME = TaskfleetRuntime()
