"""``celery worker``: a pool of Celery's own workers on protocol celery queues.

Broker URL: CELERY_BROKER_URL, which wins over the app's own setting. Priority steps: the
app's ``broker_transport_options`` (kombu reads them from nowhere else); they must match
the queues' spec.celery.prioritySteps. Drain: SIGTERM is Celery's warm shutdown (running
tasks finish, nothing new is taken), bounded by the pod's grace period. Running tasks:
acknowledged when they start, so in no Redis key; each worker's ``worker-heartbeat``
event says how many it runs (protocols.celery.WorkerEvents).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..protocols import CELERY, QueueRedis
from ..protocols.celery import HOSTNAME_PREFIX, start_worker_events
from .base import WorkerRuntime

if TYPE_CHECKING:
    from ..model import TaskQueue, WorkerPool

CELERY_POOLS = {"processes": "prefork", "threads": "threads"}
"""spec.pool -> celery worker's --pool."""


class CeleryRuntime(WorkerRuntime):
    name = "celery"
    serves = (CELERY.name,)
    broker_url_env = "CELERY_BROKER_URL"
    running_outside_queues = True
    running_unknown = ("no Celery worker heartbeats heard yet (listening for "
                       "worker-heartbeat events)")

    def command(self, pool: WorkerPool, queues: list[TaskQueue]) -> list[str]:
        spec = pool.spec
        return ["celery", "-A", spec["app"], "worker",
                "-Q", ",".join(q.queue_name for q in queues),
                "--concurrency", str(spec.get("concurrency", 1)),
                "--pool", CELERY_POOLS[spec.get("pool", "processes")],
                "--hostname", f"{HOSTNAME_PREFIX}$(POD_NAME)", "--loglevel", "INFO"]

    def liveness_command(self, pool: WorkerPool) -> list[str]:
        """The worker must answer a ping over the broker."""
        return ["sh", "-c", f'exec celery -A "$0" inspect ping -d "{HOSTNAME_PREFIX}$POD_NAME" '
                "--timeout 10", pool.spec["app"]]

    def running_by_pod(self, queue_redis: QueueRedis, queue: TaskQueue
                       ) -> dict[str, int] | None:
        events = queue_redis.listener_of(queue, start_worker_events)
        return None if events is None else events.running_by_pod()


RUNTIME = CeleryRuntime()
