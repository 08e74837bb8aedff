"""What the watches have seen: fed by the kopf handlers, read by the controller."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .model import TaskQueue, WorkerPool, parse_task_queue, parse_worker_pool
from .policy import SpecError

Key = tuple[str, str]


@dataclass(frozen=True)
class InvalidObject:
    """An object whose spec cannot be served; its status says why."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int
    message: str
    status: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class DeploymentSeen:
    spec_replicas: int
    replicas: int
    ready_replicas: int
    generation: int = 0
    """metadata.generation: it moves when anybody changes the spec (a hand edit)."""
    replica_failure: str | None = None
    """Why the Deployment cannot create pods (its ReplicaFailure condition: a Pod Security
    refusal, a quota), shown on the pool, where the user looks."""


@dataclass(frozen=True)
class Snapshot:
    queues: dict[Key, TaskQueue]
    pools: dict[Key, WorkerPool]
    invalid_queues: dict[Key, InvalidObject]
    invalid_pools: dict[Key, InvalidObject]
    deployments: dict[Key, DeploymentSeen]
    changed: frozenset[Key]
    """Pools (and pools of queues) whose objects changed since the last snapshot."""
    woken_queues: frozenset[Key] = frozenset()
    """TaskQueues whose queue (spec.queueName) went from empty to non-empty since the last
    snapshot, as their wake channels said."""
    woken_pools: frozenset[Key] = frozenset()
    """The pools that name those TaskQueues."""
    changed_queues: frozenset[Key] = frozenset()
    """TaskQueues that changed (added, edited, deleted) since the last snapshot."""
    scheduled_queues: frozenset[Key] = frozenset()
    """TaskQueues with schedules: their ticks are looked at on every pass."""


class Registry:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._queues: dict[Key, TaskQueue] = {}
        self._invalid_queues: dict[Key, InvalidObject] = {}
        self._pools: dict[Key, WorkerPool] = {}
        self._invalid_pools: dict[Key, InvalidObject] = {}
        self._deployments: dict[Key, DeploymentSeen] = {}
        self._pools_by_queue: dict[Key, set[Key]] = {}
        """TaskQueue -> the pools that name it: a queue's change finds its pools without a
        scan of every pool (10,000 queues x 10,000 pools at start-up otherwise)."""
        self._queues_by_name: dict[str, set[Key]] = {}
        """spec.queueName -> its TaskQueues: a wake-up finds them without a scan."""
        self._scheduled: set[Key] = set()
        self._changed: set[Key] = set()
        self._changed_queues: set[Key] = set()
        self._woken: set[str] = set()
        self.wake = threading.Event()
        """Set when something changed or a queue went from empty to non-empty: the
        controller's loop runs a pass at once."""
        self.wake_all = threading.Event()
        """Set with wake when every pool and queue must be looked at now: leadership was
        gained or lost, or a wake subscription was (re)made, so wake-ups published while
        it was down are lost. A change or a queue's wake-up only makes its own pools due."""

    def queue_changed(self, kind: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            old = self._queues.pop(key, None)
            if old is not None:
                self._queues_by_name.get(old.queue_name, set()).discard(key)
            self._scheduled.discard(key)
            self._invalid_queues.pop(key, None)
            if kind != "DELETED":
                try:
                    tq = self._queues[key] = parse_task_queue(body)
                except (SpecError, KeyError, TypeError) as exc:
                    self._invalid_queues[key] = _invalid("TaskQueue", body, exc)
                else:
                    self._queues_by_name.setdefault(tq.queue_name, set()).add(key)
                    if tq.schedules:
                        self._scheduled.add(key)
            self._changed_queues.add(key)
            # every pool that names this queue must look again
            self._changed.update(self._pools_by_queue.get(key, ()))
        self.wake.set()

    def pool_changed(self, kind: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            old = self._pools.pop(key, None)
            if old is not None:
                for name in old.queues:
                    self._pools_by_queue.get((key[0], name), set()).discard(key)
            self._invalid_pools.pop(key, None)
            if kind != "DELETED":
                try:
                    pool = self._pools[key] = parse_worker_pool(body)
                except (SpecError, KeyError, TypeError) as exc:
                    self._invalid_pools[key] = _invalid("WorkerPool", body, exc)
                else:
                    for name in pool.queues:
                        self._pools_by_queue.setdefault((key[0], name), set()).add(key)
            self._changed.add(key)
        self.wake.set()

    def look_again(self, keys: Iterable[Key]) -> None:
        """Pools a pass left for the next one: still due, and the loop runs again now."""
        with self._lock:
            self._changed.update(keys)
        self.wake.set()

    def queues_woken(self, names: Iterable[str]) -> None:
        """Queues (by spec.queueName) just went from empty to non-empty: their pools are
        looked at now, and only they."""
        with self._lock:
            self._woken.update(names)
        self.wake.set()

    def deployment_changed(self, kind: str | None, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        key = (meta["namespace"], meta["name"])
        with self._lock:
            if kind == "DELETED":
                self._deployments.pop(key, None)
            else:
                status = body.get("status") or {}
                failure = next((str(c.get("message", "")) for c in status.get("conditions", [])
                                if c.get("type") == "ReplicaFailure"
                                and c.get("status") == "True"), None)
                seen = DeploymentSeen(
                    spec_replicas=int((body.get("spec") or {}).get("replicas", 1)),
                    replicas=int(status.get("replicas", 0)),
                    ready_replicas=int(status.get("readyReplicas", 0)),
                    generation=int(meta.get("generation") or 0),
                    replica_failure=failure)
                if self._deployments.get(key) == seen:
                    return
                self._deployments[key] = seen
            self._changed.add(key)
        self.wake.set()

    def pools_of(self, queues: Iterable[Key]) -> set[Key]:
        """The pools that name any of these TaskQueues."""
        with self._lock:
            return {pool for key in queues for pool in self._pools_by_queue.get(key, ())}

    def snapshot(self) -> Snapshot:
        with self._lock:
            snap = self.peek()
            self._changed.clear()
            self._changed_queues.clear()
            self._woken.clear()
            return snap

    def peek(self) -> Snapshot:
        """What the watches have seen, leaving the changes for the controller's snapshot."""
        with self._lock:
            woken_queues = frozenset(key for name in self._woken
                                     for key in self._queues_by_name.get(name, ()))
            return Snapshot(queues=dict(self._queues), pools=dict(self._pools),
                            invalid_queues=dict(self._invalid_queues),
                            invalid_pools=dict(self._invalid_pools),
                            deployments=dict(self._deployments),
                            changed=frozenset(self._changed),
                            woken_queues=woken_queues,
                            woken_pools=frozenset(pool for key in woken_queues
                                                  for pool in self._pools_by_queue.get(key, ())),
                            changed_queues=frozenset(self._changed_queues),
                            scheduled_queues=frozenset(self._scheduled))


def _invalid(kind: str, body: dict[str, Any], exc: Exception) -> InvalidObject:
    meta = body["metadata"]
    return InvalidObject(kind=kind, namespace=meta["namespace"], name=meta["name"],
                         uid=meta.get("uid", ""), generation=int(meta.get("generation", 0)),
                         message=str(exc), status=dict(body.get("status") or {}))
