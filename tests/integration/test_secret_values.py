"""Secrets and passwords on real servers: what a Secret holds never reaches a status, an
Event or the operator's log; the operator reads only Secrets that opt in with the label
taskfleet.dev/redis-credentials=true; the API server refuses a password in a TaskQueue's
URL; a processes pool's children have no password on their command lines."""

from __future__ import annotations

import functools
import json
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskfleet import App
from testenv.cluster import Cluster
from testenv.operator import OperatorProcess
from testenv.processes import WorkerProcess, children_of
from testenv.redis_server import RedisServer
from testenv.resources import FAST_SCALING, SAMPLE_APP, task_queue, worker_pool
from testenv.waiting import wait_for

LABEL = "taskfleet.dev/redis-credentials=true"


@pytest.fixture
def chatty_operator(crds: Cluster, namespace: str, tmp_path: Path
                    ) -> Iterator[OperatorProcess]:
    """The test namespace's operator at log level debug: every line it has may be read."""
    op = OperatorProcess(crds, namespace, tmp_path / "operator.log")
    op.argv[op.argv.index("taskfleet") + 1:op.argv.index("taskfleet") + 1] = [
        "--log-level", "debug"]
    op.start()
    yield op
    op.stop()
    print(f"--- operator log ---\n{op.log()}")


def secret(cluster: Cluster, namespace: str, name: str, labelled: bool,
           **data: str) -> None:
    cluster.kubectl("create", "secret", "generic", name,
                    *(f"--from-literal={k}={v}" for k, v in data.items()), namespace=namespace)
    if labelled:
        cluster.kubectl("label", "secret", name, LABEL, namespace=namespace)


def url_from(name: str, key: str) -> dict[str, Any]:
    return {"urlFrom": {"secretKeyRef": {"name": name, "key": key}}}


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return {}


def everything_written(cluster: Cluster, namespace: str, op: OperatorProcess) -> str:
    """The namespace's TaskQueues, WorkerPools and Events as the API returns them, and the
    operator's whole log."""
    parts = [json.dumps(cluster.list(kind, namespace))
             for kind in ("taskqueues", "workerpools", "events")]
    return "\n".join([*parts, op.log_path.read_text(errors="replace")])


def test_a_secret_value_that_is_no_url_never_reaches_a_status_an_event_or_the_log(
        crds: Cluster, namespace: str, chatty_operator: OperatorProcess) -> None:
    token = secrets.token_hex(8)
    not_a_url = f"hunter2-{token}"
    password = f"s3cr/et{token}@word"
    broken = f"redis://user:{password}@127.0.0.1:1/0"
    secret(crds, namespace, "redis", True, url=not_a_url, broken=broken)
    crds.apply(yaml.safe_dump_all([
        task_queue("plain", "", redis=url_from("redis", "url")),
        task_queue("broken", "", redis=url_from("redis", "broken")),
        worker_pool("plain-pool", ["plain"], {"maxReplicas": 2, **FAST_SCALING}),
        worker_pool("broken-pool", ["broken"], {"maxReplicas": 2, **FAST_SCALING})]),
        namespace=namespace)

    def refused(kind: str, name: str, key: str) -> bool:
        c = condition(crds.get(kind, name, namespace), "MetricsAvailable")
        return (c.get("status") == "False"
                and f"Secret {namespace}/redis (key '{key}')" in c.get("message", "")
                and "is not a usable broker URL" in c.get("message", ""))

    for kind, name, key in (("taskqueue", "plain", "url"), ("taskqueue", "broken", "broken"),
                            ("workerpool", "plain-pool", "url"),
                            ("workerpool", "broken-pool", "broken")):
        wait_for(f"{kind} {name}: the Secret's key named, what is wrong said",
                 functools.partial(refused, kind, name, key), 30,
                 describe=chatty_operator.log)
    message = condition(crds.get("taskqueue", "broken", namespace), "MetricsAvailable")["message"]
    assert "spec.redis.urlFrom" in message and "%2F" in message, message
    time.sleep(2.0)  # a few more passes, their log lines and Events too
    written = everything_written(crds, namespace, chatty_operator)
    assert "DEBUG" in written, "the operator logs at debug level"
    for value in (not_a_url, token, broken):
        assert value not in written, f"{value!r} was written"


def test_a_secret_without_the_label_is_refused_until_its_owner_adds_it(
        crds: Cluster, namespace: str, chatty_operator: OperatorProcess,
        redis_url: str) -> None:
    secret(crds, namespace, "redis", False, url=redis_url)
    crds.apply(yaml.safe_dump(task_queue("jobs", "", redis=url_from("redis", "url"))),
               namespace=namespace)

    def metrics() -> dict[str, Any]:
        return condition(crds.get("taskqueue", "jobs", namespace), "MetricsAvailable")

    wait_for("the unlabelled Secret refused", lambda: metrics().get("status") == "False", 30,
             describe=chatty_operator.log)
    message = metrics()["message"]
    assert f"Secret {namespace}/redis lacks the label taskfleet.dev/redis-credentials" in message
    assert f"kubectl label secret -n {namespace} redis {LABEL}" in message, message
    assert redis_url not in everything_written(crds, namespace, chatty_operator)
    crds.kubectl("label", "secret", "redis", LABEL, namespace=namespace)
    wait_for("read once the Secret opts in", lambda: metrics().get("status") == "True", 30,
             describe=chatty_operator.log)


def test_a_password_in_a_task_queue_url_is_refused_by_the_api_server(
        crds: Cluster, namespace: str) -> None:
    for url in ("redis://:hunter2@127.0.0.1:6379/0", "redis://app:hunter2@127.0.0.1:6379/0",
                "redis://127.0.0.1:6379/0?password=hunter2",
                "redis+sentinel://hunter2@127.0.0.1:26379/mymaster",
                "redis+sentinel://127.0.0.1:26379/mymaster?sentinel_password=hunter2"):
        out = crds.apply(yaml.safe_dump(task_queue("pw", url)), namespace=namespace,
                         check=False)
        assert out.returncode != 0, url
        assert "redis.url must not hold a password" in out.stderr, out.stderr
        assert "redis.passwordFrom" in out.stderr and "redis.urlFrom" in out.stderr
    ok = crds.apply(yaml.safe_dump(task_queue("user-only", "redis://app@127.0.0.1:6379/0")),
                    namespace=namespace, check=False)
    assert ok.returncode == 0, ok.stderr  # a user name alone, its password from a Secret


def test_a_processes_pool_passes_no_password_on_its_children_command_lines(
        tmp_path: Path, workers: list[WorkerProcess]) -> None:
    password = f"pw-{secrets.token_hex(8)}"
    server = RedisServer(password=password).start()
    try:
        worker = WorkerProcess(server.url, SAMPLE_APP, ["default"], concurrency=2,
                               pool="processes", log=tmp_path / "worker.log").start()
        workers.append(worker)
        result = App(server.url).send_task("sample.add", [2, 3], queue="default")
        assert result.get(timeout=30) == 5, "the children reach Redis with the password"
        children = wait_for("two pool children", lambda: (
            found if len(found := children_of(worker.pid)) == 2 else None), 30) or []
        for pid in children:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert argv[:3] == [sys.executable.encode(), b"-m", b"taskfleet"], argv
            assert not any(password.encode() in a for a in argv), argv
            assert b"--broker" not in argv, argv
    finally:
        for w in workers:
            w.stop()
        server.close()
