"""The web dashboard served by a real operator (real API server, real Redis), in headless
Chromium: it shows nothing until given the token, then what Redis and the API server
hold, follows a burst, requeues a dead letter onto its queue with the token and a
confirmation, refuses without the token, and purges.
Screenshots go to demo-output/."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Page

from taskfleet import App, queue_stats
from taskfleet.connection import connect
from testenv.cluster import Cluster
from testenv.operator import OperatorProcess
from testenv.processes import ROOT, WorkerProcess
from testenv.redis_server import free_port
from testenv.resources import FAST_SCALING, SAMPLE_APP, Pool, task_queue
from testenv.waiting import answers, wait_for

TOKEN = "a-test-token-of-32-characters-00"
SHOTS = ROOT / "demo-output"


@pytest.fixture
def dashboard(crds: Cluster, namespace: str, tmp_path: Path) -> Iterator[tuple[str, Pool]]:
    """The operator with its dashboard (actions enabled) on a loopback port."""
    port = free_port()
    op = OperatorProcess(crds, namespace, tmp_path / "operator.log")
    op.argv += ["--dashboard-port", str(port), "--dashboard-address", "127.0.0.1",
                "--dashboard-actions"]
    op.env["TASKFLEET_DASHBOARD_TOKEN"] = TOKEN
    op.start()
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for("the operator's dashboard up", lambda: answers(url), timeout=60,
                 describe=op.log)
        yield url, Pool(crds, namespace, "jobs-pool", op.log)
    finally:
        op.stop()
        print(f"--- operator log ---\n{op.log()}")


@pytest.fixture
def page() -> Iterator[Page]:
    from testenv.browser import browser_page

    with browser_page() as p:
        yield p


def text_of(page: Page, selector: str) -> str:
    found = page.query_selector(selector)
    return found.inner_text().strip() if found is not None else ""


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"dashboard-{name}.png"), full_page=True)


def test_dashboard_in_a_real_browser(dashboard: tuple[str, Pool], page: Page, cluster: Cluster,
                                     namespace: str, redis_url: str,
                                     workers: list[WorkerProcess]) -> None:
    url, pool = dashboard
    cluster.apply(yaml.safe_dump(task_queue("jobs", redis_url)), namespace=namespace)
    pool.apply(["jobs"], {"minReplicas": 0, "maxReplicas": 3, "targetPerReplica": 10,
                          **FAST_SCALING})
    client = connect(redis_url)
    label = f"{namespace}/jobs"
    cell: Callable[[str], str] = lambda field: text_of(  # noqa: E731
        page, f'tr[data-queue="{label}"] td[data-field="{field}"]')
    figures = lambda: text_of(page, f'div.pool[data-pool="{namespace}/jobs-pool"] .figures')  # noqa: E731

    # Reads need the token: without it the API answers 401 and the page asks for it.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}api/overview", timeout=10)
    assert refused.value.code == 401
    page.goto(url)
    wait_for("the page asking for the token",
             lambda: text_of(page, "#updated").startswith("token needed"), timeout=30)
    assert text_of(page, "#queues tbody") == ""
    page.fill("#token", TOKEN)
    wait_for("the queue and the pool on the page",
             lambda: cell("ready") == "0" and figures().startswith("desired 0"),
             timeout=60, describe=lambda: page.inner_text("main"))
    assert text_of(page, "#mode") == "actions enabled (token needed)"

    # A burst: the page follows Redis and the API server.
    app = App(redis_url)
    burst = app.send_many("sample.add", [[i, i] for i in range(30)], queue="jobs")
    wait_for("the burst on the page", lambda: cell("ready") == "30", timeout=30,
             describe=lambda: page.inner_text("main"))
    assert queue_stats(client, ["jobs"])["jobs"].ready == 30
    pool.wait("the pool scaled out", lambda: pool.status().get("desiredReplicas") == 3)
    wait_for("the pool's desired replicas on the page",
             lambda: figures().startswith("desired 3"), timeout=30,
             describe=lambda: page.inner_text("#pools-section"))
    assert " · max 3 · queues jobs" in figures()
    reason = pool.status()["lastScaleReason"]
    wait_for("the scale reason on the page", lambda: reason in text_of(
        page, f'div.pool[data-pool="{namespace}/jobs-pool"] .reasons'), timeout=10)
    page.wait_for_timeout(1500)  # a few samples on the replicas chart
    shot(page, "burst")

    # A worker drains the queue; an unknown task goes to the dead-letter list; a slow one
    # shows as the worker's current task.
    app.send_task("sample.nowhere", [], queue="jobs")
    slow = app.send_task("sample.sleep_record", ["slow", 30.0], queue="jobs")
    worker = WorkerProcess(redis_url, SAMPLE_APP, ["jobs"], concurrency=2,
                           env={"POD_NAME": "jobs-worker-1"}).start()
    workers.append(worker)
    wait_for("the worker busy with the slow task on the page",
             lambda: f"sample.sleep_record {slow.id}" in text_of(page, "#workers tbody"),
             timeout=60, describe=lambda: page.inner_text("#workers-section"))
    row = text_of(page, "#workers tbody")
    assert "jobs-worker-1" in row and "busy" in row
    wait_for("the dead letter on the page", lambda: cell("dead") == "1", timeout=30)
    assert [r.get(timeout=30) for r in burst[:3]] == [0, 2, 4]
    shot(page, "worker")
    worker.stop()

    # The dead-letter list; a requeue without the token is refused, with it (and the
    # confirmation) the task is back on its queue.
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))
    page.select_option("#dead-queue", label)
    page.click("#dead-form button[type=submit]")
    wait_for("the dead letter listed", lambda: "sample.nowhere" in text_of(page, "#dead tbody"))
    assert "unknown task" in text_of(page, "#dead tbody").lower()
    assert text_of(page, "#dead tbody tr td:nth-child(2)") == "sample.nowhere", "its task"
    page.fill("#token", "")
    page.click("#requeue")
    wait_for("the refusal shown", lambda: text_of(page, "#dead-message").startswith("Refused"))
    assert "token" in text_of(page, "#dead-message")
    assert queue_stats(client, ["jobs"])["jobs"].dead == 1, "nothing moved without the token"
    page.fill("#token", TOKEN)
    page.click("#requeue")
    wait_for("the requeue reported", lambda: text_of(page, "#dead-message") ==
             f"Requeued 1 from {label}.", describe=lambda: text_of(page, "#dead-message"))
    assert dialogs == [f"Requeue every dead letter of {label}?"] * 2
    stats = queue_stats(client, ["jobs"])["jobs"]
    assert (stats.dead, stats.ready) == (0, 1), stats
    wait_for("the page shows it back on the queue",
             lambda: cell("ready") == "1" and cell("dead") == "0", timeout=30)
    shot(page, "requeued")

    # A worker dead-letters it again; Purge (confirmed) empties the list.
    workers.append(WorkerProcess(redis_url, SAMPLE_APP, ["jobs"]).start())
    wait_for("dead-lettered again", lambda: cell("dead") == "1", timeout=30)
    page.click("#purge")
    wait_for("the purge reported", lambda: text_of(page, "#dead-message") ==
             f"Purged 1 from {label}.", describe=lambda: text_of(page, "#dead-message"))
    assert dialogs[-1] == f"Delete every dead letter of {label}?"
    assert queue_stats(client, ["jobs"])["jobs"].dead == 0

    # A task looked up by id.
    page.fill("#task-id", burst[5].id)
    page.click("#task-form button[type=submit]")
    wait_for("the task's result", lambda: '"status": "SUCCESS"' in text_of(page, "#task"))
    assert '"result": 10' in text_of(page, "#task")
    shot(page, "task")


def test_without_a_cluster_pools_are_unavailable(redis_url: str, page: Page,
                                                 tmp_path: Path) -> None:
    """`taskfleet dashboard` on Redis alone: queues shown, pools said to be unavailable,
    read-only (an action is refused even with a token)."""
    port = free_port()
    App(redis_url).send_task("sample.add", [1, 2], queue="solo")
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "taskfleet", "--broker", redis_url,
                                 "dashboard", "--port", str(port)], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("the dashboard up", lambda: answers(f"http://127.0.0.1:{port}/"), timeout=30,
                 describe=log.read_text)
        page.goto(f"http://127.0.0.1:{port}/")
        wait_for("the queue on the page", lambda: text_of(
            page, 'tr[data-queue="solo"] td[data-field="ready"]') == "1", timeout=30)
        assert text_of(page, "#pools-unavailable").startswith("Pools unavailable:")
        assert text_of(page, "#mode") == "read-only"
        assert page.is_disabled("#requeue")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/dead/purge", method="POST",
            data=b'{"queue": "solo", "confirm": "solo"}',
            headers={"X-Taskfleet-Token": TOKEN, "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
        shot(page, "redis-only")
    finally:
        proc.terminate()
        proc.wait(15)
