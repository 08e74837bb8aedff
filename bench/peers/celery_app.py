"""Celery peer: a no-op task on the Redis broker, default settings."""

import os

from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])


@app.task(name="bench.noop")
def noop() -> None:
    return None
