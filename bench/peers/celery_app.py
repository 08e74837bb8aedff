"""Celery peer: the shared task body on the Redis broker, no result backend (Celery's
default). Prefetch is raised for short tasks, as Celery's optimizing guide advises."""

import os

from celery import Celery

from bench.peers import body

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.worker_prefetch_multiplier = 64


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.incr")
def incr() -> None:
    body.incr()
