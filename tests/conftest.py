"""Shared fixtures: a real redis-server per session, flushed for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support.processes import WorkerProcess
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Collects started worker processes and stops every one at the end of the test."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()
