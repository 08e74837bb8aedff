"""RQ's layout, checked against RQ 3.0.0 (pinned in pyproject's ``rq`` extra).

- Ready jobs: the list ``rq:queue:<name>`` of job ids, RPUSHed and LPOPed
  (``Queue.redis_queue_namespace_prefix``; ``Queue.push_job_id``, ``Queue.lpop``).
- Taken, not yet started: a worker serving one queue moves the id with BLMOVE into
  ``rq:queue:<name>:intermediate`` (``Queue.lmove``, ``IntermediateQueue``); its work
  horse removes it there (``BaseWorker.prepare_job_execution``) after the worker has
  registered the execution (``rq.executions.prepare_execution``), so for a moment (a
  fork) a starting job is in both lists.
- Running: the started-job registry ``rq:wip:<name>``, a sorted set of
  ``<job id>:<execution id>`` scored by when the execution's heartbeat expires
  (``StartedJobRegistry.key_template``, ``add_execution``); only unexpired entries count.
  Each job's executions are also in ``rq:executions:<job id>``, scored by their expiry
  (``ExecutionRegistry``, written in the same transaction): an id of the intermediate
  list with an unexpired execution there is counted as running only.
- Waiting for a time: ``rq:scheduled:<name>``; failed: ``rq:failed:<name>``.
- Oldest age: the head job's hash ``rq:job:<id>``, field ``enqueued_at``
  (``Job.to_dict``, ``utcformat``: ``%Y-%m-%dT%H:%M:%S.%fZ``, UTC).
- Workers: the set ``rq:workers:<queue>`` of worker keys
  (``worker_registration.register``), each ``rq:worker:<name>`` a hash whose ``state``
  field is ``busy`` while a job runs (``prepare_execution``, ``BaseWorker.set_state``).

Per queue per cycle: one EVALSHA (LLEN x2, ZCOUNT, ZCARD x2, LINDEX and one HGET of the
head job, and one ZCOUNT per id of the intermediate list, which holds one per worker
taking a job, up to TAKEN_CHECKED). The job hash and execution registries are keys the
script is not given in KEYS, which is fine on a single Redis (RQ does not run on Redis
Cluster).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import redis

from taskfleet import QueueStats
from taskfleet.batch import Batch
from taskfleet.connection import Client, text

from .base import OneCallPerQueue

if TYPE_CHECKING:
    from ..model import TaskQueue

QUEUE_PREFIX = "rq:queue:"
JOB_PREFIX = "rq:job:"
EXECUTIONS_PREFIX = "rq:executions:"
TAKEN_CHECKED = 1000
"""Intermediate-list ids looked up for a starting execution, at most (the list holds
about one per worker; more only when workers died holding jobs)."""
WORKER_PREFIX = "rq:worker:"
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def queue_keys(queue: str) -> list[str]:
    """In the order STATS names them."""
    return [f"{QUEUE_PREFIX}{queue}", f"{QUEUE_PREFIX}{queue}:intermediate", f"rq:wip:{queue}",
            f"rq:scheduled:{queue}", f"rq:failed:{queue}"]


def workers_key(queue: str) -> str:
    return f"rq:workers:{queue}"


# KEYS: ready list, intermediate list, started registry, scheduled registry, failed
# registry (queue_keys). ARGV: the job hash prefix (rq:job:), the execution registry
# prefix (rq:executions:), how many intermediate ids to look up at most.
# Returns {ready, taken and not started, started, scheduled, failed, head job's
# enqueued_at or '', now}.
STATS = """
local ready_list, intermediate, started, scheduled, failed = KEYS[1], KEYS[2], KEYS[3],
  KEYS[4], KEYS[5]
local job_prefix, executions_prefix, checked = ARGV[1], ARGV[2], tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local ready = redis.call('LLEN', ready_list)
local enqueued_at = false
if ready > 0 then
  enqueued_at = redis.call('HGET', job_prefix .. redis.call('LINDEX', ready_list, 0),
                           'enqueued_at')
end
local taken = redis.call('LLEN', intermediate)
for _, id in ipairs(redis.call('LRANGE', intermediate, 0, checked - 1)) do
  if redis.call('ZCOUNT', executions_prefix .. id, now, '+inf') > 0 then
    taken = taken - 1
  end
end
return {ready, taken, redis.call('ZCOUNT', started, now, '+inf'),
        redis.call('ZCARD', scheduled), redis.call('ZCARD', failed), enqueued_at or '',
        tostring(now)}
"""

# KEYS[1]: the queue's worker registry (rq:workers:<queue>). ARGV[1]: the worker key
# prefix (rq:worker:). Returns {name, state, ...} of the registered workers whose hash
# still exists (a worker that died stays in the set until RQ's maintenance cleans it).
WORKERS = """
local registry, prefix = KEYS[1], ARGV[1]
local out = {}
for _, key in ipairs(redis.call('SMEMBERS', registry)) do
  local state = redis.call('HGET', key, 'state')
  if state then
    table.insert(out, string.sub(key, #prefix + 1))
    table.insert(out, state)
  end
end
return out
"""


class RqProtocol(OneCallPerQueue):
    """No wake-ups (RQ clients publish none): its queues are read every poll."""

    name = "rq"

    def add_read(self, batch: Batch, client: Client, queue: TaskQueue) -> None:
        batch.script(client.register_script(STATS), queue_keys(queue.queue_name),
                     [JOB_PREFIX, EXECUTIONS_PREFIX, TAKEN_CHECKED])

    def parse(self, reply: Any) -> QueueStats:
        ready, taken, started, scheduled, failed, enqueued_at, now = reply
        age = 0.0
        if enqueued_at:
            try:
                since = datetime.strptime(text(enqueued_at), TIMESTAMP_FORMAT).replace(
                    tzinfo=UTC)
                age = max(0.0, float(text(now)) - since.timestamp())
            except ValueError:
                age = 0.0  # a job hash written by something else: no age rather than a crash
        return QueueStats(ready=int(ready), in_flight=int(taken) + int(started),
                          delayed=int(scheduled), dead=int(failed), oldest_age_seconds=age)


PROTOCOL = RqProtocol()


def busy_by_pod(client: redis.Redis, queue: str) -> dict[str, int]:
    """1 for each RQ worker of the queue running a job, 0 for an idle one; the worker's
    name is its pod's (``rq worker --name <pod name>``)."""
    reply = client.register_script(WORKERS)(keys=[workers_key(queue)], args=[WORKER_PREFIX])
    flat = [text(v) for v in reply]
    return {name: int(state == "busy") for name, state in zip(flat[::2], flat[1::2],
                                                               strict=True)}
