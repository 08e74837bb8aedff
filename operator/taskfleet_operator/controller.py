"""The reconcile loop: observe -> decide -> act for every pool, on a tick or a wake-up.

One pass reads every queue of every pool in one pipelined round trip per
Redis server, decides each pool with the pure decide(), and writes only what
changed: the Deployment (server-side apply), deletion costs before a
scale-down, an Event per scale, and the status subresources.
"""

from __future__ import annotations

import functools
import heapq
import json
import logging
import threading
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from .act import Actions
from .conditions import rfc3339, set_condition
from .decide import Decision, History, Observation, decide
from .deployment import (
    DELETION_COST,
    build_deployment,
    pods_of_pool,
    selector_string,
    shared_redis,
)
from .metrics import OperatorMetrics
from .model import TaskQueue, WorkerPool
from .observe import Observer, QueueReading
from .policy import SpecError
from .queue_settings import QueueSettingsWriter
from .registry import DeploymentSeen, InvalidObject, Key, Registry, Snapshot
from .schedules import ScheduleRunner

log = logging.getLogger("taskfleet.operator")

REAPPLY_SECONDS = 36_000.0
"""Re-apply an unchanged Deployment this often (kubebuilder's default resync, 10 h), for
hand edits that leave the spec alone (labels, annotations). An edit of the spec moves the
Deployment's generation past the one our apply returned and is undone on the next pass;
a short period here would cost 10,000 pools a write every few hundred ms."""
QUEUE_STATUS_SECONDS = 2.0
"""How often a TaskQueue's figures are read and written to its status while it has work."""
REST_SECONDS = 30.0
"""How often a pool at rest, and a queue with no work, is read. At rest: every queue
empty with nothing in flight or delayed, and the replicas where the policy leaves them.
Nothing changes that until something is enqueued, and an enqueue into an empty queue
wakes its pools at once (its wake channel): this is only the net for a wake-up lost
with a connection. It is what lets one operator serve 10,000 mostly idle pools. Each
pool and queue gets its own interval within +-25 % of it (a hash of its name), so the
safety reads of 10,000 pools spread over time instead of landing in one long pass."""
PASS_BUDGET_SECONDS = 0.5
"""Past this, a pass leaves pools without work for the next one (pools with work first)."""
SWEEP_SECONDS = 60.0
"""How often state kept for deleted pools and queues is dropped (a scan of all of them)."""
IDLE_COST, UNKNOWN_COST, BUSY_COST = -100, 0, 100

Problem = tuple[str, str]
"""(reason, message) of why a pool cannot be served; its Ready condition says it."""


@dataclass
class PoolState:
    """What the controller remembers of one pool between passes."""

    history: History
    last_eval: float = 0.0
    applied_inputs: tuple[object, ...] | None = None
    """What the Deployment last applied was built from (None: not applied by this process);
    the manifest is a function of these, so it is rebuilt only when one changes."""
    applied_at: float = 0.0
    applied_generation: int | None = None
    """The Deployment's generation our last apply returned."""
    written_status: dict[str, Any] = field(default_factory=dict)
    apply_error: str | None = None
    pods_refused: str | None = None
    """The Deployment's ReplicaFailure message last reported as an Event."""
    resting: bool = False
    """The last pass found it at rest (see REST_SECONDS)."""

    def conditions(self, pool: WorkerPool) -> list[dict[str, Any]]:
        """The freshest conditions: what this process wrote, else what the watch shows."""
        found = self.written_status.get("conditions") or pool.status.get("conditions")
        return list(found or [])


class Controller:
    """Reconciles every pool and queue on a tick or a wake-up, as the Lease holder.

    Reads go through ``observer`` (Redis) and writes through ``actuator`` (the
    API server); ``clock`` gives the time. All three are injected, so tests can
    drive passes in-process with stand-ins.
    """

    def __init__(self, registry: Registry, actuator: Actions, observer: Observer, *,
                 default_image: str, is_leader: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.actuator = actuator
        self.observer = observer
        self.default_image = default_image
        self.is_leader = is_leader
        self.clock = clock
        self.states: dict[Key, PoolState] = {}
        self.queue_status: dict[Key, tuple[float, dict[str, Any]]] = {}
        self.readings: dict[Key, QueueReading] = {}
        """Per TaskQueue: what was last read."""
        self.read_at: dict[Key, float] = {}
        """Per TaskQueue: when it was last read."""
        # When each pool and queue is due again (its poll interval, or at rest its safety
        # read), as heaps: a pass touches what is due, changed or woken, not all 10,000.
        self._pool_heap = DueHeap()
        self._queue_heap = DueHeap()
        self._swept_at = 0.0
        self.status_behind: set[Key] = set()
        """TaskQueues whose status lags their last reading (writes are at most one per
        QUEUE_STATUS_SECONDS): due again then, even at rest."""
        self.invalid_reported: dict[tuple[str, Key], tuple[int, str]] = {}
        self.schedules: ScheduleRunner | None = None
        """Fires TaskQueue schedules on each pass, when set."""
        self.queue_settings: QueueSettingsWriter | None = None
        """Writes each TaskQueue's worker-side settings to its Redis, when set."""
        self.metrics = OperatorMetrics(is_leader)
        """Prometheus figures of each pass (served by OperatorRuntime when asked)."""

    def _described(self, exc: BaseException) -> str:
        """An unexpected error's traceback for the log, through the observer's redaction:
        a Redis error may quote a host, a user or a password read from a Secret."""
        return self.observer.redact("".join(traceback.format_exception(exc)).rstrip())

    # -- loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.registry.wake.wait(self._next_due())
            self.registry.wake.clear()
            everything = self.registry.wake_all.is_set()
            self.registry.wake_all.clear()
            if stop.is_set() or not self.is_leader():
                continue
            try:
                self.reconcile(everything=everything)
            except Exception as exc:
                log.error("reconcile pass failed; retrying\n%s", self._described(exc))
                stop.wait(1.0)

    def _next_due(self) -> float:
        return max(0.1, min([*self.registry.poll_intervals(), QUEUE_STATUS_SECONDS]))

    def reconcile(self, everything: bool = True) -> None:
        """One pass: every pool when asked, else the pools whose objects changed, whose
        queues woke, and whose poll interval (REST_SECONDS at rest) is up; their queues
        are read, and the other queues when their status is due."""
        started = time.perf_counter()
        snap = self.registry.snapshot()
        now = self.clock()
        if everything:
            due = list(snap.pools.values())
        else:
            keys = snap.changed | snap.woken_pools | self._pool_heap.pop_due(now)
            due = [snap.pools[k] for k in sorted(keys) if k in snap.pools]
        wanted = {(p.namespace, name) for p in due for name in p.queues}
        if everything:
            to_read = list(snap.queues.values())
        else:
            queue_keys = wanted | snap.woken_queues | snap.changed_queues \
                | self._queue_heap.pop_due(now)
            queue_keys |= {k for k in self.status_behind if now - self.read_at.get(k, 0.0)
                           >= QUEUE_STATUS_SECONDS * 0.9}
            to_read = [snap.queues[k] for k in sorted(queue_keys) if k in snap.queues]
        fresh = self.observer.read_queues(to_read)
        for key, reading in fresh.items():
            self.readings[key] = reading
            self.read_at[key] = now
        readings = self.readings
        # A queue read for its own status may show work a pool at rest has not seen yet
        # (a lost wake-up): that pool is looked at now, not at its own safety read.
        busy = {tq.key for tq in to_read
                if tq.key not in wanted and not _quiet(tq, fresh.get(tq.key))}
        if busy:
            taken = {p.key for p in due}
            more = self.registry.pools_of(busy) - taken
            due += [snap.pools[k] for k in sorted(more) if k in snap.pools]
        self._reconcile_pools(due, snap, readings, now)
        if self.queue_settings is not None:
            self.queue_settings.apply_all(
                snap.queues.values() if everything or now - self._swept_at >= SWEEP_SECONDS
                else [snap.queues[k] for k in snap.changed_queues if k in snap.queues],
                now, forget_others=everything or now - self._swept_at >= SWEEP_SECONDS)
        read = {tq.key for tq in to_read}
        for key in read | snap.scheduled_queues | snap.changed_queues:
            tq = snap.queues.get(key)
            if tq is not None and (key in read or tq.schedules
                                   or key not in self.queue_status):
                self._queue_status(tq, readings.get(key), now)
        for tq in to_read:  # due again: soon while it has work, at rest much later
            quiet = _quiet(tq, readings.get(tq.key)) and tq.key not in self.status_behind
            self._queue_heap.schedule(
                tq.key, now + 0.9 * (_rest_seconds(tq.key) if quiet else QUEUE_STATUS_SECONDS))
        for invalid in [*snap.invalid_pools.values(), *snap.invalid_queues.values()]:
            self._report_invalid(invalid, now)
        if everything or now - self._swept_at >= SWEEP_SECONDS:
            self._sweep(snap, now)
        self.metrics.pass_done(snap, readings, fresh, time.perf_counter() - started)

    def _sweep(self, snap: Snapshot, now: float) -> None:
        """Drop what is kept for pools and queues that are gone."""
        self._swept_at = now
        for key in [k for k in self.states if k not in snap.pools]:
            del self.states[key]
            self._pool_heap.forget(key)
        for key in [k for k in self.readings if k not in snap.queues]:
            del self.readings[key]
            self.read_at.pop(key, None)
            self._queue_heap.forget(key)

    def _reconcile_pools(self, due: list[WorkerPool], snap: Snapshot,
                         readings: dict[Key, QueueReading], now: float) -> None:
        """Pools with work first; a pool at rest whose queues are still empty is only
        marked as seen (its safety read found nothing to do). Pools without work wait for
        the next pass once PASS_BUDGET_SECONDS are spent, so a burst on one pool is never
        behind 10,000 others (a watch storm: every Deployment's status changing)."""
        urgent: list[WorkerPool] = []
        calm: list[WorkerPool] = []
        for pool in due:
            queues = [snap.queues.get((pool.namespace, name)) for name in pool.queues]
            quiet = all(q is not None and _quiet(q, readings.get(q.key)) for q in queues)
            state = self.states.get(pool.key)
            if (quiet and state is not None and state.resting and pool.key not in snap.changed
                    and not _reapply_due(state, now)):
                state.last_eval = now
                self._schedule_pool(pool, state, now)
                continue
            (calm if quiet else urgent).append(pool)
        deadline = time.perf_counter() + PASS_BUDGET_SECONDS
        for i, pool in enumerate([*urgent, *calm]):
            if i > len(urgent) and time.perf_counter() > deadline:  # one calm pool at least
                self.registry.look_again(p.key for p in calm[i - len(urgent):])
                return
            try:
                self.reconcile_pool(pool, snap, readings, now)
            except Exception as exc:
                log.error("pool %s/%s: reconcile failed\n%s", *pool.key, self._described(exc))
            state = self.states.get(pool.key)
            if state is not None:
                self._schedule_pool(pool, state, now)

    def _schedule_pool(self, pool: WorkerPool, state: PoolState, now: float) -> None:
        """Due again after its poll interval, or at rest after its safety-read interval."""
        interval = _rest_seconds(pool.key) if state.resting else pool.policy.poll_seconds
        self._pool_heap.schedule(pool.key, now + interval * 0.9)

    # -- one pool -----------------------------------------------------------------------

    def reconcile_pool(self, pool: WorkerPool, snap: Snapshot,
                       readings: dict[Key, QueueReading], now: float) -> Decision | None:
        """observe -> decide -> act for one pool; None when it cannot be served."""
        state = self.states.get(pool.key)
        if state is None:
            state = self.states[pool.key] = PoolState(History(
                last_active=_parse_time(pool.status.get("lastActiveTime"))))
        state.last_eval = now
        dep = snap.deployments.get(pool.key)
        status = deployment_status(pool, dep)

        queues, problem = resolve_queues(pool, snap.queues)
        if problem is not None:
            self._report_not_ready(pool, state, status, problem, now)
            return None
        obs = self._with_running_outside_queues(pool, queues,
                                                observe_pool(queues, readings, dep, now))
        decision = decide(pool.policy, obs, state.history)
        state.history = decision.history
        self.metrics.pool_decided(pool.key, decision.replicas, obs.metrics_error is None)

        if dep is not None and decision.replicas < dep.spec_replicas:
            self._mark_deletion_costs(pool, queues[0])
        problem = self._apply_deployment(pool, queues, dep, decision.replicas, state, now)
        if problem is not None:
            self._report_not_ready(pool, state, status, problem, now)
            return None
        refused = dep.replica_failure if dep is not None else None
        if refused is not None and refused != state.pods_refused:
            self.actuator.record_event("WorkerPool", pool.namespace, pool.name, pool.uid,
                                       "PodsRefused",
                                       f"the Deployment cannot create pods: {refused}",
                                       "Warning")
        state.pods_refused = refused
        if decision.replicas != obs.current_replicas:
            reason = "ScaledUp" if decision.replicas > obs.current_replicas else "ScaledDown"
            log.info("pool %s/%s: %s", pool.namespace, pool.name, decision.reason)
            self.metrics.pool_scaled(pool.key, up=decision.replicas > obs.current_replicas)
            self.actuator.record_event("WorkerPool", pool.namespace, pool.name, pool.uid, reason,
                                       decision.reason)
        self._write_pool_status(pool, state, {
            **status, **decided_status(pool, state.conditions(pool), obs, decision, dep,
                                       len(queues), now)})
        state.resting = (decision.replicas == obs.current_replicas
                         and (not pool.policy.enabled
                              or decision.replicas == pool.policy.min_replicas)
                         and all(_quiet(q, readings.get(q.key)) for q in queues))
        return decision

    def _apply_deployment(self, pool: WorkerPool, queues: list[TaskQueue],
                          dep: DeploymentSeen | None, desired: int, state: PoolState,
                          now: float) -> Problem | None:
        """Server-side apply when the replicas differ, an input of the manifest changed, or
        somebody else changed its spec, or REAPPLY_SECONDS passed; returns the problem when
        the API refuses the manifest."""
        inputs = (pool.generation, pool.uid, tuple((q.name, q.generation) for q in queues),
                  desired, self.default_image)
        edited = dep is not None and state.applied_generation is not None \
            and dep.generation > state.applied_generation
        if (dep is not None and dep.spec_replicas == desired and inputs == state.applied_inputs
                and not edited and not _reapply_due(state, now)):
            return None
        try:
            generation = self.actuator.apply_deployment(
                build_deployment(pool, queues, desired, self.default_image))
        except ApiException as exc:
            if _transient(exc):
                raise  # the next pass tries again
            # The API refused what the spec asks for (say, a bad podTemplate).
            message = f"the Deployment was refused: {_api_message(exc)}"
            if message != state.apply_error:
                self.actuator.record_event("WorkerPool", pool.namespace, pool.name, pool.uid,
                                           "ApplyFailed", message, "Warning")
                state.apply_error = message
            return ("ApplyFailed", message)
        state.applied_inputs, state.applied_at, state.apply_error = inputs, now, None
        state.applied_generation = generation
        return None

    def _with_running_outside_queues(self, pool: WorkerPool, queues: list[TaskQueue],
                                     obs: Observation) -> Observation:
        """A runtime whose running tasks are in no Redis key (Celery acknowledges a task
        when it starts) has them added to the pool's in-flight work, as its workers tell
        (WorkerRuntime.running_outside_queues); while that is unknown, the pool holds."""
        runtime = pool.runtime
        if not runtime.running_outside_queues or obs.metrics_error is not None:
            return obs
        running = self.observer.busy_by_pod(queues[0], runtime)
        if running is None:
            return replace(obs, metrics_error=runtime.running_unknown)
        return replace(obs, in_flight=obs.in_flight
                       + sum(pods_of_pool(pool.name, running).values()))

    def _mark_deletion_costs(self, pool: WorkerPool, queue: TaskQueue) -> None:
        """Idle pods cheapest, busy ones dearest, so a scale-down removes idle workers first."""
        busy = self.observer.busy_by_pod(queue, pool.runtime)
        if busy is None:
            return
        for pod in self.actuator.list_pods(pool.namespace, selector_string(pool)):
            name = pod.metadata.name
            if name not in busy:
                cost = UNKNOWN_COST
            else:
                cost = BUSY_COST * busy[name] if busy[name] else IDLE_COST
            annotations = pod.metadata.annotations or {}
            if annotations.get(DELETION_COST) != str(cost):
                self.actuator.set_deletion_cost(pool.namespace, name, cost)

    def _report_not_ready(self, pool: WorkerPool, state: PoolState, status: dict[str, Any],
                          problem: Problem, now: float) -> None:
        conditions = set_condition(state.conditions(pool), "Ready", False, problem[0],
                                   problem[1], now, pool.generation)
        self._write_pool_status(pool, state, {**status, "conditions": conditions})

    def _write_pool_status(self, pool: WorkerPool, state: PoolState,
                           status: dict[str, Any]) -> None:
        """Patch only what differs from what the object shows or this process wrote."""
        merged = {**pool.status, **state.written_status, **status}
        if merged == {**pool.status, **state.written_status}:
            return
        self.actuator.patch_status("workerpools", pool.namespace, pool.name, status)
        state.written_status = {**state.written_status, **status}

    # -- queues and invalid objects -----------------------------------------------------------

    def _queue_status(self, tq: TaskQueue, reading: QueueReading | None, now: float) -> None:
        last = self.queue_status.get(tq.key)
        status: dict[str, Any] = {"queueName": tq.queue_name, "observedGeneration": tq.generation}
        ok = reading is not None and reading.error is None and reading.stats is not None
        if ok and reading is not None and reading.stats is not None:
            s = reading.stats
            status.update(ready=s.ready, inFlight=s.in_flight, delayed=s.delayed, dead=s.dead,
                          deadTrimmed=s.dead_trimmed,
                          oldestAgeSeconds=round(s.oldest_age_seconds, 3))
        changed_schedules = False
        entries: list[dict[str, Any]] = []
        problems: list[str] = []
        if self.schedules is not None and (tq.schedules or (last and "schedules" in last[1])):
            entries, problems = self.schedules.run(tq, now)
            status["schedules"] = entries
            previous_entries = last[1].get("schedules") if last else None
            changed_schedules = entries != previous_entries
        message = "queue read" if ok else ((reading.error if reading is not None else None)
                                           or "not read")
        previous = last[1].get("conditions", []) if last else []
        conditions = set_condition(previous, "MetricsAvailable", ok,
                                   "QueueRead" if ok else "MetricsError", message, now,
                                   tq.generation)
        if "schedules" in status:
            conditions = set_condition(conditions, "SchedulesValid", not problems,
                                       "Invalid" if problems else "Valid",
                                       "; ".join(problems) or f"{len(entries)} schedule(s)",
                                       now, tq.generation)
        status["conditions"] = conditions
        if last is not None:
            urgent = last[1].get("conditions") != status["conditions"] or changed_schedules
            if last[1] == status:
                self.status_behind.discard(tq.key)
                return
            if not urgent and now - last[0] < QUEUE_STATUS_SECONDS:
                self.status_behind.add(tq.key)  # written on a later pass, read again then
                return
        self.actuator.patch_status("taskqueues", tq.namespace, tq.name, status)
        self.queue_status[tq.key] = (now, status)
        self.status_behind.discard(tq.key)

    def _report_invalid(self, obj: InvalidObject, now: float) -> None:
        mark = (obj.generation, obj.message)
        if self.invalid_reported.get((obj.kind, obj.key)) == mark:
            return
        conditions = set_condition(list(obj.status.get("conditions") or []), "Ready", False,
                                   "InvalidSpec", obj.message, now, obj.generation)
        plural = "workerpools" if obj.kind == "WorkerPool" else "taskqueues"
        self.actuator.patch_status(plural, obj.namespace, obj.name,
                                   {"conditions": conditions,
                                    "observedGeneration": obj.generation})
        self.actuator.record_event(obj.kind, obj.namespace, obj.name, obj.uid, "InvalidSpec",
                                   obj.message, "Warning")
        self.invalid_reported[(obj.kind, obj.key)] = mark


def resolve_queues(pool: WorkerPool, queues: dict[Key, TaskQueue]
                   ) -> tuple[list[TaskQueue], Problem | None]:
    """The pool's TaskQueues in priority order, or why they cannot serve it."""
    found = [queues.get((pool.namespace, name)) for name in pool.queues]
    missing = [n for n, q in zip(pool.queues, found, strict=True) if q is None]
    if missing:
        return [], ("QueueNotFound", f"TaskQueue {missing[0]!r} not found in namespace "
                    f"{pool.namespace}; create it or fix spec.queues")
    present = [q for q in found if q is not None]
    runtime = pool.runtime
    for q in present:
        refused = runtime.cannot_serve(q)
        if refused is not None:
            return [], ("InvalidSpec", refused)
    try:
        refused = runtime.cannot_reach(shared_redis(present))
    except SpecError as exc:
        refused = str(exc)
    if refused is not None:
        return [], ("InvalidSpec", refused)
    return present, None


def observe_pool(queues: list[TaskQueue], readings: dict[Key, QueueReading],
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


def _transient(exc: ApiException) -> bool:
    """An API error worth retrying: an outage or a conflict, not a refused manifest. A pod
    template field of the wrong type comes back as a 500 from server-side apply."""
    if exc.status == 500 and "failed to create typed patch object" in (exc.body or ""):
        return False
    return exc.status is None or exc.status >= 500 or exc.status in (409, 429)


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"


def _reapply_due(state: PoolState, now: float) -> bool:
    return now - state.applied_at > REAPPLY_SECONDS


@functools.lru_cache(maxsize=1 << 16)  # asked for every pool and queue on every pass
def _rest_seconds(key: Key) -> float:
    """REST_SECONDS, +-25 % by a stable hash of the object's name."""
    spread = zlib.crc32(f"{key[0]}/{key[1]}".encode()) / 0xFFFFFFFF
    return REST_SECONDS * (0.75 + 0.5 * spread)


def _quiet(tq: TaskQueue, reading: QueueReading | None) -> bool:
    """Read, and nothing in it: no task ready, in flight or delayed. Only a queue whose
    clients publish a wake-up on enqueue (QueueProtocol.wakes_on_enqueue): the others
    are read every poll."""
    s = reading.stats if reading is not None and reading.error is None else None
    return (tq.queue_protocol.wakes_on_enqueue and s is not None and s.ready == 0
            and s.in_flight == 0 and s.delayed == 0)


def _reading_error(reading: QueueReading | None) -> str | None:
    if reading is None:
        return "queue not read"
    return reading.error


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


class DueHeap:
    """Keys and when each is due, earliest first; a key scheduled again replaces its
    earlier time (the stale heap entry is skipped when it comes up)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, Key]] = []
        self._due: dict[Key, float] = {}

    def schedule(self, key: Key, when: float) -> None:
        if self._due.get(key) == when:
            return
        self._due[key] = when
        heapq.heappush(self._heap, (when, key))
        if len(self._heap) > 4 * len(self._due) + 64:  # mostly stale entries: rebuild
            self._heap = [(w, k) for k, w in self._due.items()]
            heapq.heapify(self._heap)

    def forget(self, key: Key) -> None:
        self._due.pop(key, None)

    def pop_due(self, now: float) -> frozenset[Key]:
        """The keys due by ``now``, no longer scheduled."""
        out: set[Key] = set()
        heap = self._heap
        while heap and heap[0][0] <= now:
            when, key = heapq.heappop(heap)
            if self._due.get(key) == when:
                del self._due[key]
                out.add(key)
        return frozenset(out)
