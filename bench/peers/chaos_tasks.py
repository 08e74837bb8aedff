"""The chaos run's task: record that it runs, then take 10-50 ms, so that tasks are in
flight whenever a fault hits (bench/chaos.py).

Each execution is written to a ledger: a Redis apart from the broker
($CHAOS_LEDGER_URL; the broker when unset), under ``chaos:`` keys. Apart,
because the broker is what the run crashes, pauses and cuts off: its own
writes may be lost with it (appendfsync everysec) and would count runs that
happened as never run. Each execution writes one field named by a token of
its own, so a write retried after a lost reply is not counted twice.
"""

from __future__ import annotations

import os
import time
import uuid

import redis

from taskfleet import App

app = App()  # the broker from $TASKFLEET_BROKER_URL or the worker's --broker

LEDGER_ENV = "CHAOS_LEDGER_URL"
RECORD_FOR_SECONDS = 120.0
"""How long an execution keeps trying to reach the ledger (across a partition, say)."""

_ledger: redis.Redis | None = None


def runs_key(phase: str) -> str:
    """Hash ``<index>:<token>`` -> ``<pid>:<unix time>``: one field per execution."""
    return f"chaos:{phase}:runs"


def last_key(phase: str) -> str:
    """Hash pid -> index of the last task that process started: what a killed worker held."""
    return f"chaos:{phase}:last"


def ledger() -> redis.Redis:
    global _ledger
    if _ledger is None:
        url = os.environ.get(LEDGER_ENV) or os.environ["TASKFLEET_BROKER_URL"]
        _ledger = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    return _ledger


def record_execution(phase: str, index: int) -> None:
    """Write one execution, retrying while the ledger is out of reach: the task did
    start, and the count must say so even if it took a partition to get through."""
    token = uuid.uuid4().hex[:12]
    pid = os.getpid()
    deadline = time.monotonic() + RECORD_FOR_SECONDS
    while True:
        try:
            pipe = ledger().pipeline(transaction=True)
            pipe.hset(runs_key(phase), f"{index}:{token}", f"{pid}:{time.time():.3f}")
            pipe.hset(last_key(phase), str(pid), str(index))
            pipe.execute()
            return
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@app.task(name="chaos.step", ignore_result=True)
def step(phase: str, index: int, sleep_ms: int) -> None:
    """Recorded first, so a task killed mid-run counts as run, and its rerun as a
    duplicate: the strictest reading of "ran twice"."""
    record_execution(phase, index)
    time.sleep(sleep_ms / 1000.0)
