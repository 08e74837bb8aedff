"""The one task body every system runs: a single Redis INCR of a counter.

A counter the benchmark reads is also the one measure of "done" that means the
same in every system: the body has run N times. The body returns None, so a
system that stores non-None results only (huey) stores nothing either way.
"""

from __future__ import annotations

import os

import redis
import redis.asyncio

COUNTER = "bench:done"
URL_ENV = "BENCH_REDIS_URL"

_sync: redis.Redis | None = None
_async: redis.asyncio.Redis | None = None


def incr() -> None:
    global _sync
    if _sync is None:
        _sync = redis.Redis.from_url(os.environ[URL_ENV])
    _sync.incr(COUNTER)


async def incr_async() -> None:
    global _async
    if _async is None:
        _async = redis.asyncio.Redis.from_url(os.environ[URL_ENV])
    await _async.incr(COUNTER)
