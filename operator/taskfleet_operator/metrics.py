"""Prometheus metrics of the operator, from what each controller pass already read.

Nothing here reads Redis or the API server: the controller hands over its queue
readings, its snapshot and its decisions, and a scrape turns the last pass's
figures into gauges. Gauges of a deleted queue or pool vanish with the next pass.
Only the Lease holder exports queue and pool figures (a standby's would be stale);
every replica exports ``taskfleet_operator_leader``.

Labels are bounded by what users declare: namespace and name of each TaskQueue and
WorkerPool, a schedule's name, a scale direction. Never a task id or a reason text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .model import TaskQueue
from .observe import QueueReading
from .registry import Key, Snapshot

QUEUE_LABELS = ("namespace", "taskqueue", "queue")
POOL_LABELS = ("namespace", "workerpool")


@dataclass(frozen=True)
class QueueFigures:
    queue: str
    ready: int | None
    in_flight: int | None
    delayed: int | None
    dead: int | None
    oldest_age_seconds: float | None
    available: bool


@dataclass(frozen=True)
class PoolFigures:
    desired: int | None
    """None until this process decided the pool."""
    replicas: int
    ready: int
    min_replicas: int | None
    """None (with max_replicas) when autoscaling is off."""
    max_replicas: int | None
    metrics_available: bool | None


class OperatorMetrics(Collector):
    """The operator's registry: counters updated as things happen, gauges from the last pass."""

    def __init__(self, is_leader: Callable[[], bool] = lambda: True) -> None:
        self.is_leader = is_leader
        self.registry = CollectorRegistry()
        self.reconcile_seconds = Histogram(
            "taskfleet_operator_reconcile_duration_seconds",
            "Duration of one reconcile pass over every due pool and queue",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry)
        self.read_errors = Counter(
            "taskfleet_operator_metrics_read_errors_total",
            "Passes in which a queue's figures could not be read from Redis",
            ["namespace", "taskqueue"], registry=self.registry)
        self.scale_events = Counter(
            "taskfleet_pool_scale_events_total",
            "Changes of a pool's replica count decided by the operator, by direction",
            [*POOL_LABELS, "direction"], registry=self.registry)
        self.ticks_sent = Counter(
            "taskfleet_operator_schedule_ticks_sent_total",
            "Cron ticks of a TaskQueue schedule sent as tasks",
            ["namespace", "taskqueue", "schedule"], registry=self.registry)
        self.ticks_skipped = Counter(
            "taskfleet_operator_schedule_ticks_skipped_total",
            "Cron ticks skipped for being later than startingDeadlineSeconds",
            ["namespace", "taskqueue", "schedule"], registry=self.registry)
        self._last_pass: tuple[Snapshot, Mapping[Key, QueueReading]] | None = None
        self._decided: dict[Key, tuple[int, bool]] = {}
        self._lock = threading.Lock()
        self.registry.register(self)

    # -- from the controller ----------------------------------------------------------------

    def pool_decided(self, key: Key, desired: int, metrics_available: bool) -> None:
        with self._lock:
            self._decided[key] = (desired, metrics_available)

    def pool_scaled(self, key: Key, up: bool) -> None:
        self.scale_events.labels(*key, "up" if up else "down").inc()

    def schedule_ticks(self, tq: TaskQueue, schedule: str, sent: int, skipped: int) -> None:
        if sent:
            self.ticks_sent.labels(tq.namespace, tq.name, schedule).inc(sent)
        if skipped:
            self.ticks_skipped.labels(tq.namespace, tq.name, schedule).inc(skipped)

    def pass_done(self, snap: Snapshot, readings: Mapping[Key, QueueReading],
                  fresh: Mapping[Key, QueueReading], seconds: float) -> None:
        """Record one pass: its duration and the failed reads among ``fresh`` (this pass's)
        now; the queues' and pools' gauges are built from ``readings`` (every queue's last)
        when Prometheus scrapes (every 15-60 s), not on every pass (every 2 s): with 10,000
        pools that was most of the operator's CPU."""
        self.reconcile_seconds.observe(seconds)
        for key, reading in fresh.items():
            if reading.error is not None or reading.stats is None:
                self.read_errors.labels(*key).inc()
        with self._lock:  # the controller hands a new mapping each pass and never changes it
            self._last_pass = (snap, readings)

    def _figures(self) -> tuple[dict[Key, QueueFigures], dict[Key, PoolFigures]]:
        """Every queue's and pool's figures, from the last pass."""
        with self._lock:
            if self._last_pass is None:
                return {}, {}
            snap, readings = self._last_pass
            self._decided = {k: v for k, v in self._decided.items() if k in snap.pools}
            decided_now = dict(self._decided)
        queues: dict[Key, QueueFigures] = {}
        for key, tq in snap.queues.items():
            reading = readings.get(key)
            stats = reading.stats if reading is not None and reading.error is None else None
            if stats is None:
                queues[key] = QueueFigures(tq.queue_name, None, None, None, None, None, False)
            else:
                queues[key] = QueueFigures(tq.queue_name, stats.ready, stats.in_flight,
                                           stats.delayed, stats.dead, stats.oldest_age_seconds,
                                           True)
        pools: dict[Key, PoolFigures] = {}
        for key, pool in snap.pools.items():
            dep = snap.deployments.get(key)
            decided = decided_now.get(key)
            auto = pool.policy.enabled
            pools[key] = PoolFigures(
                desired=decided[0] if decided else None,
                replicas=dep.replicas if dep else 0,
                ready=dep.ready_replicas if dep else 0,
                min_replicas=pool.policy.min_replicas if auto else None,
                max_replicas=pool.policy.max_replicas if auto else None,
                metrics_available=decided[1] if decided else None)
        return queues, pools

    # -- to Prometheus -----------------------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        leader = self.is_leader()
        yield _family("taskfleet_operator_leader",
                      "1 when this operator holds the Lease and reconciles, else 0", [],
                      [((), 1.0 if leader else 0.0)])
        if not leader:
            return
        queues, pools = self._figures()
        q = sorted(queues.items())
        for name, doc, value in (
                ("taskfleet_queue_ready_tasks", "Tasks waiting to run now",
                 lambda f: f.ready),
                ("taskfleet_queue_in_flight_tasks", "Tasks leased by workers",
                 lambda f: f.in_flight),
                ("taskfleet_queue_delayed_tasks",
                 "Tasks waiting for a countdown, an ETA or a retry backoff",
                 lambda f: f.delayed),
                ("taskfleet_queue_dead_tasks", "Records in the queue's dead-letter list",
                 lambda f: f.dead),
                ("taskfleet_queue_oldest_task_age_seconds",
                 "How long the oldest ready task has waited (0 when none is ready)",
                 lambda f: f.oldest_age_seconds),
                ("taskfleet_queue_metrics_available",
                 "1 when the last pass read the queue's figures from Redis, else 0",
                 lambda f: 1.0 if f.available else 0.0)):
            yield _family(name, doc, QUEUE_LABELS,
                          [((k[0], k[1], f.queue), value(f)) for k, f in q])
        p = sorted(pools.items())
        for name, doc, pick in (
                ("taskfleet_pool_desired_replicas", "Replicas the operator last decided",
                 lambda f: f.desired),
                ("taskfleet_pool_replicas", "Replicas of the pool's Deployment",
                 lambda f: f.replicas),
                ("taskfleet_pool_ready_replicas", "Ready replicas of the pool's Deployment",
                 lambda f: f.ready),
                ("taskfleet_pool_min_replicas", "spec.autoscaling.minReplicas",
                 lambda f: f.min_replicas),
                ("taskfleet_pool_max_replicas", "spec.autoscaling.maxReplicas",
                 lambda f: f.max_replicas),
                ("taskfleet_pool_metrics_available",
                 "1 when the last decision could read all of the pool's queues, else 0",
                 lambda f: None if f.metrics_available is None
                 else (1.0 if f.metrics_available else 0.0))):
            yield _family(name, doc, POOL_LABELS, [(k, pick(f)) for k, f in p])

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        """Serve /metrics on a thread of its own."""
        start_http_server(port, addr=address, registry=self.registry)


def _family(name: str, doc: str, labels: Iterable[str],
            samples: Iterable[tuple[tuple[str, ...], float | int | None]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for values, value in samples:
        if value is not None:
            family.add_metric(list(values), float(value))
    return family
