"""The Celery app's ``video.sleep`` moved to taskfleet, under the same name, so Celery
clients keep sending it (tests/integration/apps/celery_tasks.py is the Celery original)."""

from __future__ import annotations

import os
import time

import redis

from taskfleet import App

app = App()  # broker from TASKFLEET_BROKER_URL or --broker


@app.task(name="video.sleep")
def sleep(value: str, seconds: float) -> str:
    client = redis.Redis.from_url(os.environ["TASKFLEET_BROKER_URL"])
    client.rpush("test:celery:started", value)
    time.sleep(seconds)
    client.rpush("test:celery:done", value)
    client.close()
    return value


@app.task(name="video.broken")
def broken(value: str) -> str:
    raise ValueError(f"cannot transcode {value}")
