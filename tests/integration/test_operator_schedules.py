"""Schedules run by the operator, in real time, with a standby and a failover."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from taskfleet import App, queue_stats
from testenv.cluster import Cluster
from testenv.operator import OperatorProcess
from testenv.resources import task_queue
from testenv.waiting import assert_stays, sleep_until_second, wait_for


def _status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = (cluster.get("taskqueue", name, ns) or {}).get("status") or {}
    return status


def test_schedule_fires_once_per_tick_across_a_failover(cluster: Cluster, namespace: str,
                                                        operator: OperatorProcess,
                                                        redis_url: str, tmp_path: Path) -> None:
    standby = OperatorProcess(cluster, namespace, tmp_path / "standby.log").start()
    try:
        cluster.apply(yaml.safe_dump_all([
            task_queue("reports", redis_url, schedules=[
                {"name": "ping", "cron": "* * * * *", "task": "sample.add", "args": [1, 2]},
                {"name": "paused", "cron": "* * * * *", "task": "sample.add", "suspend": True},
            ]),
            task_queue("badzone", redis_url, schedules=[
                {"name": "r", "cron": "@hourly", "task": "t", "timezone": "Mars/Olympus"}]),
        ]), namespace=namespace)
        wait_for("SchedulesValid=False on the bad time zone",
                 lambda: any(c["type"] == "SchedulesValid" and c["status"] == "False"
                             for c in _status(cluster, namespace, "badzone").get(
                                 "conditions", [])), 30)
        [bad] = [c for c in _status(cluster, namespace, "badzone")["conditions"]
                 if c["type"] == "SchedulesValid"]
        assert "spec.schedules['r'].timezone: unknown time zone 'Mars/Olympus'" in bad["message"]

        app = App(redis_url)

        def sent() -> int:
            return queue_stats(app.redis, ["reports"])["reports"].ready

        [first] = wait_for("the schedule is seen", lambda: [
            s for s in _status(cluster, namespace, "reports").get("schedules", [])
            if s["name"] == "ping" and "nextScheduleTime" in s], 30)
        # the first tick is the first minute after the schedule was created, not before
        tick = datetime.strptime(first["nextScheduleTime"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=UTC).timestamp()
        time.sleep(max(0.0, tick - time.time()))
        wait_for("first tick sent", lambda: sent() == 1, 15)
        entry = _status(cluster, namespace, "reports")["schedules"][0]
        assert entry["name"] == "ping" and "nextScheduleTime" in entry
        wait_for("status shows the task", lambda: _status(cluster, namespace, "reports")[
            "schedules"][0].get("lastTaskId"), 10)

        # kill whichever operator is active just before the next tick
        sleep_until_second(58, margin=0.5)
        lease = cluster.get("lease", operator.lease_name, namespace) or {}
        holder = lease["spec"]["holderIdentity"]
        assert operator.process is not None and standby.process is not None
        active = operator if holder.endswith(f"-{operator.process.pid}") else standby
        active.kill()
        wait_for("the tick after the failover sent", lambda: sent() == 2, 30,
                 describe=lambda: standby.log() + operator.log())
        assert_stays("exactly one task per tick", lambda: sent() == 2, 3.0)
        events = [e["message"] for e in cluster.list("events", namespace)
                  if e["reason"] == "Scheduled"]
        assert len(events) == 2 and all("schedule ping: sent sample.add" in m for m in events)
        statuses = {s["name"]: s for s in _status(cluster, namespace, "reports")["schedules"]}
        assert statuses["paused"].get("message") == "suspended"
        assert "lastTaskId" not in statuses["paused"]
    finally:
        standby.stop()


def test_the_api_server_refuses_a_cron_of_the_wrong_shape(crds: Cluster, namespace: str
                                                          ) -> None:
    def apply(cron: str) -> subprocess.CompletedProcess[str]:
        return crds.apply(yaml.safe_dump(task_queue("reports", "redis://127.0.0.1:6379/0",
                                                    schedules=[{"name": "r", "cron": cron,
                                                                "task": "t"}])),
                          namespace=namespace, check=False)

    for bad in ["* * * *", "* * * * * *", "", "@fortnightly", "@weekly 0"]:
        out = apply(bad)
        assert out.returncode != 0, f"cron {bad!r} was accepted"
        assert "spec.schedules[0].cron" in out.stderr
        assert "cron must have five fields" in out.stderr
    assert crds.get("taskqueue", "reports", namespace) is None
    for good in ["@weekly", "@monthly", "@yearly", "@annually", "@daily", "@midnight",
                 "@hourly", "*/5 9-17 * jan-jun mon-fri", " 0  12 * * * "]:
        out = apply(good)
        assert out.returncode == 0, f"cron {good!r} was refused: {out.stderr}"


def test_a_cron_value_out_of_range_is_a_condition_and_a_warning(
        cluster: Cluster, namespace: str, operator: OperatorProcess, redis_url: str) -> None:
    """What the API server's shape check lets through, the operator reports."""
    cluster.apply(yaml.safe_dump(task_queue("reports", redis_url, schedules=[
        {"name": "minute", "cron": "61 * * * *", "task": "t"},
        {"name": "feb", "cron": "0 0 31 2 *", "task": "t"}])), namespace=namespace)

    def schedules_valid() -> dict[str, Any]:
        return next((c for c in _status(cluster, namespace, "reports").get("conditions", [])
                     if c["type"] == "SchedulesValid"), {})

    wait_for("SchedulesValid=False", lambda: schedules_valid().get("status") == "False", 30,
             describe=operator.log)
    message = schedules_valid()["message"]
    assert "spec.schedules['minute'].cron: cron minute field '61': values must be within " \
           "0-59" in message
    assert "spec.schedules['feb'].cron: cron '0 0 31 2 *' never fires" in message
    warnings = wait_for("a Warning event", lambda: [
        e for e in cluster.list("events", namespace) if e["reason"] == "InvalidSchedule"], 10)
    assert [e["type"] for e in warnings] == ["Warning"]
