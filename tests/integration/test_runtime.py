"""The task runtime against a real redis-server and real worker processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from taskfleet import App, ResultTimeout, TaskFailed, TaskNotFound, keys, queue_stats
from taskfleet.connection import connect
from taskfleet.keys import QueueKeys
from testenv.processes import ROOT, WorkerProcess
from testenv.waiting import assert_stays, wait_for
from tests.conftest import all_broker_modes
from tests.integration.apps import sample

SAMPLE = "tests.integration.apps.sample:app"


@pytest.fixture
def app(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv("TASKFLEET_BROKER_URL", redis_url)
    yield App(redis_url)


def start(workers: list[WorkerProcess], url: str, queues: list[str] | None = None,
          **kw: object) -> WorkerProcess:
    w = WorkerProcess(url, SAMPLE, queues or ["default"], **kw).start()  # type: ignore[arg-type]
    workers.append(w)
    return w


def runs(client: redis.Redis, kind: str = "record") -> list[str]:
    return list(client.lrange(f"test:runs:{kind}", 0, -1))


def dead_count(app: App, queue: str = "default") -> int:
    return queue_stats(app.redis, [queue])[queue].dead


@all_broker_modes
def test_fifo_order_within_a_queue(app: App, redis_url: str, redis_client: redis.Redis,
                                   workers: list[WorkerProcess]) -> None:
    results = [app.send_task("sample.record", [str(i)]) for i in range(30)]
    start(workers, redis_url, concurrency=1)
    results[-1].get(timeout=20)
    assert runs(redis_client) == [str(i) for i in range(30)]


@all_broker_modes
def test_queues_are_served_in_the_order_given(app: App, redis_url: str,
                                              redis_client: redis.Redis,
                                              workers: list[WorkerProcess]) -> None:
    low = [app.send_task("sample.record", [f"low{i}"], queue="low") for i in range(5)]
    high = [app.send_task("sample.record", [f"high{i}"], queue="high") for i in range(5)]
    start(workers, redis_url, ["high", "low"], concurrency=1)
    for r in low + high:
        r.get(timeout=20)
    assert runs(redis_client) == [f"high{i}" for i in range(5)] + [f"low{i}" for i in range(5)]


def test_priority_within_a_queue(app: App, redis_url: str, redis_client: redis.Redis,
                                 workers: list[WorkerProcess]) -> None:
    normal = [app.send_task("sample.record", [f"n{i}"]) for i in range(3)]
    urgent = app.send_task("sample.record", ["urgent"], priority=9)
    start(workers, redis_url, concurrency=1)
    for r in [*normal, urgent]:
        r.get(timeout=20)
    assert runs(redis_client)[0] == "urgent"


def test_send_by_name_without_importing_the_code(redis_url: str,
                                                 workers: list[WorkerProcess]) -> None:
    web = App(redis_url)  # registers no task at all, like a web server
    assert "sample.add" not in web.tasks
    result = web.send_task("sample.add", args=[2, 40])
    assert result.status == "PENDING"
    start(workers, redis_url)
    assert result.get(timeout=20) == 42
    assert result.status == "SUCCESS"


@all_broker_modes
def test_retries_with_backoff_then_success(app: App, redis_url: str,
                                           workers: list[WorkerProcess]) -> None:
    result = app.send_task("sample.flaky", ["k1", 2])
    start(workers, redis_url)
    assert result.get(timeout=20) == "ok after 3"


@all_broker_modes
def test_retries_exhausted_go_to_dead_letter(app: App, redis_url: str,
                                             workers: list[WorkerProcess]) -> None:
    result = app.send_task("sample.flaky", ["k2", 99])
    start(workers, redis_url)
    with pytest.raises(TaskFailed, match="attempt 4 fails"):
        result.get(timeout=20)
    dead = app.broker.dead_list("default")
    assert len(dead) == 1
    assert dead[0].id == result.id
    assert "failed after 3 retries" in dead[0].reason
    assert queue_stats(app.redis, ["default"])["default"].dead == 1
    # requeue gives it a fresh set of attempts (which fail again here)
    assert app.broker.dead_requeue("default").moved == 1
    wait_for("requeued task dead-lettered again after its retries",
             lambda: dead_count(app) == 1, 20)


def test_retry_requested_by_the_task(app: App, redis_url: str,
                                     workers: list[WorkerProcess]) -> None:
    result = app.send_task("sample.ask_retry")
    start(workers, redis_url)
    with pytest.raises(TaskFailed, match="not yet"):
        result.get(timeout=20)
    assert app.broker.dead_list("default")[0].reason.startswith("failed after 1 retries")


def test_status_is_retry_while_a_retry_waits_and_failure_when_a_task_fails(
        app: App, redis_url: str, workers: list[WorkerProcess]) -> None:
    retried = app.send_task("sample.retry_once", ["status", 2.0])
    failed = app.send_task("sample.fail", ["boom"])
    start(workers, redis_url)
    wait_for("RETRY while the retry waits", lambda: retried.status == "RETRY", 20,
             interval=0.05)
    assert not retried.ready()
    assert retried.get(timeout=20) == "ok after 2"
    assert retried.status == "SUCCESS" and retried.successful()
    with pytest.raises(TaskFailed, match="ValueError: boom"):
        failed.get(timeout=20)
    assert failed.status == "FAILURE"
    assert failed.failed() and not failed.successful()
    assert failed.result == "ValueError: boom"


@all_broker_modes
def test_countdown_waits_in_redis_not_in_the_worker(app: App, redis_url: str,
                                                    workers: list[WorkerProcess]) -> None:
    start(workers, redis_url)
    sent = time.time()
    result = app.send_task("sample.add", [1, 1], countdown=1.5)
    st = queue_stats(app.redis, ["default"])["default"]
    assert (st.delayed, st.ready) == (1, 0)
    with pytest.raises(ResultTimeout):
        result.get(timeout=0.5)
    assert result.get(timeout=20) == 2
    done = json.loads(app.redis.lindex(keys.result_key(result.id), 0))
    assert done["date_done"] - sent >= 1.5


def test_apply_async_with_an_eta_runs_the_task_at_that_time(app: App, redis_url: str,
                                                            workers: list[WorkerProcess]
                                                            ) -> None:
    sample.app.configure(redis_url)
    with pytest.raises(ValueError, match="timezone-aware"):
        sample.add.apply_async((1, 1), eta=datetime.now() + timedelta(seconds=1))
    start(workers, redis_url)
    eta = datetime.now(UTC) + timedelta(seconds=1.5)
    result = sample.add.apply_async((2, 3), eta=eta)
    st = queue_stats(app.redis, ["default"])["default"]
    assert (st.delayed, st.ready) == (1, 0), "it waits in the delayed set"
    assert result.get(timeout=20) == 5
    done = json.loads(app.redis.lindex(keys.result_key(result.id), 0))
    assert done["date_done"] >= eta.timestamp(), "not run before its eta"


def test_delay_many_enqueues_one_task_per_call(app: App, redis_url: str,
                                               redis_client: redis.Redis,
                                               workers: list[WorkerProcess]) -> None:
    sample.app.configure(redis_url)
    results = sample.record.delay_many([[f"m{i}"] for i in range(20)], queue="batch")
    assert len({r.id for r in results}) == 20
    assert queue_stats(app.redis, ["batch"])["batch"].ready == 20
    start(workers, redis_url, ["batch"])
    assert [r.get(timeout=20) for r in results] == [f"m{i}" for i in range(20)]
    assert runs(redis_client) == [f"m{i}" for i in range(20)], "each once, in order"


def test_due_delayed_tasks_count_as_ready_with_no_worker(app: App) -> None:
    app.send_task("sample.add", [1, 1], countdown=0.2)
    assert queue_stats(app.redis, ["default"])["default"].delayed == 1
    time.sleep(0.3)
    st = queue_stats(app.redis, ["default"])["default"]
    assert (st.ready, st.delayed) == (1, 0)
    assert st.oldest_age_seconds >= 0.05


def test_result_wait_times_out_and_status_is_pending(app: App) -> None:
    result = app.send_task("sample.add", [1, 2])
    with pytest.raises(ResultTimeout):
        result.get(timeout=0.2)
    assert result.status == "PENDING"
    assert not result.ready()


@all_broker_modes
def test_sigkill_mid_task_is_redone_by_another_worker(app: App, redis_url: str,
                                                      redis_client: redis.Redis,
                                                      workers: list[WorkerProcess]) -> None:
    result = app.send_task("sample.sleep_record", ["job", 1.5])
    doomed = start(workers, redis_url, extra=["--task-lease-seconds", "1"])
    wait_for("task started", lambda: runs(redis_client, "started") == ["job"], 20)
    assert queue_stats(app.redis, ["default"])["default"].in_flight == 1
    assert result.status == "STARTED"
    doomed.kill_group()
    start(workers, redis_url, extra=["--task-lease-seconds", "1"])
    assert result.get(timeout=30) == "job"
    assert runs(redis_client, "started") == ["job", "job"]
    assert runs(redis_client) == ["job"]
    st = queue_stats(app.redis, ["default"])["default"]
    assert (st.ready, st.in_flight, st.dead) == (0, 0, 0)


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_a_taken_task_is_leased_for_30_seconds_by_default(app: App, redis_url: str,
                                                          redis_client: redis.Redis,
                                                          workers: list[WorkerProcess],
                                                          pool: str) -> None:
    result = app.send_task("sample.sleep_record", ["leased", 2.0])
    start(workers, redis_url, pool=pool)
    wait_for("task started", lambda: runs(redis_client, "started") == ["leased"], 20)
    deadline_ms = redis_client.zscore(QueueKeys("default").leases, result.id)
    seconds, micros = redis_client.time()
    assert deadline_ms is not None
    left = deadline_ms / 1000 - (seconds + micros / 1e6)
    assert 25.0 < left <= 30.0, f"lease ends in {left:.1f}s, not in 30s"
    assert result.get(timeout=20) == "leased"


def test_a_task_that_kills_its_worker_is_dead_lettered_after_the_limit(
        app: App, redis_url: str, redis_client: redis.Redis,
        workers: list[WorkerProcess]) -> None:
    poison = app.send_task("sample.crash")
    good = app.send_task("sample.add", [1, 1])
    start(workers, redis_url, pool="processes", concurrency=1,
          extra=["--task-lease-seconds", "0.5", "--redelivery-limit", "3"])
    assert good.get(timeout=30) == 2, "the pool keeps serving other tasks"
    wait_for("poison message dead-lettered", lambda: dead_count(app) == 1, 30)
    [record] = app.broker.dead_list("default")
    assert record.id == poison.id
    assert record.reason.startswith("its worker died while running it 3 times")
    assert runs(redis_client, "started") == ["crash"] * 3
    st = queue_stats(app.redis, ["default"])["default"]
    assert (st.ready, st.in_flight) == (0, 0)
    assert app.broker.dead_requeue("default").moved == 1, "and it can be requeued once fixed"


def test_a_task_that_kills_its_worker_is_dead_lettered_after_5_times_by_default(
        app: App, redis_url: str, redis_client: redis.Redis,
        workers: list[WorkerProcess]) -> None:
    poison = app.send_task("sample.crash")
    start(workers, redis_url, pool="processes", extra=["--task-lease-seconds", "0.5"])
    wait_for("poison message dead-lettered", lambda: dead_count(app) == 1, 60)
    [record] = app.broker.dead_list("default")
    assert record.id == poison.id
    assert record.reason.startswith("its worker died while running it 5 times")
    assert runs(redis_client, "started") == ["crash"] * 5


@all_broker_modes
def test_sigterm_drains_running_tasks_and_keeps_the_rest(app: App, redis_url: str,
                                                         redis_client: redis.Redis,
                                                         workers: list[WorkerProcess]) -> None:
    results = [app.send_task("sample.sleep_record", [str(i), 1.0]) for i in range(6)]
    w = start(workers, redis_url, concurrency=2, extra=["--drain-timeout", "20"])
    wait_for("two tasks started", lambda: len(runs(redis_client, "started")) == 2, 20)
    w.signal(signal.SIGTERM)
    assert w.wait(20) == 0
    # the two running tasks finished; the other four are still queued, none lost
    assert sorted(runs(redis_client)) == ["0", "1"]
    st = queue_stats(app.redis, ["default"])["default"]
    assert (st.ready, st.in_flight) == (4, 0)
    start(workers, redis_url, concurrency=3)
    for r in results:
        r.get(timeout=30)
    assert sorted(runs(redis_client)) == [str(i) for i in range(6)]


def test_drain_window_over_returns_running_task(app: App, redis_url: str,
                                                redis_client: redis.Redis,
                                                workers: list[WorkerProcess]) -> None:
    result = app.send_task("sample.sleep_record", ["long", 3.0])
    w = start(workers, redis_url, extra=["--drain-timeout", "0.3"])
    wait_for("task started", lambda: runs(redis_client, "started") == ["long"], 20)
    w.signal(signal.SIGTERM)
    assert w.wait(20) == 0
    st = queue_stats(app.redis, ["default"])["default"]
    assert (st.ready, st.in_flight) == (1, 0), "interrupted task is back at the front"
    start(workers, redis_url)
    assert result.get(timeout=30) == "long"


@pytest.mark.parametrize("pool", ["threads", "processes", "inline"])
def test_a_second_sigterm_returns_running_tasks_at_once(app: App, redis_url: str,
                                                        redis_client: redis.Redis,
                                                        workers: list[WorkerProcess],
                                                        pool: str) -> None:
    result = app.send_task("sample.sleep_record", ["long", 60.0])
    w = start(workers, redis_url, pool=pool, extra=["--drain-timeout", "120"])
    wait_for("task started", lambda: runs(redis_client, "started") == ["long"], 20)
    w.signal(signal.SIGTERM)
    assert_stays("the first SIGTERM lets the task run on",
                 lambda: w.running() and queue_stats(app.redis, ["default"])[
                     "default"].in_flight == 1, 1.0)
    w.signal(signal.SIGTERM)
    assert w.wait(10) == 0, "the second SIGTERM does not wait for the task"
    st = queue_stats(app.redis, ["default"])["default"]
    assert (st.ready, st.in_flight) == (1, 0), "the running task is back in its queue"
    assert runs(redis_client) == [] and result.status == "STARTED"


def test_processes_pool_drains_on_sigterm_and_exits_zero(app: App, redis_url: str,
                                                         redis_client: redis.Redis,
                                                         workers: list[WorkerProcess]) -> None:
    results = [app.send_task("sample.sleep_record", [str(i), 1.0]) for i in range(4)]
    w = start(workers, redis_url, concurrency=2, pool="processes",
              extra=["--drain-timeout", "20"])
    wait_for("two tasks started", lambda: len(runs(redis_client, "started")) == 2, 30)
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0
    assert len(runs(redis_client)) == 2
    st = queue_stats(app.redis, ["default"])["default"]
    assert (st.ready, st.in_flight) == (2, 0)
    start(workers, redis_url, concurrency=2, pool="processes")
    for r in results:
        r.get(timeout=30)


def test_a_long_task_never_holds_prefetched_tasks_hostage(app: App, redis_url: str,
                                                         redis_client: redis.Redis,
                                                         workers: list[WorkerProcess]) -> None:
    # fast tasks first, so the worker's adaptive prefetch is on when the long one comes
    app.send_many("sample.add", [[i, i] for i in range(40)])
    long = app.send_task("sample.sleep_record", ["long", 4.0])
    shorts = [app.send_task("sample.record", [f"s{i}"]) for i in range(8)]
    start(workers, redis_url, pool="processes")
    wait_for("long task started", lambda: runs(redis_client, "started") == ["long"], 20,
             interval=0.02)
    assert queue_stats(app.redis, ["default"])["default"].ready == 0, \
        "the short tasks were prefetched with the long one (else nothing here is held)"
    start(workers, redis_url, pool="processes")
    for r in shorts:
        r.get(timeout=20)
    assert "long" not in runs(redis_client), "every short task finished while the long one ran"
    assert long.get(timeout=20) == "long"
    assert sorted(runs(redis_client)) == sorted(["long", *[f"s{i}" for i in range(8)]])


def test_prefetched_tasks_count_as_in_flight_until_given_back(app: App, redis_url: str,
                                                              redis_client: redis.Redis,
                                                              workers: list[WorkerProcess]
                                                              ) -> None:
    warm_up = app.send_many("sample.add", [[i, i] for i in range(40)])
    start(workers, redis_url, pool="processes")
    for r in warm_up:
        r.get(timeout=20)
    # The worker has seen tasks that take milliseconds, so it prefetches: one script call
    # enqueues a long task and eight short ones, and one fetch takes all nine.
    batch = app.send_many("sample.sleep_record",
                          [["long", 3.0], *([f"s{i}", 0.0] for i in range(8))])
    wait_for("long task started", lambda: runs(redis_client, "started") == ["long"], 20,
             interval=0.02)

    def ready_in_flight() -> tuple[int, int]:
        st = queue_stats(app.redis, ["default"])["default"]
        return st.ready, st.in_flight

    assert ready_in_flight() == (0, 9), "the eight prefetched tasks count as in flight"
    wait_for("the eight given back after a second", lambda: ready_in_flight() == (8, 1), 10)
    for r in batch:
        r.get(timeout=20)
    assert runs(redis_client) == ["long", *(f"s{i}" for i in range(8))]


def test_time_limit_interrupts_task_in_processes_pool(app: App, redis_url: str,
                                                      workers: list[WorkerProcess]) -> None:
    result = app.send_task("sample.slow_limited")
    start(workers, redis_url, pool="processes")
    with pytest.raises(TaskFailed, match="time_limit"):
        result.get(timeout=20)


def test_garbage_never_stops_the_worker(app: App, redis_url: str,
                                        workers: list[WorkerProcess]) -> None:
    qk = QueueKeys("default")
    client = app.redis
    # undecodable, not an object, missing fields
    for i, body in enumerate(["{not json", "[1,2]", '{"id":"x"}']):
        client.hset(qk.messages, f"junk{i}", f"0{body}")
        client.rpush(qk.ready(0), f"1:junk{i}")
    unknown = app.send_task("no.such.task", [1])
    bad_args = app.send_task("sample.add", [1, 2, 3])
    good = app.send_task("sample.add", [20, 22])
    start(workers, redis_url)
    assert good.get(timeout=20) == 42
    with pytest.raises(TaskFailed, match=r"unknown task 'no\.such\.task'"):
        unknown.get(timeout=5)
    with pytest.raises(TaskFailed, match="bad arguments"):
        bad_args.get(timeout=5)
    reasons = {d.id: d.reason for d in app.broker.dead_list("default")}
    assert "not valid JSON" in reasons["junk0"]
    assert "JSON object" in reasons["junk1"]
    assert "'task' must be a non-empty string" in reasons["junk2"]
    assert "deploy the code" in reasons[unknown.id]
    assert len(reasons) == 5
    st = queue_stats(client, ["default"])["default"]
    assert (st.ready, st.in_flight, st.dead) == (0, 0, 5)


@all_broker_modes
def test_a_thousand_tasks_across_four_workers_each_done_once(
        app: App, redis_url: str, redis_client: redis.Redis,
        workers: list[WorkerProcess]) -> None:
    results = app.send_many("sample.record", [[str(i)] for i in range(1000)])
    for _ in range(4):
        start(workers, redis_url, concurrency=2)
    for r in results:
        r.get(timeout=60)
    done = runs(redis_client)
    assert len(done) == 1000
    assert sorted(done, key=int) == [str(i) for i in range(1000)]
    st = queue_stats(app.redis, ["default"])["default"]
    assert (st.ready, st.in_flight, st.delayed, st.dead) == (0, 0, 0, 0)


def test_heartbeats_show_busy_and_idle_workers(app: App, redis_url: str,
                                               redis_client: redis.Redis,
                                               workers: list[WorkerProcess]) -> None:
    from taskfleet import live_workers

    start(workers, redis_url, ["default", "other"], concurrency=2,
          env={"POD_NAME": "pool-abc"})
    wait_for("worker heartbeat", lambda: live_workers(app.redis), 20)
    [w] = live_workers(app.redis)
    assert (w.pod, w.queues, w.busy, w.concurrency) == ("pool-abc", ["default", "other"], 0, 2)
    app.send_task("sample.sleep_record", ["b", 2.0])
    wait_for("worker reports busy", lambda: live_workers(app.redis)[0].busy == 1, 20)


def test_tls_redis_with_a_verified_certificate(workers: list[WorkerProcess]) -> None:
    from testenv.redis_server import RedisServer

    server = RedisServer(tls=True).start()
    try:
        assert server.url.startswith("rediss://")
        result = App(server.url).send_task("sample.add", [2, 3])
        start(workers, server.url)
        assert result.get(timeout=20) == 5
    finally:
        for w in workers:
            w.stop()
        server.close()


def test_broker_tls_variable_turns_on_verified_tls_for_a_redis_url(
        workers: list[WorkerProcess], monkeypatch: pytest.MonkeyPatch) -> None:
    from testenv.redis_server import RedisServer

    server = RedisServer(tls=True).start()
    try:
        plain = f"redis://127.0.0.1:{server.port}/0"
        with pytest.raises(redis.ConnectionError):
            connect(plain, tls="").ping()  # the server speaks TLS only
        monkeypatch.setenv("TASKFLEET_BROKER_TLS", "true")
        with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
            connect(plain).ping()  # verified: a certificate no CA vouches for is refused
        url = f"{plain}?ssl_ca_certs={server.dir / 'cert.pem'}"
        result = App(url).send_task("sample.add", [2, 3])
        start(workers, url, env={"TASKFLEET_BROKER_TLS": "true"})
        assert result.get(timeout=20) == 5
    finally:
        for w in workers:
            w.stop()
        server.close()


def test_inspect_json_and_password_protected_redis(tmp_path: object) -> None:
    from testenv.redis_server import RedisServer

    server = RedisServer(password="s3cret").start()
    try:
        url = server.url
        App(url).send_task("sample.add", [1, 2], queue="reports")
        out = subprocess.run([sys.executable, "-m", "taskfleet", "--broker", url, "inspect",
                              "--json"], cwd=ROOT, capture_output=True, text=True, check=True)
        data = json.loads(out.stdout)
        assert data["queues"]["reports"]["ready"] == 1
        assert data["workers"] == []
        bad = subprocess.run([sys.executable, "-m", "taskfleet", "--broker",
                              url.replace("s3cret", "wrong"), "inspect"], cwd=ROOT,
                             capture_output=True, text=True)
        assert bad.returncode == 1
        assert "redis error" in bad.stderr
    finally:
        server.close()


def test_get_of_a_task_no_worker_registers_raises_task_not_found(
        app: App, redis_url: str, workers: list[WorkerProcess]) -> None:
    start(workers, redis_url)
    with pytest.raises(TaskNotFound, match=r"unknown task 'no\.such\.task'") as raised:
        app.send_task("no.such.task").get(timeout=20)
    assert isinstance(raised.value, TaskFailed)  # what callers caught before, still caught
    assert app.send_task("sample.add", [1, 2]).get(timeout=20) == 3


def test_cli_send_and_dead_letter_commands(redis_url: str, workers: list[WorkerProcess]) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "taskfleet", "--broker", redis_url, *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)

    bad_json = cli("send", "sample.add", "--args", "[1,")
    assert bad_json.returncode == 2 and "--args: not valid JSON" in bad_json.stderr
    start(workers, redis_url)
    out = cli("send", "sample.add", "--args", "[20, 22]", "--wait", "20")
    assert out.returncode == 0
    assert out.stdout.split()[1] == "42"
    out = cli("send", "no.such.task", "--queue", "default")
    assert out.returncode == 0
    app = App(redis_url)
    wait_for("unknown task dead-lettered", lambda: dead_count(app) == 1, 20)
    listed = cli("dead", "list", "default")
    assert "unknown task 'no.such.task'" in json.loads(listed.stdout.splitlines()[0])["reason"]
    assert cli("dead", "requeue", "default").stdout.strip() == "requeued 1"
    wait_for("dead-lettered again", lambda: dead_count(app) == 1, 20)
    assert cli("dead", "purge", "default").stdout.strip() == "purged 1"
    assert queue_stats(app.redis, ["default"])["default"].dead == 0


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_prometheus_metrics(app: App, redis_url: str, workers: list[WorkerProcess],
                            pool: str) -> None:
    import urllib.request

    from testenv.redis_server import free_port

    port = free_port()
    start(workers, redis_url, pool=pool, concurrency=2,
          extra=["--metrics-port", str(port), "--metrics-address", "127.0.0.1"])
    for r in [app.send_task("sample.add", [1, 2]), app.send_task("sample.flaky", ["m", 1])]:
        r.get(timeout=20)
    app.send_task("sample.add", [1])  # wrong arguments: counted as failed

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            return ""

    def has_all() -> bool:
        text = scrape()
        return all(line in text for line in [
            'taskfleet_tasks_started_total{task="sample.add"} 2.0',
            'taskfleet_tasks_started_total{task="sample.flaky"} 2.0',
            'taskfleet_tasks_finished_total{outcome="succeeded",task="sample.add"} 1.0',
            'taskfleet_tasks_finished_total{outcome="retried",task="sample.flaky"} 1.0',
            'taskfleet_tasks_finished_total{outcome="succeeded",task="sample.flaky"} 1.0',
            'taskfleet_tasks_finished_total{outcome="failed",task="sample.add"} 1.0',
            'taskfleet_task_duration_seconds_count{task="sample.add"} 2.0'])

    wait_for(f"metrics on :{port}", has_all, 20)
