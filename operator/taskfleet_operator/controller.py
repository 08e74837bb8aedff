"""The reconcile loop: observe -> decide -> act for the pools and queues that are due.

A pass runs when a watched object changes, a queue wakes (its wake channel), or the
agenda says something is due (agenda.py: each pool's poll interval, a safety read at
rest, the sweep). It reads the queues it needs in one pipelined round trip per Redis
server, decides each pool with the pure decide(), fires the TaskQueues' cron ticks,
and writes only what changed: the Deployment (server-side apply), deletion costs
before a scale-down, an Event per scale, and the status subresources.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kubernetes.client.exceptions import ApiException

from .act import Actions, api_message, transient
from .agenda import QUEUE_STATUS_SECONDS, Agenda, within_budget
from .conditions import parse_rfc3339, set_condition
from .decide import Decision, History, Observation, decide
from .deployment import (
    DELETION_COST,
    build_deployment,
    pods_of_pool,
    selector_string,
    shared_redis,
)
from .invalid import InvalidReports
from .metrics import OperatorMetrics
from .model import TaskQueue, WorkerPool
from .observe import Observer, QueueReading
from .policy import SpecError
from .queue_settings import QueueSettingsWriter
from .registry import DeploymentSeen, Key, Registry, Snapshot
from .schedules import ScheduleRunner
from .status import decided_status, deployment_status, observe_pool
from .taskqueues import TaskQueues

log = logging.getLogger("taskfleet.operator")

REAPPLY_SECONDS = 36_000.0
"""Re-apply an unchanged Deployment this often (kubebuilder's default resync, 10 h), for
hand edits that leave the spec alone (labels, annotations). An edit of the spec moves the
Deployment's generation past the one our apply returned and is undone on the next pass;
a short period here would cost 10,000 pools a write every few hundred ms."""
STANDBY_WAIT_SECONDS = QUEUE_STATUS_SECONDS
"""How often a standby's loop looks whether it leads (gaining the Lease wakes it at once)."""
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
    """The last pass found it at rest (see agenda.REST_SECONDS)."""

    def conditions(self, pool: WorkerPool) -> list[dict[str, Any]]:
        """The freshest conditions: what this process wrote, else what the watch shows."""
        found = self.written_status.get("conditions") or pool.status.get("conditions")
        return list(found or [])


class Controller:
    """Runs the passes while this operator holds the Lease (``is_leader``).

    Reads go through ``observer`` (Redis) and writes through ``actuator`` (the API
    server); ``clock`` gives the time; ``schedules`` fires the TaskQueues' cron ticks and
    ``queue_settings`` writes their worker-side settings, when given. All are injected,
    so tests drive passes in-process with stand-ins.
    """

    def __init__(self, registry: Registry, actuator: Actions, observer: Observer, *,
                 default_image: str, is_leader: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.time,
                 schedules: ScheduleRunner | None = None,
                 queue_settings: QueueSettingsWriter | None = None,
                 metrics: OperatorMetrics | None = None) -> None:
        self.registry = registry
        self.actuator = actuator
        self.observer = observer
        self.default_image = default_image
        self.is_leader = is_leader
        self.clock = clock
        self.queue_settings = queue_settings
        self.metrics = metrics or OperatorMetrics(is_leader)
        """Prometheus figures of each pass (served by OperatorRuntime when asked)."""
        self.states: dict[Key, PoolState] = {}
        self.taskqueues = TaskQueues(actuator, schedules)
        self.agenda = Agenda()
        self.invalid = InvalidReports(actuator)

    def _described(self, exc: BaseException) -> str:
        """An unexpected error's traceback for the log, through the observer's redaction:
        a Redis error may quote a host, a user or a password read from a Secret."""
        return self.observer.redact("".join(traceback.format_exception(exc)).rstrip())

    # -- loop ---------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Sleep until a wake-up or the agenda's next due time, then run a pass."""
        while not stop.is_set():
            self.registry.wake.wait(self.agenda.seconds_to_wait(self.clock())
                                    if self.is_leader() else STANDBY_WAIT_SECONDS)
            self.registry.wake.clear()
            everything = self.registry.wake_all.is_set()
            self.registry.wake_all.clear()
            if stop.is_set() or not self.is_leader():
                continue
            try:
                self.reconcile(everything=everything)
            except Exception as exc:
                log.error("reconcile pass failed; retrying\n%s", self._described(exc))
                self.agenda.put_back(self.clock())
                stop.wait(1.0)

    def reconcile(self, everything: bool = True) -> None:
        """One pass: every pool when asked, else the pools whose objects changed, whose
        queues woke, and that the agenda says are due; their queues are read, and the
        other queues when due; then cron ticks are fired and statuses written."""
        started = time.perf_counter()
        snap = self.registry.snapshot()
        now = self.clock()
        due, to_read = self.agenda.take_due(snap, now, everything)
        wanted = {(p.namespace, name) for p in due for name in p.queues}
        fresh = self.observer.read_queues(to_read)
        readings = self.taskqueues.read(fresh, now)
        # A queue read for its own status may show work a pool at rest has not seen yet
        # (a lost wake-up): that pool is looked at now, not at its own safety read.
        busy = {tq.key for tq in to_read
                if tq.key not in wanted and not _quiet(tq, fresh.get(tq.key))}
        if busy:
            taken = {p.key for p in due}
            more = self.registry.pools_of(busy) - taken
            due += [snap.pools[k] for k in sorted(more) if k in snap.pools]
        self._reconcile_pools(due, snap, readings, now)
        sweep = everything or self.agenda.sweep_due(now)
        if self.queue_settings is not None:
            self.queue_settings.apply_all(
                snap.queues.values() if sweep
                else [snap.queues[k] for k in snap.changed_queues if k in snap.queues],
                now, forget_others=sweep)
        self._queues_step(snap, {tq.key for tq in to_read}, now)
        self.invalid.report([*snap.invalid_pools.values(), *snap.invalid_queues.values()], now)
        if sweep:
            self.agenda.sweep(now, self.states, snap.pools, self.taskqueues.states, snap.queues)
        self.metrics.pass_done(snap, readings, fresh, time.perf_counter() - started)

    def _queues_step(self, snap: Snapshot, read: set[Key], now: float) -> None:
        """Fire the cron ticks that are due, write the queues' statuses, and put the queues
        read on the agenda: soon while they have work, at rest much later."""
        fired = self.taskqueues.fire_schedules(
            snap, read | snap.scheduled_queues | snap.changed_queues, now)
        self.agenda.schedules_seen(now, bool(snap.scheduled_queues))
        self.taskqueues.write_statuses(snap, read | fired.keys() | snap.changed_queues, read,
                                       fired, now)
        for key in read:
            state = self.taskqueues.state(key)
            self.agenda.queue_read(key, now, _quiet(snap.queues[key], state.reading)
                                   and not state.status_behind)

    def _reconcile_pools(self, due: list[WorkerPool], snap: Snapshot,
                         readings: Mapping[Key, QueueReading], now: float) -> None:
        """Pools with work first; a pool at rest whose queues are still empty is only
        marked as seen (its safety read found nothing to do). Pools without work wait for
        the next pass once the pass's budget is spent (agenda.within_budget), so a burst
        on one pool is never behind 10,000 others (a watch storm: every Deployment's
        status changing)."""
        urgent: list[WorkerPool] = []
        calm: list[WorkerPool] = []
        for pool in due:
            queues = [snap.queues.get((pool.namespace, name)) for name in pool.queues]
            quiet = all(q is not None and _quiet(q, readings.get(q.key)) for q in queues)
            state = self.states.get(pool.key)
            if (quiet and state is not None and state.resting and pool.key not in snap.changed
                    and not _reapply_due(state, now)):
                state.last_eval = now
                self.agenda.pool_seen(pool.key, now, state.resting, pool.policy.poll_seconds)
                continue
            (calm if quiet else urgent).append(pool)
        for pool in within_budget(urgent, calm,
                                  lambda left: self.registry.look_again(p.key for p in left)):
            try:
                self.reconcile_pool(pool, snap, readings, now)
            except Exception as exc:
                log.error("pool %s/%s: reconcile failed\n%s", *pool.key, self._described(exc))
            state = self.states.get(pool.key)
            if state is not None:
                self.agenda.pool_seen(pool.key, now, state.resting, pool.policy.poll_seconds)

    # -- one pool -----------------------------------------------------------------------

    def reconcile_pool(self, pool: WorkerPool, snap: Snapshot,
                       readings: Mapping[Key, QueueReading], now: float) -> Decision | None:
        """observe -> decide -> act for one pool; None when it cannot be served."""
        state = self.states.get(pool.key)
        if state is None:
            state = self.states[pool.key] = PoolState(History(
                last_active=parse_rfc3339(pool.status.get("lastActiveTime"))))
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
            if transient(exc):
                raise  # the next pass tries again
            # The API refused what the spec asks for (say, a bad podTemplate).
            message = f"the Deployment was refused: {api_message(exc)}"
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


def _reapply_due(state: PoolState, now: float) -> bool:
    return now - state.applied_at > REAPPLY_SECONDS


def _quiet(tq: TaskQueue, reading: QueueReading | None) -> bool:
    """Read, and nothing in it: no task ready, in flight or delayed. Only a queue whose
    clients publish a wake-up on enqueue (QueueProtocol.wakes_on_enqueue): the others
    are read every poll."""
    s = reading.stats if reading is not None and reading.error is None else None
    return (tq.queue_protocol.wakes_on_enqueue and s is not None and s.ready == 0
            and s.in_flight == 0 and s.delayed == 0)
