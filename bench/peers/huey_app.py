"""huey peer: the shared task body on RedisHuey (blocking pops, its default)."""

import os

from huey import RedisHuey

from bench.peers import body

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"])


@huey.task()
def incr() -> None:
    body.incr()
