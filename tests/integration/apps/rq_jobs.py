"""Job functions for the protocol rq tests (run by a real ``rq worker``, enqueued with
RQ's own Queue.enqueue)."""

from __future__ import annotations

import os
import time

import redis


def sleep(value: str, seconds: float) -> str:
    client = redis.Redis.from_url(os.environ["RQ_REDIS_URL"])
    client.rpush("test:rq:started", value)
    time.sleep(seconds)
    client.rpush("test:rq:done", value)
    client.close()
    return value
