"""taskiq peer: the shared task body (async) on taskiq-redis's stream broker, the one
that acknowledges (consumer groups); no result backend, as by default."""

import os

from taskiq_redis import RedisStreamBroker

from bench.peers import body

broker = RedisStreamBroker(url=os.environ["BENCH_REDIS_URL"], queue_name="bench")


@broker.task(task_name="bench.incr")
async def incr() -> None:
    await body.incr_async()
