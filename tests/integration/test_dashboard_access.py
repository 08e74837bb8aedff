"""Who may read the dashboard, over real HTTP against a running `taskfleet dashboard` on
a real redis-server: with a token every API read needs it; every request must name an
allowed host (DNS rebinding of a developer's port-forward); without a token it serves
on loopback only; records over the size limit or unreadable are shown as such."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from taskfleet import App
from taskfleet.keys import QueueKeys, result_key
from testenv.processes import WorkerProcess
from testenv.redis_server import free_port
from testenv.waiting import wait_for

TOKEN = "a-read-token-of-32-characters-00"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Dashboard:
    port: int
    log: Path

    def get(self, path: str, headers: dict[str, str] | None = None,
            method: str = "GET", body: bytes | None = None) -> Answer:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            sent = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
            conn.request(method, path, body=body, headers=sent)
            r = conn.getresponse()
            return Answer(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()


def start(redis_url: str, tmp_path: Path, *args: str, token: str | None = None
          ) -> tuple[subprocess.Popen[bytes], Dashboard]:
    port = free_port()
    log = tmp_path / f"dashboard-{port}.log"
    env = {k: v for k, v in os.environ.items()
           if k != "TASKFLEET_DASHBOARD_TOKEN"}
    if token is not None:
        env["TASKFLEET_DASHBOARD_TOKEN"] = token
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "taskfleet", "--broker", redis_url,
                                 "dashboard", "--port", str(port), *args], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env)
    dash = Dashboard(port, log)

    def up() -> bool:
        try:
            return dash.get("/").status == 200
        except OSError:
            return False
    try:
        wait_for("the dashboard up", up, timeout=30, describe=log.read_text)
    except BaseException:
        proc.terminate()
        proc.wait(15)
        raise
    return proc, dash


@pytest.fixture
def with_token(redis_url: str, tmp_path: Path) -> Iterator[Dashboard]:
    proc, dash = start(redis_url, tmp_path, "--allowed-host", "dash.example.test",
                       "--actions", token=TOKEN)
    try:
        yield dash
    finally:
        proc.terminate()
        proc.wait(15)


def test_every_read_needs_the_token(with_token: Dashboard, redis_url: str) -> None:
    task = App(redis_url).send_task("sample.add", [1, 2], queue="solo")
    reads = ["/api/overview", "/api/dead?queue=solo", f"/api/task/{task.id}"]
    for path in reads:
        for headers in ({}, {"Authorization": "Bearer wrong-token-of-32-characters-0"},
                        {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer "},
                        {"X-Taskfleet-Token": TOKEN[:-1]}, {"X-Taskfleet-Token": TOKEN + "x"}):
            answer = with_token.get(path, headers)
            assert answer.status == 401, (path, headers, answer)
            assert answer.headers.get("www-authenticate") == "Bearer"
            assert b"solo" not in answer.body and task.id.encode() not in answer.body
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"X-Taskfleet-Token": TOKEN}):
        overview = with_token.get("/api/overview", headers)
        assert overview.status == 200, overview
        assert [q["label"] for q in overview.json()["queues"]] == ["solo"]
        assert with_token.get(f"/api/task/{task.id}", headers).json()["status"] == "PENDING"
    # an action without the token is refused before its body is read
    refused = with_token.get("/api/dead/purge", {"Content-Type": "application/json"}, "POST",
                             b'{"queue": "solo", "confirm": "solo"}')
    assert refused.status == 401
    # the page itself holds no data: it loads, then asks for the token
    assert with_token.get("/").status == 200


def test_only_the_allowed_host_names_are_answered(with_token: Dashboard) -> None:
    auth = {"X-Taskfleet-Token": TOKEN}
    port = with_token.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}",
                 "dash.example.test", f"dash.example.test:{port}"):
        assert with_token.get("/api/overview", {**auth, "Host": host}).status == 200, host
    for host in (f"rebound.example.test:{port}", "dash.example.test.evil.test",
                 "127.0.0.2", "", "localhost@evil.test", "[::1"):
        for path in ("/", "/app.js", "/api/overview"):
            answer = with_token.get(path, {**auth, "Host": host})
            assert answer.status == 403, (host, path, answer)
            assert b"Host" in answer.body
    # a page of another site, even on an allowed Host (a browser sends its Origin)
    for origin in ("http://rebound.example.test", "null", "http://127.0.0.1.evil.test"):
        answer = with_token.get("/api/overview", {**auth, "Origin": origin})
        assert answer.status == 403, origin
    assert with_token.get("/api/overview", {
        **auth, "Origin": f"http://localhost:{port}"}).status == 200


def test_without_a_token_it_serves_on_loopback_only(redis_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k != "TASKFLEET_DASHBOARD_TOKEN"}
    for command in (["dashboard", "--address", "0.0.0.0", "--port", str(free_port())],
                    ["operator", "--dashboard-port", str(free_port()),
                     "--dashboard-address", "0.0.0.0"]):
        out = subprocess.run([sys.executable, "-m", "taskfleet", "--broker", redis_url,
                              *command], capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode != 0, out
        assert "without credentials on 0.0.0.0" in out.stderr, out.stderr
        assert "TASKFLEET_DASHBOARD_TOKEN" in out.stderr
    # on loopback, reads are open (kubectl port-forward is the credential) but the Host
    # is still checked
    proc, dash = start(redis_url, tmp_path)
    try:
        assert dash.get("/api/overview").status == 200
        assert dash.get("/api/overview", {"Host": "rebound.example.test"}).status == 403
    finally:
        proc.terminate()
        proc.wait(15)


def test_records_over_the_limit_or_unreadable_are_shown_as_such(
        with_token: Dashboard, redis_url: str, redis_client: redis.Redis) -> None:
    auth = {"X-Taskfleet-Token": TOKEN}
    app = App(redis_url)
    app.send_task("sample.add", [1, 2], queue="solo")
    dead = QueueKeys("solo").dead

    def record(task_id: str, size: int) -> str:
        body = json.dumps({"v": 1, "id": task_id, "task": "sample.add", "queue": "solo",
                           "args": ["x" * size, "y"], "kwargs": {}, "priority": 0,
                           "retries": 0, "enqueued_at": 1.0})
        return json.dumps({"id": task_id, "queue": "solo", "reason": "r", "failed_at": 1.0,
                           "body": body})
    redis_client.lpush(dead, record("huge", 5 << 20))      # over the dashboard's limit
    redis_client.lpush(dead, record("big", 2 << 20))       # over the message limit only
    redis_client.lpush(dead, "[" * 50_000 + "]" * 50_000)
    redis_client.lpush(dead, "not json")
    redis_client.lpush(dead, json.dumps(["a", "list"]))
    redis_client.lpush(dead, json.dumps({"id": {"x": 1}, "reason": ["r"], "body": "{",
                                         "failed_at": "soon"}))
    answer = with_token.get("/api/dead?queue=solo", auth)
    assert answer.status == 200, answer
    rows = answer.json()["dead"]
    assert len(rows) == 6
    assert rows[0] == {"id": None, "task": None, "failed_at": None,
                       "reason": "unreadable dead letter: field 'id' must be a string"}
    assert rows[1]["reason"] == "unreadable dead letter: not a JSON object"
    assert rows[2]["reason"].startswith("unreadable dead letter: not JSON")
    assert rows[3]["reason"].startswith("unreadable dead letter: not JSON")
    assert rows[4] == {"id": "big", "task": "sample.add", "reason": "r", "failed_at": 1.0}
    assert rows[5]["reason"].endswith("over the limit of 4,194,304: not decoded")
    # a requeue leaves the records over the limit (and the unreadable ones) where they are
    requeue = with_token.get("/api/dead/requeue", {**auth, "Content-Type": "application/json"},
                             "POST", b'{"queue": "solo", "confirm": "solo"}')
    assert requeue.status == 200, requeue
    assert requeue.json() == {"queue": "solo", "requeue": 0}
    assert redis_client.llen(dead) == 6
    # a result too large to show, and one that is not JSON
    redis_client.rpush(result_key("huge"), "x" * (5 << 20))
    redis_client.rpush(result_key("odd"), "[" * 50_000)
    huge = with_token.get("/api/task/huge", auth).json()
    assert huge["id"] == "huge" and "over the limit of 4,194,304" in huge["error"]
    odd = with_token.get("/api/task/odd", auth).json()
    assert odd["id"] == "odd" and odd["error"].startswith("unreadable result: not JSON")
    # an action's body over 64 KiB is refused
    assert with_token.get("/api/dead/purge", {**auth, "Content-Type": "application/json"},
                          "POST", b" " * (128 << 10)).status == 413
    assert redis_client.llen(dead) == 6


def test_the_dead_letter_page_names_each_dead_letters_task(
        with_token: Dashboard, redis_url: str, redis_client: redis.Redis,
        workers: list[WorkerProcess]) -> None:
    """A dead letter's task column: a taskfleet message's task, and a Celery client's
    (its name is in the envelope's headers, not where a taskfleet message has it)."""
    native = App(redis_url).send_task("sample.nowhere", [], queue="solo")
    celery = Celery("web", broker=redis_url)
    try:
        sent = celery.send_task("video.nowhere", args=[], queue="solo")
    finally:
        celery.close()
    workers.append(WorkerProcess(redis_url, "tests.integration.apps.sample:app", ["solo"],
                                 extra=["--celery-queues", "solo"]).start())
    wait_for("both dead-lettered", lambda: redis_client.llen(QueueKeys("solo").dead) == 2, 30)
    answer = with_token.get("/api/dead?queue=solo", {"X-Taskfleet-Token": TOKEN})
    assert answer.status == 200, answer
    tasks = {row["id"]: row["task"] for row in answer.json()["dead"]}
    assert tasks == {native.id: "sample.nowhere", sent.id: "video.nowhere"}
