"""The operator's reader of Celery worker events (a PSUBSCRIBE on a real redis-server)
survives whatever anyone publishes on the event channels: after each hostile payload the
reader thread still runs, a busy worker still counts as busy, and a new heartbeat is
still heard."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from taskfleet_operator.protocols import celery
from testenv.waiting import wait_for

CHANNEL = "/0.celeryev/worker.heartbeat"
POD = "films-7d9c8b6f5-x2k4q"
HOSTNAME = f"celery@{POD}"


class Clock:
    """The reader's clock, moved past the warm-up by the test (heartbeats stay fresh)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def envelope(body: bytes | str | Any, base64_body: bool = True, **extra: Any) -> str:
    if isinstance(body, str):
        body = body.encode()
    if base64_body and isinstance(body, bytes):
        body = base64.b64encode(body).decode()
    return json.dumps({"body": body, "content-type": "application/json",
                       "properties": {"body_encoding": "base64"}, **extra})


def heartbeat(**fields: Any) -> str:
    return envelope(json.dumps({"hostname": HOSTNAME, "type": "worker-heartbeat",
                                "active": 3, "freq": 2.0, **fields}))


DEEP = "[" * 20_000 + "]" * 20_000
HOSTILE: dict[str, str | bytes] = {
    "deeply nested JSON": DEEP,
    "deeply nested event body": envelope(DEEP),
    "deeply nested plain body": json.dumps({"body": DEEP}),
    "a number": "5",
    "a string": '"worker-heartbeat"',
    "a list": json.dumps([{"body": "e30="}]),
    "null": "null",
    "properties a list": json.dumps({"body": "e30=", "properties": [1]}),
    "properties a string": json.dumps({"body": "e30=", "properties": "base64"}),
    "body a number": json.dumps({"body": 5, "properties": {"body_encoding": "base64"}}),
    "body an object": json.dumps({"body": {"hostname": HOSTNAME}}),
    "body null": json.dumps({"body": None}),
    "body not base64": json.dumps({"body": "%%%", "properties": {"body_encoding": "base64"}}),
    "event a list": envelope("[1, 2]"),
    "event not JSON": envelope(b"\xff\xfe"),
    "not UTF-8": b"\xff\xfe{",
    "over the size limit": envelope(json.dumps({"hostname": HOSTNAME, "pad": "x" * 100_000})),
    # the busy worker's own name, with figures that are not figures: ignored, so it
    # still counts as busy (not zeroed)
    "active a string": heartbeat(active="3"),
    "active negative": heartbeat(active=-1),
    "active a boolean": heartbeat(active=True),
    "active huge": heartbeat(active=10**30),
    "freq NaN": heartbeat(freq=float("nan")),
    "freq negative": heartbeat(freq=-1),
    "freq a string": heartbeat(freq="2"),
    "hostname a list": envelope(json.dumps({"hostname": [HOSTNAME], "type": "worker-offline"})),
}


@pytest.fixture
def reader(redis_url: str) -> Iterator[tuple[celery.WorkerEvents, Clock, redis.Redis]]:
    client = redis.Redis.from_url(redis_url)
    clock = Clock()
    events = celery.WorkerEvents(client, clock).start()
    try:
        wait_for("the reader subscribed", lambda: events._up_since is not None, timeout=15)
        clock.now += celery.WARMUP_SECONDS
        yield events, clock, client
    finally:
        events.stop()
        events._thread.join(10)
        client.close()


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_the_reader_survives_a_hostile_payload(
        reader: tuple[celery.WorkerEvents, Clock, redis.Redis], name: str) -> None:
    events, clock, client = reader
    # published until heard: the subscription may reach the server after the reader
    # said it was up
    wait_for("the busy worker heard", lambda: client.publish(CHANNEL, heartbeat()) >= 0
             and events.running_by_pod() == {POD: 3}, timeout=10)

    client.publish(CHANNEL, HOSTILE[name])
    wait_for("the payload skipped and counted", lambda: sum(events.skipped.values()) == 1,
             timeout=10, describe=lambda: str(events.skipped))
    assert events._thread.is_alive(), "the reader thread ended"
    assert events.running_by_pod() == {POD: 3}, "the busy worker no longer counts as busy"

    clock.now += 1.0
    client.publish(CHANNEL, heartbeat(active=5))
    wait_for("a later heartbeat heard", lambda: events.running_by_pod() == {POD: 5},
             timeout=10, describe=lambda: str(events.running_by_pod()))
