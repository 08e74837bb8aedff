"""Which broker a ``taskfleet`` command uses: ``--broker``, then $TASKFLEET_BROKER_URL,
then the app's own URL (``App("redis://...")``), as ``celery -A proj worker`` does; with
none of the three, one line that names all three. Real worker processes, real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskfleet import App
from taskfleet.result import AsyncResult
from testenv.processes import ROOT, LoggedProcess, stopped_at_end
from testenv.waiting import wait_for

OWN_URL_APP = "tests.integration.apps.own_url:app"
NOWHERE = "redis://127.0.0.1:1/0"  # nothing listens there: a worker pointed at it fails


@pytest.fixture
def started() -> Iterator[list[LoggedProcess]]:
    yield from stopped_at_end()


def clean_env(**set_: str) -> dict[str, str]:
    """This process's environment without any broker URL, plus ``set_``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TASKFLEET_BROKER_URL", "OWN_URL_APP_BROKER")}
    return {**env, **set_}


def worker(started: list[LoggedProcess], tmp_path: Path, env: dict[str, str],
           *options: str, pool: str = "threads") -> LoggedProcess:
    argv = [sys.executable, "-m", "taskfleet", *options, "worker", "--app", OWN_URL_APP,
            "--queues", "default", "--pool", pool, "--concurrency", "2"]
    process = LoggedProcess(argv, {}, tmp_path / "worker.log")
    process.env = env  # exactly this environment: no broker URL inherited
    started.append(process.start())
    return process


def served(w: LoggedProcess, result: AsyncResult) -> object:
    """The task's result, or the worker's output if it exited instead of serving."""
    wait_for("the task done", lambda: result.ready() or not w.running(), 30,
             describe=w.output)
    assert result.ready(), f"the worker exited:\n{w.output()}"
    return result.get(timeout=1)


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_the_worker_uses_the_apps_own_url_when_no_other_is_given(
        redis_url: str, started: list[LoggedProcess], tmp_path: Path, pool: str) -> None:
    w = worker(started, tmp_path, clean_env(OWN_URL_APP_BROKER=redis_url), pool=pool)
    assert served(w, App(redis_url).send_task("own_url.where")) == redis_url


def test_the_environment_wins_over_the_apps_url(
        redis_url: str, started: list[LoggedProcess], tmp_path: Path) -> None:
    env = clean_env(OWN_URL_APP_BROKER=NOWHERE, TASKFLEET_BROKER_URL=redis_url)
    w = worker(started, tmp_path, env)
    assert served(w, App(redis_url).send_task("own_url.where")) == NOWHERE


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_the_flag_wins_over_the_environment_and_the_apps_url(
        redis_url: str, started: list[LoggedProcess], tmp_path: Path, pool: str) -> None:
    env = clean_env(OWN_URL_APP_BROKER=NOWHERE, TASKFLEET_BROKER_URL=NOWHERE)
    w = worker(started, tmp_path, env, "--broker", redis_url, pool=pool)
    assert served(w, App(redis_url).send_task("own_url.where")) == NOWHERE


def test_with_no_url_anywhere_one_line_names_all_three() -> None:
    done = subprocess.run([sys.executable, "-m", "taskfleet", "worker", "--app", OWN_URL_APP],
                          cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for names in ("--broker", "TASKFLEET_BROKER_URL", "App('redis://"):
        assert names in lines[0], lines[0]
