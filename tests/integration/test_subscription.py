"""A pub/sub subscription held the one way every listener holds it, against a real
redis-server: messages handed over, a lost connection said once, the subscription made
again, and its owner told each time it is made (so it catches up on what was lost)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from taskfleet.subscription import hold_subscription
from testenv.waiting import wait_for


@pytest.fixture
def held(redis_client: redis.Redis) -> Iterator[dict[str, list[Any]]]:
    seen: dict[str, list[Any]] = {"messages": [], "subscribed": [], "lost": []}
    stop = threading.Event()
    thread = threading.Thread(target=hold_subscription, daemon=True, args=(
        redis_client, lambda pubsub: pubsub.subscribe("tf-test"),
        lambda message: seen["messages"].append(message["data"]), stop),
        kwargs={"what": "test channel",
                "on_subscribed": lambda: seen["subscribed"].append(True),
                "on_lost": lambda: seen["lost"].append(True)})
    thread.start()
    yield seen
    stop.set()
    thread.join(10)


def published(client: redis.Redis, text: str, held: dict[str, list[Any]]) -> bool:
    """Publish ``text`` (again: the server may take the PUBLISH before the SUBSCRIBE sent
    just before it) until it was handed over."""
    client.publish("tf-test", text)
    return text in held["messages"]  # the client decodes replies


def test_messages_are_handed_over_and_a_lost_subscription_is_made_again(
        held: dict[str, list[Any]], redis_client: redis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    wait_for("subscribed", lambda: held["subscribed"] == [True], timeout=10)
    wait_for("a message handed over", lambda: published(redis_client, "one", held), timeout=10)
    with caplog.at_level(logging.INFO, logger="taskfleet.subscription"):
        for cut in (1, 2):  # the connection cut twice
            redis_client.client_kill_filter(_type="pubsub")
            wait_for("subscribed again", lambda n=1 + cut: len(held["subscribed"]) == n,
                     timeout=10)
    wait_for("later messages handed over", lambda: published(redis_client, "two", held),
             timeout=10)
    said = [r.getMessage() for r in caplog.records if r.name == "taskfleet.subscription"]
    lost = [m for m in said if "subscription lost" in m]
    again = [m for m in said if "subscribed again" in m]
    assert len(lost) == len(again) == len(held["lost"]) == 2, said


def test_a_subscription_down_for_long_is_said_lost_once(
        caplog: pytest.LogCaptureFixture) -> None:
    # A port bound and never listened on refuses every connection, and no other test
    # process can start a server there meanwhile (a free port could be taken by one that
    # accepts and never answers, and the subscription would wait for it, not fail).
    refusing = socket.socket()
    refusing.bind(("127.0.0.1", 0))
    nowhere = redis.Redis(port=refusing.getsockname()[1], socket_connect_timeout=1,
                          socket_timeout=5)
    lost: list[bool] = []
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="taskfleet.subscription"):
        thread = threading.Thread(target=hold_subscription, daemon=True, args=(
            nowhere, lambda pubsub: pubsub.subscribe("tf-test"), print, stop),
            kwargs={"what": "test channel", "on_lost": lambda: lost.append(True)})
        thread.start()
        try:
            wait_for("three tries", lambda: len(lost) >= 3, timeout=15)
        finally:
            stop.set()
            thread.join(10)
            refusing.close()
    said = [r.getMessage() for r in caplog.records if r.name == "taskfleet.subscription"]
    assert len(said) == 1 and "subscription lost" in said[0], said
