"""SAQ peer: the shared task body (async) on its Redis queue, default concurrency."""

import os
from typing import Any

from saq import Queue

from bench.peers import body

queue = Queue.from_url(os.environ["BENCH_REDIS_URL"], name="bench")


async def incr(ctx: dict[str, Any]) -> None:
    await body.incr_async()


settings = {"queue": queue, "functions": [incr]}
