"""A real Prometheus scrapes a real operator (real API server, real Redis) and a real worker;
every query of the chart's Grafana dashboard returns its series, and the chart's alert
expressions return what the situation calls for: a dead letter, a pool at its maximum and
an unreadable queue fire; an operator that leads and a young backlog do not. Schedule ticks
sent and skipped are counted."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskfleet import App
from taskfleet.connection import connect
from taskfleet.keys import QueueKeys
from testenv.cluster import Cluster
from testenv.operator import OperatorProcess
from testenv.processes import ROOT, WorkerProcess
from testenv.prometheus import PrometheusServer
from testenv.redis_server import free_port
from testenv.resources import FAST_SCALING, SAMPLE_APP, Pool, task_queue
from testenv.waiting import wait_for

FILES = ROOT / "charts" / "taskfleet" / "files"


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, expression) of every panel target, with the namespace variable at All."""
    dashboard = json.loads((FILES / "dashboard.json").read_text())
    return [(p["title"], t["expr"].replace("$namespace", ".*"))
            for p in dashboard["panels"] for t in p["targets"]]


def alert_rules() -> dict[str, str]:
    groups = yaml.safe_load((FILES / "alerts.yaml").read_text())["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"]}


@pytest.fixture
def scraped(crds: Cluster, namespace: str, redis_url: str, tmp_path: Path,
            workers: list[WorkerProcess]) -> Iterator[tuple[PrometheusServer, Pool]]:
    """The operator (metrics on), one worker (metrics on) and Prometheus scraping both,
    with the chart's alert rules loaded."""
    operator_port, worker_port = free_port(), free_port()
    op = OperatorProcess(crds, namespace, tmp_path / "operator.log")
    op.argv += ["--metrics-port", str(operator_port), "--metrics-address", "127.0.0.1"]
    op.start()
    workers.append(WorkerProcess(redis_url, SAMPLE_APP, ["work"], extra=[
        "--metrics-port", str(worker_port), "--metrics-address", "127.0.0.1"]).start())
    prometheus = PrometheusServer({"taskfleet-operator": [f"127.0.0.1:{operator_port}"],
                                   "taskfleet-workers": [f"127.0.0.1:{worker_port}"]},
                                  rule_files=[FILES / "alerts.yaml"]).start()
    try:
        wait_for("both targets up", lambda: prometheus.targets_up() == {
            "taskfleet-operator": "up", "taskfleet-workers": "up"}, timeout=90,
            describe=lambda: f"{prometheus.targets_up()}\n{op.log()}")
        yield prometheus, Pool(crds, namespace, "work-pool", op.log)
    finally:
        prometheus.stop()
        op.stop()
        print(f"--- operator log ---\n{op.log()}")


def series(prometheus: PrometheusServer, expr: str) -> list[dict[str, str]]:
    return [s["metric"] for s in prometheus.query(expr)]


def value(prometheus: PrometheusServer, expr: str) -> float | None:
    found = prometheus.query(expr)
    return float(found[0]["value"][1]) if found else None


def test_dashboard_and_alert_queries_on_a_real_prometheus(
        scraped: tuple[PrometheusServer, Pool], cluster: Cluster, namespace: str,
        redis_url: str) -> None:
    prometheus, pool = scraped
    # A minutely schedule last fired ten minutes ago (as if the operator had been away):
    # the newest tick is sent, the older ones are skipped, and both are counted.
    minute = int(time.time() // 60 * 60)
    connect(redis_url).hset(QueueKeys("work").schedule_state("minutely"), "last_tick",
                            str(minute - 600 + 1))
    cluster.apply(yaml.safe_dump(task_queue("work", redis_url, schedules=[{
        "name": "minutely", "cron": "* * * * *", "task": "sample.record", "args": ["tick"],
        "startingDeadlineSeconds": 600}])), namespace=namespace)
    # A queue on a port where nothing listens: the operator cannot read it.
    cluster.apply(yaml.safe_dump(task_queue("lost", f"redis://127.0.0.1:{free_port()}/0")),
                  namespace=namespace)
    pool.apply(["work"], {"minReplicas": 1, "maxReplicas": 1, **FAST_SCALING})
    pool.wait_replicas(1, timeout=60)
    ns = f'namespace="{namespace}"'
    wait_for("the work queue scraped with no dead letters", lambda: value(
        prometheus, f'taskfleet_queue_dead_tasks{{{ns},taskqueue="work"}}') == 0,
             timeout=60, describe=pool.describe)

    app = App(redis_url)
    results = [app.send_task("sample.add", [i, 1], queue="work") for i in range(20)]
    assert [r.get(timeout=60) for r in results] == [i + 1 for i in range(20)]
    app.send_task("sample.nowhere", [], queue="work")  # an unknown task: a dead letter
    wait_for("the dead letter scraped", lambda: value(
        prometheus, f'taskfleet_queue_dead_tasks{{{ns},taskqueue="work"}}') == 1, timeout=60)
    wait_for("20 successes scraped from the worker", lambda: value(
        prometheus, 'taskfleet_tasks_finished_total{task="sample.add",outcome="succeeded"}')
        == 20, timeout=60)

    # What the operator exports, as Prometheus stored it.
    assert value(prometheus, "max(taskfleet_operator_leader)") == 1
    pool_labels = f'{ns},workerpool="work-pool"'
    assert value(prometheus, f"taskfleet_pool_desired_replicas{{{pool_labels}}}") == 1
    assert value(prometheus, f"taskfleet_pool_max_replicas{{{pool_labels}}}") == 1
    assert value(prometheus, f'taskfleet_pool_scale_events_total{{{pool_labels},'
                             f'direction="up"}}') == 1
    assert value(prometheus, f'taskfleet_queue_metrics_available{{{ns},taskqueue="lost"}}') == 0
    assert value(prometheus, f'taskfleet_queue_metrics_available{{{ns},taskqueue="work"}}') == 1
    assert (value(prometheus, f'taskfleet_operator_metrics_read_errors_total{{{ns},'
                              f'taskqueue="lost"}}') or 0) >= 1
    assert (value(prometheus, "taskfleet_operator_reconcile_duration_seconds_count") or 0) >= 1
    tick = f'{ns},taskqueue="work",schedule="minutely"'
    assert (value(prometheus, f"taskfleet_operator_schedule_ticks_sent_total{{{tick}}}")
            or 0) >= 1
    skipped = value(prometheus, f"taskfleet_operator_schedule_ticks_skipped_total{{{tick}}}")
    assert skipped in (9, 10), skipped  # 10 when a minute turned before the first pass

    # Every dashboard panel's query returns series (rates need two scrapes of a counter).
    for title, expr in dashboard_queries():
        wait_for(f"panel {title!r}: {expr}", lambda expr=expr: series(prometheus, expr),
                 timeout=30)
    queue_panel = series(prometheus, dashboard_queries()[0][1])
    assert {(s["namespace"], s["taskqueue"]) for s in queue_panel} == {
        (namespace, "work")}, "an unreadable queue shows no stale depth"
    assert value(prometheus, 'count({__name__=~"taskfleet_task_duration_seconds_'
                             '(bucket|count|sum)", task="sample.add"})') == 19
    le = series(prometheus, 'taskfleet_task_duration_seconds_bucket{task="sample.add"}')
    assert "3600.0" in {s["le"] for s in le}, "buckets for hour-long tasks"
    wait_for("the rate of sample.add successes", lambda: {
        "task": "sample.add", "outcome": "succeeded"} in series(
            prometheus, "sum by (task, outcome) (rate(taskfleet_tasks_finished_total[5m]))"),
             timeout=30)

    # Each alert's expression, evaluated by Prometheus on these figures.
    rules = alert_rules()
    expected: dict[str, set[tuple[str, ...]]] = {
        "TaskfleetDeadLettersGrowing": {(namespace, "work")},
        "TaskfleetPoolAtMaxReplicas": {(namespace, "work-pool")},
        "TaskfleetQueueMetricsUnavailable": {(namespace, "lost")},
        "TaskfleetOldestTaskTooOld": set(),
        "TaskfleetNoLeader": set(),
    }
    assert set(rules) == set(expected)
    for alert, want in expected.items():
        got = {(s["namespace"], s.get("taskqueue") or s["workerpool"])
               for s in series(prometheus, rules[alert])}
        assert got == want, (alert, rules[alert], got)
    # ...and by its rule evaluation: the one without a `for` period fires, the others wait.
    states = wait_for("the rules evaluated", lambda: _alert_states(prometheus), timeout=30)
    assert states == {"TaskfleetDeadLettersGrowing": "firing",
                      "TaskfleetPoolAtMaxReplicas": "pending",
                      "TaskfleetQueueMetricsUnavailable": "pending"}, states


def _alert_states(prometheus: PrometheusServer) -> dict[str, str] | None:
    found: dict[str, Any] = {a["labels"]["alertname"]: a["state"] for a in prometheus.alerts()}
    return found if len(found) == 3 else None
