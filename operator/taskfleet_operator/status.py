"""What the controller makes of its readings (pure): a pool's observation for decide(), and
the status of a WorkerPool and of a TaskQueue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .conditions import rfc3339, set_condition
from .decide import Decision, Observation
from .deployment import selector_string
from .model import TaskQueue, WorkerPool
from .observe import QueueReading
from .registry import DeploymentSeen, Key

Fired = tuple[list[dict[str, Any]], list[str]]
"""A TaskQueue's schedules after a look: its status.schedules entries, the invalid ones'
errors."""


def deployment_status(pool: WorkerPool, dep: DeploymentSeen | None) -> dict[str, Any]:
    """Status fields every pass writes, whatever else happens."""
    return {"selector": selector_string(pool), "observedGeneration": pool.generation,
            "replicas": dep.replicas if dep else 0,
            "readyReplicas": dep.ready_replicas if dep else 0}


def decided_status(pool: WorkerPool, conditions: list[dict[str, Any]], obs: Observation,
                   decision: Decision, dep: DeploymentSeen | None, queues_read: int,
                   now: float) -> dict[str, Any]:
    """Status fields and conditions (updated from ``conditions``) after a decision."""
    desired = decision.replicas
    status: dict[str, Any] = {"desiredReplicas": desired}
    if obs.metrics_error is None:
        status["queueReady"], status["queueInFlight"] = obs.ready, obs.in_flight
    if desired != obs.current_replicas:
        status["lastScaleTime"] = rfc3339(now)
        status["lastScaleReason"] = decision.reason
    if decision.history.last_active is not None:
        status["lastActiveTime"] = rfc3339(decision.history.last_active)
    read = obs.metrics_error is None
    conditions = set_condition(
        conditions, "MetricsAvailable", read, "QueuesRead" if read else "MetricsError",
        obs.metrics_error or f"read {queues_read} queue(s)", now, pool.generation)
    ready_now = dep.ready_replicas if dep else 0
    conditions = set_condition(
        conditions, "Scaling", desired != ready_now,
        "Stable" if desired == ready_now else ("ScalingUp" if desired > ready_now
                                               else "ScalingDown"),
        decision.reason, now, pool.generation)
    if dep is not None and dep.replica_failure is not None:
        status["conditions"] = set_condition(
            conditions, "Ready", False, "PodsRefused",
            f"the Deployment cannot create pods: {dep.replica_failure}", now, pool.generation)
    else:
        status["conditions"] = set_condition(
            conditions, "Ready", True, "ScaledToZero" if desired == 0 else "Reconciled",
            f"Deployment {pool.name} at {desired} replica(s)", now, pool.generation)
    return status


def queue_status(tq: TaskQueue, reading: QueueReading | None, fired: Fired | None,
                 conditions: list[dict[str, Any]], now: float) -> dict[str, Any]:
    """A TaskQueue's status: its figures as read, its schedules when looked at (``fired``),
    and its conditions (updated from ``conditions``)."""
    status: dict[str, Any] = {"queueName": tq.queue_name, "observedGeneration": tq.generation}
    stats = reading.stats if reading is not None and reading.error is None else None
    if stats is not None:
        status.update(ready=stats.ready, inFlight=stats.in_flight, delayed=stats.delayed,
                      dead=stats.dead, deadTrimmed=stats.dead_trimmed,
                      oldestAgeSeconds=round(stats.oldest_age_seconds, 3))
    ok = stats is not None
    message = "queue read" if ok else ((reading.error if reading is not None else None)
                                       or "not read")
    conditions = set_condition(conditions, "MetricsAvailable", ok,
                               "QueueRead" if ok else "MetricsError", message, now,
                               tq.generation)
    if fired is not None:
        entries, problems = fired
        status["schedules"] = entries
        conditions = set_condition(conditions, "SchedulesValid", not problems,
                                   "Invalid" if problems else "Valid",
                                   "; ".join(problems) or f"{len(entries)} schedule(s)",
                                   now, tq.generation)
    status["conditions"] = conditions
    return status


def observe_pool(queues: list[TaskQueue], readings: Mapping[Key, QueueReading],
                 dep: DeploymentSeen | None, now: float) -> Observation:
    """The pool's work, summed over its queues; any unreadable queue is a metrics error."""
    current = dep.spec_replicas if dep else 0
    for q in queues:
        error = _reading_error(readings.get(q.key))
        if error is not None:
            return Observation(now, current, metrics_error=error)
    stats = [s for s in (readings[q.key].stats for q in queues) if s is not None]
    return Observation(now, current, ready=sum(s.ready for s in stats),
                       in_flight=sum(s.in_flight for s in stats),
                       oldest_age_seconds=max((s.oldest_age_seconds for s in stats),
                                              default=0.0))


def _reading_error(reading: QueueReading | None) -> str | None:
    if reading is None:
        return "queue not read"
    return reading.error
