"""``rq worker``: a pool of RQ's own workers on protocol rq queues.

Broker URL: RQ_REDIS_URL (``rq worker --url``'s variable). Drain: SIGTERM is RQ's warm
shutdown (the running job finishes), bounded by the pod's grace period. Running tasks:
the worker's hash in RQ's worker registry says ``busy`` while a job runs
(protocols.rq.busy_by_pod); a worker runs one job at a time.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import redis

from ..policy import SpecError
from ..protocols import RQ, QueueRedis
from ..protocols.rq import WORKER_PREFIX, busy_by_pod
from .base import WorkerRuntime

if TYPE_CHECKING:
    from ..model import TaskQueue, WorkerPool

log = logging.getLogger("taskfleet.operator")


class RqRuntime(WorkerRuntime):
    name = "rq"
    serves = (RQ.name,)
    needs_app = False
    broker_url_env = "RQ_REDIS_URL"

    def check(self, spec: dict[str, Any]) -> None:
        if spec.get("concurrency", 1) != 1:
            raise SpecError("spec.concurrency: an rq worker runs one job at a time; "
                            "leave it at 1 and scale replicas instead")

    def command(self, pool: WorkerPool, queues: list[TaskQueue]) -> list[str]:
        return ["rq", "worker", "--name", "$(POD_NAME)", *(q.queue_name for q in queues)]

    def liveness_command(self, pool: WorkerPool) -> list[str]:
        """The worker's key (which expires unless its heartbeat renews it: worker_ttl,
        420 s, plus 60 s) must exist and not say the worker died."""
        return ["python", "-c", "import os, sys, redis; r = redis.Redis.from_url(os.environ"
                f"['{self.broker_url_env}']); k = '{WORKER_PREFIX}' + os.environ['POD_NAME']; "
                "sys.exit(0 if r.exists(k) and not r.hexists(k, 'death') else 1)"]

    def running_by_pod(self, queue_redis: QueueRedis, queue: TaskQueue
                       ) -> dict[str, int] | None:
        client = queue_redis.client_of(queue)
        if not isinstance(client, redis.Redis):
            return None  # unresolved, or a cluster (RQ runs on one server: the spec says so)
        try:
            return busy_by_pod(client, queue.queue_name)
        except redis.RedisError as exc:
            log.warning("cannot read RQ workers of %s: %s", queue.queue_name,
                        queue_redis.redact(str(exc)))
            return None


RUNTIME = RqRuntime()
