"""The web dashboard as the operator serves it: every TaskQueue it watches (on their own
Redis servers) and every WorkerPool, from the watches' registry (no extra API reads).

A queue's figures are what the controller last read (every protocol through its own
reader, the same figures as the metrics and the status), so the overview page, asked
every second by each open browser, costs no Redis work. Only the Lease holder reads the
queues: a standby's page says so. Worker heartbeats are read off the request path,
once a second while somebody looks (:class:`WorkerHeartbeats`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from taskfleet.dashboard import AccessSettings, PoolView, QueueSource, build_app
from taskfleet.dashboard.server import serve_in_thread
from taskfleet.dashboard.sources import live_workers_of, worker_rows
from taskfleet.heartbeat import WorkerInfo

from .observe import QueueReading, RedisDirectory, SecretRefError
from .registry import Key, Registry

NOT_READ = "not read yet"
STANDING_BY = ("this operator stands by: the one that holds the Lease reads the queues "
               "(its dashboard shows them)")
LOOKED_AT_SECONDS = 10.0
"""Worker heartbeats are read while a page asked for them within this long."""


class WorkerHeartbeats:
    """The live workers of every Redis the operator knows, read by a thread of its own
    every ``interval`` while the dashboard is looked at: a page costs no Redis work, and
    a dashboard nobody looks at costs none at all."""

    def __init__(self, directory: RedisDirectory, interval: float = 1.0) -> None:
        self.directory = directory
        self.interval = interval
        self._workers: list[WorkerInfo] = []
        self._asked_at = float("-inf")
        self._asked = threading.Event()

    def latest(self) -> list[WorkerInfo]:
        """The workers as last read (a first look after a quiet spell starts the reads)."""
        self._asked_at = time.monotonic()
        self._asked.set()
        return self._workers

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if time.monotonic() - self._asked_at < LOOKED_AT_SECONDS:
                self._workers = live_workers_of(self.directory.all_clients(), time.time())
                stop.wait(self.interval)
            else:
                self._asked.wait(self.interval)
                self._asked.clear()


class RegistrySource:
    """The dashboard's source in the operator: queues and pools from the registry, queue
    figures from ``readings`` (the controller's last), workers from ``workers``."""

    pools_unavailable = ""

    def __init__(self, registry: Registry, directory: RedisDirectory,
                 readings: Callable[[], Mapping[Key, QueueReading]],
                 is_leader: Callable[[], bool], workers: WorkerHeartbeats) -> None:
        self.registry = registry
        self.directory = directory
        self.readings = readings
        self.is_leader = is_leader
        self.workers = workers

    def queues(self) -> list[QueueSource]:
        out = []
        for (namespace, name), tq in sorted(self.registry.peek().queues.items()):
            try:
                client = self.directory.client(namespace, tq.redis)
            except SecretRefError:  # the queue's row says why (its reading's error)
                continue
            out.append(QueueSource(f"{namespace}/{name}", tq.queue_name, client))
        return out

    def queue_rows(self) -> list[dict[str, Any]]:
        leader = self.is_leader()
        readings = self.readings()
        rows: list[dict[str, Any]] = []
        for (namespace, name), tq in self.registry.peek().queues.items():
            row: dict[str, Any] = {"label": f"{namespace}/{name}", "queue": tq.queue_name}
            reading = readings.get(tq.key) if leader else None
            if reading is not None and reading.error is None and reading.stats is not None:
                row.update(reading.stats.as_dict())
            elif reading is not None:
                row["error"] = reading.error or NOT_READ
            else:
                row["error"] = NOT_READ if leader else STANDING_BY
            rows.append(row)
        return sorted(rows, key=lambda r: str(r["label"]))

    def worker_rows(self, now: float) -> list[dict[str, Any]]:
        return worker_rows(self.workers.latest(), now)

    def pools(self) -> Sequence[PoolView]:
        snap = self.registry.peek()
        views = []
        for key, pool in snap.pools.items():
            dep = snap.deployments.get(key)
            status = pool.status
            desired = status.get("desiredReplicas")
            views.append(PoolView(
                namespace=pool.namespace, name=pool.name, queues=pool.queues,
                desired=int(desired) if isinstance(desired, int) else None,
                replicas=dep.replicas if dep else 0, ready=dep.ready_replicas if dep else 0,
                max_replicas=pool.policy.max_replicas if pool.policy.enabled else None,
                last_scale_time=status.get("lastScaleTime"),
                last_scale_reason=status.get("lastScaleReason"),
                conditions={str(c.get("type")): str(c.get("status"))
                            for c in status.get("conditions") or []}))
        return views


def start_dashboard(source: RegistrySource, port: int, access: AccessSettings,
                    stop: threading.Event) -> list[threading.Thread]:
    """Serve the dashboard on ``access.address``, and read worker heartbeats for it, until
    ``stop`` is set."""
    heartbeats = threading.Thread(target=source.workers.run, args=(stop,), daemon=True,
                                  name="taskfleet-dashboard-workers")
    heartbeats.start()
    return [serve_in_thread(build_app(source, access), access.address, port, stop),
            heartbeats]
