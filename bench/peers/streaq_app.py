"""streaQ peer: the shared task body (async) on its Redis streams, default settings."""

import os

from streaq import Worker

from bench.peers import body

worker = Worker(redis_url=os.environ["BENCH_REDIS_URL"], queue_name="bench")


@worker.task
async def incr() -> None:
    await body.incr_async()
