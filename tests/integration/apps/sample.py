"""Tasks used by the library's integration tests, run by real worker processes."""

from __future__ import annotations

import os
import time

from taskfleet import App, Retry
from taskfleet.connection import connect

app = App()  # broker from TASKFLEET_BROKER_URL or --broker


def _log(kind: str, value: str) -> None:
    # Every execution is recorded in Redis so tests can count runs exactly.
    client = connect(os.environ["TASKFLEET_BROKER_URL"])
    client.rpush(f"test:runs:{kind}", value)
    client.close()


@app.task(name="sample.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="sample.record")
def record(value: str) -> str:
    _log("record", value)
    return value


@app.task(name="sample.sleep_record", track_started=True)
def sleep_record(value: str, seconds: float) -> str:
    _log("started", value)
    time.sleep(seconds)
    _log("record", value)
    return value


@app.task(name="sample.flaky", max_retries=3, retry_backoff=0.05, retry_jitter=False)
def flaky(key: str, failures: int) -> str:
    client = connect(os.environ["TASKFLEET_BROKER_URL"])
    attempt = int(client.incr(f"test:attempts:{key}"))
    client.close()
    if attempt <= failures:
        raise RuntimeError(f"attempt {attempt} fails")
    return f"ok after {attempt}"


@app.task(name="sample.ask_retry", max_retries=1)
def ask_retry() -> None:
    raise Retry("not yet", countdown=0.05)


@app.task(name="sample.crash")
def crash() -> None:
    """Kills its own worker process, as an out-of-memory kill would."""
    _log("started", "crash")
    os.kill(os.getpid(), 9)


@app.task(name="sample.slow_limited", time_limit=0.5)
def slow_limited() -> None:
    time.sleep(5)


@app.task(name="sample.retry_once", max_retries=1)
def retry_once(key: str, countdown: float) -> str:
    """Asks for one retry ``countdown`` seconds later, then succeeds."""
    client = connect(os.environ["TASKFLEET_BROKER_URL"])
    attempt = int(client.incr(f"test:attempts:{key}"))
    client.close()
    if attempt == 1:
        raise Retry("first attempt", countdown=countdown)
    return f"ok after {attempt}"


@app.task(name="sample.fail")
def fail(message: str) -> None:
    """Fails at once (no retries): the task's status is FAILURE."""
    raise ValueError(message)
