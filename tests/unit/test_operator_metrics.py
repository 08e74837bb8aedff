"""The operator's Prometheus figures, from controller passes driven in-process (the
stand-ins of test_controller); the same figures scraped by a real Prometheus are in
tests/integration/test_prometheus.py."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from taskfleet import QueueStats
from taskfleet_operator.controller import Controller
from taskfleet_operator.metrics import OperatorMetrics
from taskfleet_operator.registry import Registry
from tests.unit.test_controller import NS, Clock, GivenReadings, RecordingActuator, Setup


class Leadership:
    def __init__(self) -> None:
        self.leader = True

    def __call__(self) -> bool:
        return self.leader


@pytest.fixture
def leadership() -> Leadership:
    return Leadership()


@pytest.fixture
def setup(leadership: Leadership) -> Setup:
    registry, actuator, readings, clock = Registry(), RecordingActuator(), GivenReadings(), Clock()
    controller = Controller(registry, actuator, readings, default_image="worker:test",
                            clock=clock, is_leader=leadership)
    return Setup(registry, actuator, readings, clock, controller)


def value(metrics: OperatorMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_queue_figures_come_from_the_pass(setup: Setup) -> None:
    setup.queue("transcode")
    setup.readings.stats["transcode"] = QueueStats(ready=7, in_flight=2, delayed=3, dead=4,
                                                   oldest_age_seconds=12.5)
    setup.reconcile()
    m = setup.controller.metrics
    labels = {"namespace": NS, "taskqueue": "transcode", "queue": "transcode"}
    assert value(m, "taskfleet_queue_ready_tasks", **labels) == 7
    assert value(m, "taskfleet_queue_in_flight_tasks", **labels) == 2
    assert value(m, "taskfleet_queue_delayed_tasks", **labels) == 3
    assert value(m, "taskfleet_queue_dead_tasks", **labels) == 4
    assert value(m, "taskfleet_queue_oldest_task_age_seconds", **labels) == 12.5
    assert value(m, "taskfleet_queue_metrics_available", **labels) == 1
    assert value(m, "taskfleet_operator_reconcile_duration_seconds_count") == 1


def test_an_unreadable_queue_counts_an_error_and_shows_no_stale_figures(setup: Setup) -> None:
    setup.queue("q")
    setup.work("q", ready=5)
    setup.reconcile()
    setup.readings.stats["q"] = "Connection refused"
    setup.reconcile(1.0)
    setup.reconcile(1.0)
    m = setup.controller.metrics
    labels = {"namespace": NS, "taskqueue": "q", "queue": "q"}
    assert value(m, "taskfleet_queue_metrics_available", **labels) == 0
    assert value(m, "taskfleet_queue_ready_tasks", **labels) is None
    assert value(m, "taskfleet_operator_metrics_read_errors_total",
                 namespace=NS, taskqueue="q") == 2


def test_pool_replicas_and_scale_events_by_direction(setup: Setup) -> None:
    setup.queue("q")
    setup.pool("p", ["q"], maxReplicas=4, minReplicas=0)
    setup.work("q", ready=12)
    setup.reconcile()
    setup.deployment("p", 3, ready=1)
    setup.reconcile(1.0)
    m = setup.controller.metrics
    pool = {"namespace": NS, "workerpool": "p"}
    assert value(m, "taskfleet_pool_desired_replicas", **pool) == 3
    assert value(m, "taskfleet_pool_replicas", **pool) == 3
    assert value(m, "taskfleet_pool_ready_replicas", **pool) == 1
    assert value(m, "taskfleet_pool_max_replicas", **pool) == 4
    assert value(m, "taskfleet_pool_min_replicas", **pool) == 0
    assert value(m, "taskfleet_pool_metrics_available", **pool) == 1
    assert value(m, "taskfleet_pool_scale_events_total", **pool, direction="up") == 1
    assert value(m, "taskfleet_pool_scale_events_total", **pool, direction="down") is None


def test_a_deleted_pool_and_queue_leave_no_gauges(setup: Setup) -> None:
    setup.queue("q")
    setup.pool("p", ["q"])
    setup.reconcile()
    setup.registry.pool_changed("DELETED", {"metadata": {"namespace": NS, "name": "p"}})
    setup.registry.queue_changed("DELETED", {"metadata": {"namespace": NS, "name": "q"}})
    setup.reconcile(1.0)
    text = generate_latest(setup.controller.metrics.registry).decode()
    assert 'workerpool="p"' not in text.replace("scale_events", "")
    assert "taskfleet_queue_ready_tasks{" not in text


def test_a_standby_exports_only_its_leader_status(setup: Setup, leadership: Leadership) -> None:
    setup.queue("q")
    setup.pool("p", ["q"])
    setup.reconcile()
    m = setup.controller.metrics
    assert value(m, "taskfleet_operator_leader") == 1
    leadership.leader = False
    assert value(m, "taskfleet_operator_leader") == 0
    text = generate_latest(m.registry).decode()
    assert "taskfleet_queue_ready_tasks{" not in text
    assert "taskfleet_pool_desired_replicas{" not in text


def test_autoscaling_off_has_no_bounds(setup: Setup) -> None:
    setup.queue("q")
    setup.registry.pool_changed("ADDED", {
        "metadata": {"namespace": NS, "name": "m", "uid": "u", "generation": 1},
        "spec": {"queues": ["q"], "app": "a:app", "replicas": 2}})
    setup.reconcile()
    m = setup.controller.metrics
    assert value(m, "taskfleet_pool_desired_replicas", namespace=NS, workerpool="m") == 2
    assert value(m, "taskfleet_pool_max_replicas", namespace=NS, workerpool="m") is None


def test_names_follow_prometheus_conventions(setup: Setup) -> None:
    setup.queue("q")
    setup.pool("p", ["q"])
    setup.work("q", ready=3)
    setup.reconcile()
    setup.readings.stats["q"] = "down"
    setup.reconcile(1.0)
    counted = 0
    for family in setup.controller.metrics.registry.collect():
        assert family.name.startswith("taskfleet_"), family.name
        if family.type == "counter":
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    assert sample.name.endswith("_total"), sample.name
                    counted += 1
        assert not family.name.endswith(("_ms", "_milliseconds", "_minutes")), family.name
    assert counted >= 2, "a scale event and a read error were counted"


def test_series_per_queue_and_pool_as_the_readme_says(setup: Setup) -> None:
    """Six gauges per TaskQueue; at most six gauges and two counters per WorkerPool."""
    setup.queue("q")
    setup.pool("p", ["q"])
    setup.work("q", ready=12)
    setup.reconcile()
    setup.deployment("p", 3)
    setup.work("q")
    setup.reconcile(120.0)
    per_queue = per_pool = 0
    for family in setup.controller.metrics.registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            if sample.labels.get("taskqueue") == "q" and family.type == "gauge":
                per_queue += 1
            if sample.labels.get("workerpool") == "p":
                per_pool += 1
    assert per_queue == 6
    assert per_pool == 8, "six gauges and a scale-event counter per direction"
