"""Bad input end to end: a real worker fed garbage straight into its queue's Redis keys,
and the real operator given WorkerPools and TaskQueues the API server accepts but that
cannot be served. Each bad item is set aside with its reason; everything else goes on.

tests/unit/test_fuzz_inputs.py finds the inputs; these tests show what a user sees.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
import redis
import yaml

from taskfleet import App, AsyncResult, heartbeat, keys, queue_stats
from taskfleet.errors import RecordError
from taskfleet.keys import QueueKeys, result_key
from taskfleet.records import DeadLetterRecord, WorkerInfo
from testenv.cluster import Cluster
from testenv.operator import OperatorProcess
from testenv.processes import WorkerProcess
from testenv.resources import SAMPLE_APP, Pool, task_queue
from testenv.waiting import wait_for

QUEUE = "default"


def message(task: Any = "sample.add", **fields: Any) -> str:
    """Message JSON with every field spelled out, so one can be made wrong."""
    body = {"v": 1, "id": "x", "task": task, "queue": QUEUE, "args": [1, 2], "kwargs": {},
            "priority": 0, "retries": 0, "enqueued_at": time.time(), **fields}
    return json.dumps(body)


GARBAGE: dict[str, tuple[str, str]] = {
    # hash field id: (message JSON as a buggy producer stored it, what the reason says)
    "not-json": ("{'task': 'sample.add'}", "not valid JSON"),
    "not-an-object": ('["sample.add", 1, 2]', "must be a JSON object"),
    "task-a-number": (message(task=5), "'task' must be a non-empty string"),
    "args-an-object": (message(args={"x": 1}), "'args' must be a JSON array"),
    "retries-a-string": (message(retries="3"), "'retries' must be an integer"),
    # found by the fuzz tests: these raised OverflowError, ValueError and RecursionError
    # out of the decoder, past the dead-letter path
    "time-too-big": (message(enqueued_at=10**400), "'enqueued_at' must be a unix time"),
    "time-a-word": (message(enqueued_at="yesterday"), "'enqueued_at' must be a unix time"),
    "nested-too-deep": ("[" * 5000 + "]" * 5000, "not valid JSON"),
    "unknown-task": (message(task="no.such.task"), "unknown task 'no.such.task'"),
    "wrong-arguments": (message(args=[1], kwargs={"1": 2}), "bad arguments for task"),
}


def push_raw(client: redis.Redis, task_id: str, body: str | bytes) -> None:
    """Write a task the way a producer that skips taskfleet's API would: its body into the
    messages hash (band digit first, as stored_body does) and its entry on a ready list."""
    qk = QueueKeys(QUEUE)
    client.hset(qk.messages, task_id, b"0" + body if isinstance(body, bytes) else "0" + body)
    client.rpush(qk.ready(0), f"{int(time.time() * 1000)}:{task_id}")


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_a_worker_dead_letters_garbage_with_reasons_and_keeps_going(
        redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess],
        pool: str) -> None:
    for task_id, (body, _) in GARBAGE.items():
        push_raw(redis_client, task_id, body)
    app = App(redis_url)
    worker = WorkerProcess(redis_url, SAMPLE_APP, [QUEUE], pool=pool).start()
    workers.append(worker)
    # a good task behind all of it, and one sent after the garbage was handled
    assert app.send_task("sample.add", [20, 22]).get(timeout=30) == 42
    assert app.send_task("sample.add", [1, 1]).get(timeout=30) == 2
    assert worker.process is not None and worker.process.poll() is None, "worker still runs"
    reasons = {d.id: d.reason for d in app.broker.dead_list(QUEUE)}
    assert sorted(reasons) == sorted(GARBAGE)
    for task_id, (_, reason) in GARBAGE.items():
        assert reason in reasons[task_id], (task_id, reasons[task_id])
    st = queue_stats(app.redis, [QUEUE])[QUEUE]
    assert (st.ready, st.in_flight, st.delayed, st.dead) == (0, 0, 0, len(GARBAGE))


def test_a_body_that_is_not_utf8_is_dead_lettered(redis_url: str, workers: list[WorkerProcess]
                                                  ) -> None:
    raw = redis.Redis.from_url(redis_url)  # bytes in, bytes out
    push_raw(raw, "not-utf8", b"\xff\xfe{")
    raw.close()
    app = App(redis_url)
    worker = WorkerProcess(redis_url, SAMPLE_APP, [QUEUE]).start()
    workers.append(worker)
    assert app.send_task("sample.add", [2, 3]).get(timeout=15) == 5
    assert worker.process is not None and worker.process.poll() is None
    [dead] = app.broker.dead_list(QUEUE)
    assert dead.id == "not-utf8" and "not valid JSON" in dead.reason


# -- the operator -------------------------------------------------------------------------

ODD_POOLS: dict[str, tuple[dict[str, Any], str, str]] = {
    # name: (spec fields the CRD schema lets through, Ready reason, words of the message)
    "fallback-zero": ({"autoscaling": {"onMetricsError": {"fallbackReplicas": 0}}},
                      "InvalidSpec", "spec.autoscaling.onMetricsError.fallbackReplicas"),
    "on-error-list": ({"autoscaling": {"onMetricsError": [1, 2]}},
                      "InvalidSpec", "spec.autoscaling.onMetricsError must be 'hold'"),
    "no-such-queue": ({"queues": ["nowhere"]}, "QueueNotFound", "TaskQueue 'nowhere'"),
    "env-without-name": ({"env": [{"value": "1"}]}, "ApplyFailed", "name: Required value"),
    # the API server answers a Deployment with a bad quantity with a 500, so the parser
    # checks quantities itself
    "cpu-lots": ({"resources": {"requests": {"cpu": "lots"}}}, "InvalidSpec",
                 "spec.resources.requests.cpu must be a quantity"),
}


def test_the_operator_reports_odd_objects_and_keeps_reconciling_the_rest(
        cluster: Cluster, namespace: str, operator: OperatorProcess, redis_url: str) -> None:
    def pool(name: str) -> Pool:
        return Pool(cluster, namespace, name, operator.log)

    cluster.apply(yaml.safe_dump_all([
        task_queue("work", redis_url),
        # passes the CRD (five fields) but never fires: the library refuses it at parse
        # time, so the operator reports it instead of failing every pass
        task_queue("never", redis_url, schedules=[
            {"name": "feb-30", "cron": "0 0 30 2 *", "task": "sample.add"}]),
    ]), namespace=namespace)
    for name, (spec, _, _) in ODD_POOLS.items():
        fields = {"queues": ["work"], **spec}
        pool(name).apply(fields.pop("queues"), **fields)
    steady = pool("steady").apply(["work"], replicas=1)

    for name, (_, reason, words) in ODD_POOLS.items():
        odd = pool(name)
        odd.wait_condition("Ready", "reason", reason, timeout=60)
        assert odd.condition("Ready")["status"] == "False"
        assert words in odd.condition("Ready")["message"], (name, odd.condition("Ready"))
    wait_for("SchedulesValid=False on the cron that never fires",
             lambda: _condition(cluster, namespace, "never", "SchedulesValid").get("status")
             == "False", 30)
    assert "never fires" in _condition(cluster, namespace, "never", "SchedulesValid")["message"]

    # the good pool is served, and still follows changes with the odd ones around
    steady.wait_replicas(1)
    cluster.kubectl("scale", "wp/steady", "--replicas=2", namespace=namespace)
    steady.wait_replicas(2)
    steady.wait_condition("Ready", "status", "True")
    assert operator.process is not None and operator.process.poll() is None
    assert "reconcile pass failed" not in operator.log()


def test_a_pod_template_of_the_wrong_shape_is_reported(cluster: Cluster, namespace: str,
                                                       operator: OperatorProcess,
                                                       redis_url: str) -> None:
    cluster.apply(yaml.safe_dump(task_queue("work", redis_url)), namespace=namespace)
    odd = Pool(cluster, namespace, "containers-a-string", operator.log).apply(
        ["work"], podTemplate={"spec": {"containers": "worker"}})
    odd.wait_condition("Ready", "status", "False", timeout=20)


def _condition(cluster: Cluster, namespace: str, queue: str, type_: str) -> dict[str, Any]:
    status = (cluster.get("taskqueue", queue, namespace) or {}).get("status") or {}
    found: dict[str, Any] = next((c for c in status.get("conditions", [])
                                  if c["type"] == type_), {})
    return found



@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_a_message_over_the_limit_is_dead_lettered_undecoded(
        redis_url: str, redis_client: redis.Redis, workers: list[WorkerProcess],
        pool: str) -> None:
    """A producer that skips taskfleet's API stores a message over the 1 MiB limit (one
    that would run fine): the worker refuses it with the reason, keeps it whole in the
    dead-letter list, and goes on."""
    big = message(task="sample.add", id="too-big", args=["x" * (1 << 20), "y"])
    push_raw(redis_client, "too-big", big)
    app = App(redis_url)
    worker = WorkerProcess(redis_url, SAMPLE_APP, [QUEUE], pool=pool).start()
    workers.append(worker)
    assert app.send_task("sample.add", [20, 22]).get(timeout=30) == 42
    assert worker.process is not None and worker.process.poll() is None, "worker still runs"
    [dead] = app.broker.dead_list(QUEUE)
    assert dead.id == "too-big"
    assert f"message of {len(big) + 1:,} bytes, over the limit of 1,048,576" in dead.reason
    assert dead.body == big, "kept whole"
    assert redis_client.exists(result_key("too-big")) == 0, "never run"
    st = queue_stats(app.redis, [QUEUE])[QUEUE]
    assert (st.ready, st.in_flight, st.dead) == (0, 0, 1)


def test_hostile_records_are_named_and_passed_over_by_every_reader(
        redis_url: str, redis_client: redis.Redis) -> None:
    """Dead letters, a heartbeat and a result written by something other than taskfleet:
    `taskfleet dead list` and `dead requeue` name each one they cannot use, with the
    reason, and go on; `inspect` and the live workers leave the heartbeat out; a result
    that is not one is a RecordError saying so."""
    app = App(redis_url)
    dead = QueueKeys(QUEUE).dead
    good = DeadLetterRecord("ok", QUEUE, "unknown task", 1.0,
                            message(task="sample.add", id="ok"))
    for raw in ("not json", json.dumps(["a", "list"]),
                json.dumps({**good.as_dict(), "id": {"x": 1}}),
                DeadLetterRecord("odd-body", QUEUE, "r", 1.0, "{'task': 1}").encode(),
                good.encode()):
        redis_client.rpush(dead, raw)
    listed = cli(redis_url, "dead", "list", QUEUE)
    assert listed.returncode == 0, listed.stderr
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == ["odd-body", "ok"]
    assert listed.stderr.splitlines() == [
        f"taskfleet: dead letter 1 of {QUEUE}: unreadable dead letter: not JSON (Expecting "
        "value: line 1 column 1 (char 0))",
        f"taskfleet: dead letter 2 of {QUEUE}: unreadable dead letter: not a JSON object",
        f"taskfleet: dead letter 3 of {QUEUE}: unreadable dead letter: field 'id' must be a "
        "string"]
    requeued = cli(redis_url, "dead", "requeue", QUEUE)
    assert (requeued.returncode, requeued.stdout) == (0, "requeued 1\n"), requeued.stderr
    left = requeued.stderr.splitlines()
    assert left[0].startswith("taskfleet: left odd-body in the dead-letter list: message is "
                              "not valid JSON"), left
    assert [line.split(":")[1] for line in left[1:]] == [
        " left record 3 in the dead-letter list", " left record 2 in the dead-letter list",
        " left record 1 in the dead-letter list"]
    assert redis_client.llen(dead) == 4
    assert queue_stats(app.redis, [QUEUE])[QUEUE].ready == 1

    now = time.time()
    heartbeat.publish(redis_client, WorkerInfo("fine", "pod-0", [QUEUE], 0, 1, now))
    redis_client.hset(keys.worker_key("evil"), mapping={"pod": "pod-1", "busy": "lots"})
    redis_client.zadd(keys.WORKERS_KEY, {"evil": now})
    assert [w.id for w in heartbeat.live_workers(redis_client)] == ["fine"]
    inspected = cli(redis_url, "inspect", "--json")
    assert inspected.returncode == 0, inspected.stderr
    assert [w["id"] for w in json.loads(inspected.stdout)["workers"]] == ["fine"]

    redis_client.rpush(result_key("forged"), json.dumps({"status": "SUCCESS"}))
    with pytest.raises(RecordError, match="unreadable result: field 'task' must be a string"):
        AsyncResult("forged", app).get(timeout=5)


def cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taskfleet", "--broker", redis_url, *args],
                          capture_output=True, text=True, timeout=60)
