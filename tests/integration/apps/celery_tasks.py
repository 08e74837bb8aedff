"""A Celery 5 app as its users write it, for the protocol celery tests (run by a real
``celery worker`` and sent to by Celery's own client)."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery("celery_tasks", broker=BROKER, backend=BROKER)


@app.task(name="video.sleep")
def sleep(value: str, seconds: float) -> str:
    client = redis.Redis.from_url(BROKER)
    client.rpush("test:celery:started", value)
    time.sleep(seconds)
    client.rpush("test:celery:done", value)
    client.close()
    return value


@app.task(name="video.where")
def where(seconds: float) -> str:
    """The pod (the worker's hostname after ``celery@``) that ran the task."""
    time.sleep(seconds)
    return str(where.request.hostname).split("@", 1)[-1]
