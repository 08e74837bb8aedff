"""Dramatiq peer: the shared task body on its Redis broker. The worker runs with
``dramatiq_queue_prefetch=64`` in its environment (the docs' setting for many short
tasks); results middleware off, as by default."""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.peers import body

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def incr() -> None:
    body.incr()
