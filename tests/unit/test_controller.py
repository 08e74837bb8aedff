"""The Controller in-process: a recording actuator, readings given by the test, and a
clock the test moves. What the controller writes, and when, in milliseconds; the same
behaviour against a real API server and Redis is in tests/integration/test_operator.py."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from taskfleet import QueueStats
from taskfleet_operator import agenda as agenda_module
from taskfleet_operator.agenda import QUEUE_STATUS_SECONDS, REST_SECONDS
from taskfleet_operator.controller import REAPPLY_SECONDS, Controller
from taskfleet_operator.deployment import DELETION_COST
from taskfleet_operator.model import TaskQueue
from taskfleet_operator.observe import QueueReading
from taskfleet_operator.registry import Registry
from taskfleet_operator.runtimes import WorkerRuntime

NS = "shop"


@dataclass
class RecordingActuator:
    """Records every write the controller makes; can refuse Deployments like the API."""

    applied: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    costs: dict[str, int] = field(default_factory=dict)
    pods: list[Any] = field(default_factory=list)
    refuse: Exception | None = None
    """Raised by apply_deployment: the API's refusal, or an error nobody expected."""
    generations: dict[str, tuple[int, Any]] = field(default_factory=dict)
    """Per Deployment: its generation and spec, moved as the API moves it (spec changes)."""

    def apply_deployment(self, manifest: dict[str, Any]) -> int | None:
        if self.refuse is not None:
            raise self.refuse
        self.applied.append(manifest)
        name = manifest["metadata"]["name"]
        generation, spec = self.generations.get(name, (0, None))
        if manifest["spec"] != spec:
            self.generations[name] = generation + 1, manifest["spec"]
        return self.generations[name][0]

    def patch_status(self, plural: str, namespace: str, name: str,
                     status: dict[str, Any]) -> None:
        self.statuses.append((plural, name, status))

    def list_pods(self, namespace: str, selector: str) -> list[Any]:
        return self.pods

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        self.costs[pod] = cost

    def record_event(self, kind: str, namespace: str, name: str, uid: str, reason: str,
                     message: str, type_: str = "Normal") -> None:
        self.events.append((name, reason, message))

    def pool_status(self, name: str) -> dict[str, Any]:
        """Everything written to a pool's status so far, merged as the API merges it."""
        merged: dict[str, Any] = {}
        for plural, n, status in self.statuses:
            if plural == "workerpools" and n == name:
                merged.update(status)
        return merged


@dataclass
class GivenReadings:
    """Queue figures and worker heartbeats as the test sets them."""

    stats: dict[str, QueueStats | str] = field(default_factory=dict)
    """Per queue name: its figures, or an error message."""
    busy: dict[str, int] | None = field(default_factory=dict)
    read: list[str] = field(default_factory=list)
    """Queue names read, in order, over every pass."""

    def read_queues(self, queues: Iterable[TaskQueue]) -> dict[tuple[str, str], QueueReading]:
        out = {}
        for q in queues:
            self.read.append(q.queue_name)
            value = self.stats.get(q.queue_name, QueueStats(0, 0, 0, 0, 0.0))
            out[q.key] = QueueReading(None, value) if isinstance(value, str) \
                else QueueReading(value)
        return out

    def busy_by_pod(self, queue: TaskQueue, runtime: WorkerRuntime | None = None
                    ) -> dict[str, int] | None:
        return self.busy

    def redact(self, text: str) -> str:
        return text.replace(SECRET_HOST, "***")


SECRET_HOST = "redis-from-a-secret.internal"
"""A value the test's observer treats as read from a Secret."""


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Setup:
    registry: Registry
    actuator: RecordingActuator
    readings: GivenReadings
    clock: Clock
    controller: Controller

    def queue(self, name: str) -> None:
        self.registry.queue_changed("ADDED", {
            "metadata": {"namespace": NS, "name": name, "uid": f"uid-{name}", "generation": 1},
            "spec": {"redis": {"url": "redis://127.0.0.1:1/0"}}})

    def pool(self, name: str, queues: list[str], generation: int = 1,
             **autoscaling: Any) -> None:
        self.registry.pool_changed("ADDED", {
            "metadata": {"namespace": NS, "name": name, "uid": f"uid-{name}",
                         "generation": generation},
            "spec": {"queues": queues, "app": "video.tasks:app",
                     "autoscaling": {"enabled": True, "minReplicas": 0, "maxReplicas": 10,
                                     "targetPerReplica": 5, **autoscaling}}})

    def deployment(self, name: str, replicas: int, ready: int | None = None,
                   generation: int | None = None) -> None:
        """What the Deployment watch reports after the controller's write (by default, the
        generation that write gave it)."""
        if generation is None:
            generation = self.actuator.generations.get(name, (1, None))[0]
        self.registry.deployment_changed("MODIFIED", {
            "metadata": {"namespace": NS, "name": name, "generation": generation},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas,
                       "readyReplicas": replicas if ready is None else ready}})

    def work(self, queue: str, ready: int = 0, in_flight: int = 0) -> None:
        self.readings.stats[queue] = QueueStats(ready, in_flight, 0, 0, 0.0)

    def reconcile(self, seconds_later: float = 0.0) -> None:
        self.clock.now += seconds_later
        self.controller.reconcile(everything=True)

    def tick(self, seconds_later: float) -> list[str]:
        """A pass as the loop runs it on its timer (not everything); the queues it read."""
        self.clock.now += seconds_later
        self.readings.read.clear()
        self.controller.reconcile(everything=False)
        return list(self.readings.read)


@pytest.fixture
def setup() -> Setup:
    registry, actuator, readings, clock = Registry(), RecordingActuator(), GivenReadings(), Clock()
    controller = Controller(registry, actuator, readings, default_image="worker:test",
                            clock=clock)
    return Setup(registry, actuator, readings, clock, controller)


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_work_scales_out_with_an_event_and_status(setup: Setup) -> None:
    setup.queue("transcode")
    setup.pool("transcoder", ["transcode"])
    setup.work("transcode", ready=12)
    setup.reconcile()
    [manifest] = setup.actuator.applied
    assert manifest["metadata"]["name"] == "transcoder"
    assert manifest["spec"]["replicas"] == 3
    assert setup.actuator.events == [("transcoder", "ScaledUp",
                                      "ready=12 inFlight=0 target=5 → 3")]
    status = setup.actuator.pool_status("transcoder")
    assert status["desiredReplicas"] == 3 and status["queueReady"] == 12
    assert status["lastScaleReason"] == "ready=12 inFlight=0 target=5 → 3"
    assert condition(status, "MetricsAvailable")["status"] == "True"
    assert condition(status, "Ready")["reason"] == "Reconciled"
    assert condition(status, "Scaling")["reason"] == "ScalingUp"


def test_nothing_changed_means_nothing_written_until_the_reapply_period(setup: Setup) -> None:
    setup.queue("q")
    setup.pool("p", ["q"], minReplicas=1)
    setup.reconcile()
    setup.deployment("p", 1)
    setup.reconcile(1.0)
    writes = (len(setup.actuator.applied), len(setup.actuator.statuses),
              len(setup.actuator.events))
    for _ in range(5):
        setup.reconcile(1.0)
    assert (len(setup.actuator.applied), len(setup.actuator.statuses),
            len(setup.actuator.events)) == writes, "an unchanged pool costs no writes"
    setup.reconcile(REAPPLY_SECONDS)
    assert len(setup.actuator.applied) == writes[0] + 1, "re-applied to undo hand edits"
    assert setup.actuator.applied[-1]["spec"]["replicas"] == 1


def test_a_hand_edit_of_the_deployment_is_undone_at_once_and_a_late_watch_is_not(
        setup: Setup) -> None:
    setup.queue("q")
    setup.pool("p", ["q"], minReplicas=1)
    setup.reconcile()
    [first] = setup.actuator.applied
    ours = setup.actuator.generations["p"][0]
    setup.deployment("p", 1, generation=ours - 1)  # the watch still shows an older write
    setup.reconcile(1.0)
    assert len(setup.actuator.applied) == 1, "a watch behind our own write is no edit"
    setup.deployment("p", 1, generation=ours)
    setup.reconcile(1.0)
    assert len(setup.actuator.applied) == 1
    setup.actuator.generations["p"] = (ours + 1, {"edited": True})  # kubectl edit
    setup.deployment("p", 1, generation=ours + 1)
    setup.reconcile(1.0)
    assert len(setup.actuator.applied) == 2, "the spec is ours: the edit is undone"
    assert setup.actuator.applied[-1] == first
    setup.deployment("p", 1, generation=ours + 2)  # what our re-apply gave it
    setup.reconcile(1.0)
    assert len(setup.actuator.applied) == 2


def test_a_new_generation_is_applied_at_once(setup: Setup) -> None:
    setup.queue("q")
    setup.pool("p", ["q"])
    setup.reconcile()
    setup.deployment("p", 0)
    setup.reconcile(1.0)
    applied = len(setup.actuator.applied)
    setup.pool("p", ["q"], generation=2, maxReplicas=3)
    setup.reconcile(0.1)
    assert len(setup.actuator.applied) == applied + 1


def test_a_missing_queue_is_a_condition_and_nothing_is_applied(setup: Setup) -> None:
    setup.pool("p", ["nowhere"])
    setup.reconcile()
    assert setup.actuator.applied == []
    ready = condition(setup.actuator.pool_status("p"), "Ready")
    assert ready["status"] == "False" and ready["reason"] == "QueueNotFound"
    assert "TaskQueue 'nowhere' not found" in ready["message"]


def test_queues_on_different_redis_servers_are_refused(setup: Setup) -> None:
    setup.queue("a")
    setup.registry.queue_changed("ADDED", {
        "metadata": {"namespace": NS, "name": "b", "uid": "u", "generation": 1},
        "spec": {"redis": {"url": "redis://127.0.0.1:2/0"}}})
    setup.pool("p", ["a", "b"])
    setup.reconcile()
    ready = condition(setup.actuator.pool_status("p"), "Ready")
    assert ready["reason"] == "InvalidSpec" and "same spec.redis" in ready["message"]


def test_a_metrics_error_holds_the_count(setup: Setup) -> None:
    setup.queue("q")
    setup.pool("p", ["q"])
    setup.work("q", ready=20)
    setup.reconcile()
    setup.deployment("p", 4)
    setup.readings.stats["q"] = "redis: Connection refused"
    events = len(setup.actuator.events)
    setup.reconcile(600.0)
    assert setup.actuator.applied[-1]["spec"]["replicas"] == 4
    assert len(setup.actuator.events) == events, "holding is not a scale"
    metrics = condition(setup.actuator.pool_status("p"), "MetricsAvailable")
    assert metrics["status"] == "False" and "Connection refused" in metrics["message"]


def test_scale_down_marks_idle_pods_cheapest_before_applying(setup: Setup) -> None:
    setup.queue("q")
    setup.pool("p", ["q"], scaleDown={"stabilizationSeconds": 0})
    setup.work("q", ready=15)
    setup.reconcile()
    setup.deployment("p", 3)
    setup.actuator.pods = [SimpleNamespace(metadata=SimpleNamespace(name=n, annotations=a))
                           for n, a in (("busy", None), ("idle", None),
                                        ("new", {DELETION_COST: "0"}))]
    setup.readings.busy = {"busy": 1, "idle": 0}
    setup.work("q", in_flight=1)
    setup.reconcile(5.0)
    assert setup.actuator.costs == {"busy": 100, "idle": -100}, \
        "unknown pods keep cost 0 without a write"
    assert setup.actuator.applied[-1]["spec"]["replicas"] < 3


def test_a_refused_deployment_is_reported_once(setup: Setup) -> None:
    setup.queue("q")
    setup.pool("p", ["q"])
    setup.actuator.refuse = ApiException(status=422, reason="Unprocessable Entity")
    setup.actuator.refuse.body = '{"message": "spec.template.spec.containers[0].image: Required"}'
    setup.reconcile()
    setup.reconcile(1.0)
    refused = [e for e in setup.actuator.events if e[1] == "ApplyFailed"]
    assert len(refused) == 1 and "image: Required" in refused[0][2]
    ready = condition(setup.actuator.pool_status("p"), "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ApplyFailed"
    setup.actuator.refuse = None
    setup.reconcile(1.0)
    assert condition(setup.actuator.pool_status("p"), "Ready")["status"] == "True"


def test_a_transient_api_error_is_retried_next_pass(setup: Setup) -> None:
    setup.queue("q")
    setup.pool("p", ["q"])
    setup.actuator.refuse = ApiException(status=503, reason="Service Unavailable")
    setup.reconcile()
    assert not [e for e in setup.actuator.events if e[1] == "ApplyFailed"]
    setup.actuator.refuse = None
    setup.reconcile(0.1)
    assert len(setup.actuator.applied) == 1


def test_an_invalid_pool_is_reported_once_per_generation(setup: Setup) -> None:
    body = {"metadata": {"namespace": NS, "name": "bad", "uid": "u", "generation": 1},
            "spec": {"queues": ["q"], "app": "no-colon"}}
    setup.registry.pool_changed("ADDED", body)
    setup.reconcile()
    setup.reconcile(1.0)
    invalid = [e for e in setup.actuator.events if e[1] == "InvalidSpec"]
    assert len(invalid) == 1 and "spec.app" in invalid[0][2]
    setup.registry.pool_changed("MODIFIED", {**body, "metadata": {**body["metadata"],
                                                                  "generation": 2}})
    setup.reconcile(1.0)
    assert len([e for e in setup.actuator.events if e[1] == "InvalidSpec"]) == 2


def test_a_deleted_pool_is_forgotten(setup: Setup) -> None:
    setup.queue("q")
    setup.pool("p", ["q"])
    setup.reconcile()
    assert ("shop", "p") in setup.controller.states
    setup.registry.pool_changed("DELETED", {"metadata": {"namespace": NS, "name": "p"}})
    setup.reconcile(0.1)
    assert ("shop", "p") not in setup.controller.states


def test_pods_the_cluster_refuses_make_the_pool_not_ready_with_one_event(setup: Setup) -> None:
    setup.queue("q")
    setup.pool("p", ["q"], minReplicas=1)
    setup.reconcile()
    setup.registry.deployment_changed("MODIFIED", {
        "metadata": {"namespace": NS, "name": "p"}, "spec": {"replicas": 1},
        "status": {"replicas": 0, "conditions": [
            {"type": "ReplicaFailure", "status": "True",
             "message": 'pods "p-1" is forbidden: violates PodSecurity "restricted:latest"'}]}})
    setup.reconcile(1.0)
    setup.reconcile(1.0)
    ready = condition(setup.actuator.pool_status("p"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "PodsRefused")
    assert "violates PodSecurity" in ready["message"]
    assert [e[1] for e in setup.actuator.events].count("PodsRefused") == 1
    setup.deployment("p", 1)  # fixed: the condition clears
    setup.reconcile(1.0)
    assert condition(setup.actuator.pool_status("p"), "Ready")["status"] == "True"


def test_a_pool_at_rest_is_read_only_when_its_queue_wakes_or_rest_seconds_pass(
        setup: Setup) -> None:
    setup.queue("uploads")
    setup.pool("transcoder", ["uploads"])
    setup.reconcile()
    setup.deployment("transcoder", 0)
    assert setup.tick(2.0) == ["uploads"], "the Deployment's change is looked at"
    for _ in range(5):  # empty queue, at zero: at rest, nothing read
        assert setup.tick(2.0) == []
    setup.work("uploads", ready=10)
    setup.registry.queues_woken(["uploads"])
    assert setup.tick(0.1) == ["uploads"]
    assert setup.actuator.applied[-1]["spec"]["replicas"] == 2
    setup.deployment("transcoder", 2)
    assert setup.tick(2.0) == ["uploads"]
    assert setup.tick(2.0) == ["uploads"], "a pool with work is read every poll"


def test_a_lost_wake_up_is_caught_within_rest_seconds_and_a_quarter(setup: Setup) -> None:
    setup.queue("uploads")
    setup.pool("transcoder", ["uploads"])
    setup.reconcile()
    setup.deployment("transcoder", 0)
    setup.tick(2.0)
    setup.work("uploads", ready=3)  # enqueued, but the wake-up never arrived
    elapsed = 0.0
    while not setup.tick(2.0):
        elapsed += 2.0
        assert elapsed < REST_SECONDS * 1.25, "the resting pool was never read again"
    assert setup.actuator.applied[-1]["spec"]["replicas"] == 1


def test_a_wake_up_reads_only_the_queues_that_woke(setup: Setup) -> None:
    for i in range(3):
        setup.queue(f"q{i}")
        setup.pool(f"p{i}", [f"q{i}"])
    setup.reconcile()
    for i in range(3):
        setup.deployment(f"p{i}", 0)
    setup.tick(2.0)
    setup.work("q1", ready=1)
    setup.registry.queues_woken(["q1"])
    assert setup.tick(0.1) == ["q1"]
    assert [m["metadata"]["name"] for m in setup.actuator.applied[-1:]] == ["p1"]


def test_a_pool_above_its_minimum_is_not_at_rest(setup: Setup) -> None:
    """Idle but not yet scaled down: time alone changes its decision, so it is polled."""
    setup.queue("uploads")
    setup.pool("transcoder", ["uploads"], scaleToZeroAfterSeconds=10,
               scaleDown={"stabilizationSeconds": 0})
    setup.work("uploads", ready=5)
    setup.reconcile()
    setup.deployment("transcoder", 1)
    setup.work("uploads")
    assert setup.tick(2.0) == ["uploads"]
    assert setup.tick(2.0) == ["uploads"]
    while setup.actuator.applied[-1]["spec"]["replicas"] != 0:
        assert setup.tick(2.0) == ["uploads"]
        assert setup.clock.now < 1_800_000_000.0 + 30, "never scaled to zero"




def test_a_queue_status_held_back_by_the_write_limit_is_written_on_a_later_pass(
        setup: Setup) -> None:
    """A queue that emptied into its dead-letter list within a second of its last status
    write: the newer figures are written when the limit allows, not at its rest read."""
    setup.queue("capped")
    setup.reconcile()
    setup.readings.stats["capped"] = QueueStats(0, 0, 0, 2, 0.0, dead_trimmed=3)
    setup.registry.queues_woken(["capped"])
    setup.tick(0.5)

    def last_queue_status() -> dict[str, Any]:
        return [st for plural, _, st in setup.actuator.statuses if plural == "taskqueues"][-1]

    assert last_queue_status()["dead"] == 0, "one write per QUEUE_STATUS_SECONDS"
    setup.tick(2.0)
    assert (last_queue_status()["dead"], last_queue_status()["deadTrimmed"]) == (2, 3)

def reconciled_pools(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The pools each later pass reconciles, in order."""
    seen: list[str] = []
    real = setup.controller.reconcile_pool

    def recording(pool: Any, *args: Any) -> Any:
        seen.append(pool.name)
        return real(pool, *args)

    monkeypatch.setattr(setup.controller, "reconcile_pool", recording)
    return seen


def test_a_safety_read_that_finds_nothing_reconciles_nothing(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    setup.queue("uploads")
    setup.pool("transcoder", ["uploads"])
    setup.reconcile()
    setup.deployment("transcoder", 0)
    setup.tick(2.0)
    seen = reconciled_pools(setup, monkeypatch)
    reads = [setup.tick(2.0) for _ in range(int(REST_SECONDS * 1.25 / 2) + 1)]
    assert ["uploads"] in reads, "the safety read happened"
    assert seen == [], "an empty queue read at rest needs no decision and no write"


def test_a_woken_pool_goes_first_and_a_watch_storm_waits_its_turn(
        setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(20):
        setup.queue(f"q{i}")
        setup.pool(f"p{i}", [f"q{i}"])
    setup.queue("hot")
    setup.pool("hot-pool", ["hot"])
    setup.reconcile()
    for i in range(20):
        setup.deployment(f"p{i}", 0)
    setup.deployment("hot-pool", 0)
    setup.tick(2.0)
    for i in range(20):  # every pool changes at once (a watch storm, a re-list)
        setup.pool(f"p{i}", [f"q{i}"], generation=2)
    setup.work("hot", ready=10)
    setup.registry.queues_woken(["hot"])
    monkeypatch.setattr(agenda_module, "PASS_BUDGET_SECONDS", 0.0)
    seen = reconciled_pools(setup, monkeypatch)
    before = len(setup.actuator.applied)
    setup.tick(0.1)
    assert seen == ["hot-pool", "p0"], "the pool with work first, then one more at least"
    assert setup.actuator.applied[before]["metadata"]["name"] == "hot-pool"
    assert setup.actuator.applied[before]["spec"]["replicas"] == 2
    for _ in range(25):
        setup.tick(0.0)
    assert sorted(set(seen)) == sorted(["hot-pool", *(f"p{i}" for i in range(20))]), \
        "every changed pool is looked at in the passes that follow"

def test_a_celery_pool_adds_its_workers_running_tasks_and_holds_without_heartbeats(
        setup: Setup) -> None:
    setup.registry.queue_changed("ADDED", {
        "metadata": {"namespace": NS, "name": "films", "uid": "uid-films", "generation": 1},
        "spec": {"redis": {"url": "redis://127.0.0.1:1/0"}, "protocol": "celery"}})
    setup.registry.pool_changed("ADDED", {
        "metadata": {"namespace": NS, "name": "films", "uid": "uid-films", "generation": 1},
        "spec": {"queues": ["films"], "app": "video.celery:app", "runtime": "celery",
                 "autoscaling": {"enabled": True, "minReplicas": 0, "maxReplicas": 10,
                                 "targetPerReplica": 1}}})
    setup.readings.busy = None  # no heartbeats heard yet
    setup.work("films", ready=3)
    setup.reconcile()
    status = setup.actuator.pool_status("films")
    assert status["desiredReplicas"] == 0, "no data: hold, do not act on a partial count"
    assert condition(status, "MetricsAvailable")["message"].startswith(
        "no Celery worker heartbeats heard yet")
    setup.deployment("films", 0)
    # two running on this pool's pod (acknowledged, so in no Redis key), one on another pool's
    setup.readings.busy = {"films-5d8f7-abcde": 2, "thumbs-5d8f7-abcde": 1}
    setup.work("films", ready=0, in_flight=1)
    setup.reconcile(1.0)
    status = setup.actuator.pool_status("films")
    assert (status["queueReady"], status["queueInFlight"], status["desiredReplicas"]) == (0, 3, 3)


def test_an_unexpected_error_is_logged_without_a_secret_value(
        setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    """A pool's reconcile that fails on an error nobody expected logs its traceback, but
    through the observer's redaction: a Redis error may quote what came from a Secret."""
    setup.queue("transcode")
    setup.pool("transcoder", ["transcode"])
    setup.work("transcode", ready=12)
    setup.actuator.refuse = ConnectionError(f"Error connecting to {SECRET_HOST}:6379.")
    with caplog.at_level(logging.ERROR, logger="taskfleet.operator"):
        setup.reconcile()
    [record] = [r for r in caplog.records if "reconcile failed" in r.getMessage()]
    text = record.getMessage() + (record.exc_text or "")
    assert "ConnectionError: Error connecting to ***:6379." in text
    assert SECRET_HOST not in text and record.exc_info is None


def test_the_loop_sleeps_until_the_agenda_s_next_due_time(setup: Setup) -> None:
    """A pool at rest is due at its safety read (REST_SECONDS +-25 %), so the loop sleeps
    that long, not a poll interval; a pool with work makes it sleep one poll interval."""
    setup.queue("uploads")
    setup.pool("transcoder", ["uploads"], pollSeconds=1)
    setup.reconcile()
    setup.deployment("transcoder", 0)
    setup.tick(0.0)
    waited = run_once(setup)
    assert 0.75 * REST_SECONDS <= waited <= 1.25 * REST_SECONDS, waited
    setup.work("uploads", ready=4)
    setup.registry.queues_woken(["uploads"])
    setup.tick(0.0)
    assert run_once(setup) == pytest.approx(1.0), "its poll interval"
    setup.pool("transcoder", ["uploads"], generation=2, pollSeconds=5)
    setup.tick(0.0)
    assert run_once(setup) == pytest.approx(QUEUE_STATUS_SECONDS), \
        "the queue's status (every 2 s) is due before the pool's poll (5 s)"


def run_once(setup: Setup) -> float:
    """How long the controller's loop sleeps before its next pass (the loop stops then)."""
    stop = threading.Event()
    waits: list[float] = []

    class OneWait:
        def wait(self, timeout: float) -> bool:
            waits.append(timeout)
            stop.set()
            return False

        def clear(self) -> None: ...

    setup.registry.wake = OneWait()  # type: ignore[assignment]
    try:
        setup.controller.run(stop)
    finally:
        setup.registry.wake = threading.Event()
    [waited] = waits
    return waited


def test_a_failed_pass_leaves_nothing_it_took_behind(setup: Setup) -> None:
    """A pass that fails (here: reading Redis raises what nobody expected) took its pools
    and queues off the agenda; the retry looks at them again, not at their next due time."""
    setup.queue("q")
    setup.pool("p", ["q"], pollSeconds=2)
    setup.work("q", ready=3)
    setup.reconcile()
    setup.deployment("p", 1)
    setup.tick(0.0)
    read = setup.readings.read_queues
    failures = [RuntimeError("nobody expected this")]

    def failing_once(queues: Iterable[TaskQueue]) -> dict[tuple[str, str], QueueReading]:
        if failures:
            raise failures.pop()
        return read(queues)

    setup.readings.read_queues = failing_once  # type: ignore[method-assign]
    setup.clock.now += 2.0  # the pool and its queue are due
    setup.readings.read.clear()
    stop = threading.Event()
    passes: list[float] = []

    class TwoPasses:
        def wait(self, timeout: float) -> bool:
            passes.append(timeout)
            if len(passes) == 3:
                stop.set()
            return True

        def clear(self) -> None: ...

    setup.registry.wake = TwoPasses()  # type: ignore[assignment]
    setup.controller.run(stop)
    assert not failures, "the first pass failed"
    assert setup.readings.read == ["q"], "the retry read the queue the failed pass took"
