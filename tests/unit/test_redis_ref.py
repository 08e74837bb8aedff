"""TaskQueue.spec.redis: the URL forms the operator accepts, and what the workers get."""

from __future__ import annotations

from typing import Any

import pytest

from taskfleet_operator.deployment import broker_env
from taskfleet_operator.model import SecretKey, parse_task_queue
from taskfleet_operator.policy import SpecError


def queue(redis: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "q", "namespace": "ns"}, "spec": {"redis": redis}}


def test_sentinel_passwords_reach_the_workers_as_secret_references() -> None:
    tq = parse_task_queue(queue({
        "url": "redis+sentinel://s1:26379,s2:26379/mymaster/0",
        "passwordFrom": {"secretKeyRef": {"name": "redis", "key": "password"}},
        "sentinelPasswordFrom": {"secretKeyRef": {"name": "redis", "key": "sentinel"}}}))
    assert tq.redis.sentinel_password_from == SecretKey("redis", "sentinel")
    env = {e["name"]: e for e in broker_env(tq.redis)}
    assert env["TASKFLEET_BROKER_URL"]["value"] == "redis+sentinel://s1:26379,s2:26379/mymaster/0"
    assert env["TASKFLEET_SENTINEL_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "redis", "key": "sentinel"}}
    assert env["TASKFLEET_BROKER_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "redis", "key": "password"}}


def test_a_cluster_url_is_accepted() -> None:
    tq = parse_task_queue(queue({"url": "redis+cluster://n1:7000,n2:7001"}))
    assert "TASKFLEET_SENTINEL_PASSWORD" not in {e["name"] for e in broker_env(tq.redis)}


@pytest.mark.parametrize(("url", "message"), [
    ("redis+sentinel://s1:26379", "spec.redis.url: .*needs the master name"),
    ("redis+cluster://n1:7000/4", "spec.redis.url: .*only database 0"),
    ("memcached://m:11211", "spec.redis.url: .*must be one of"),
])
def test_a_bad_url_is_a_spec_error_naming_the_field(url: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_task_queue(queue({"url": url}))


@pytest.mark.parametrize("url", ["redis://:hunter2@redis:6379/0",
                                 "redis://redis:6379/0?password=hunter2",
                                 "redis+sentinel://s1/m?sentinel_password=hunter2"])
def test_a_password_in_spec_redis_url_is_refused_pointing_to_password_from(url: str) -> None:
    with pytest.raises(SpecError) as found:
        parse_task_queue({"metadata": {"name": "q", "namespace": "ns"},
                          "spec": {"redis": {"url": url}}})
    message = str(found.value)
    assert "hunter2" not in message
    assert "spec.redis.url" in message and "passwordFrom" in message and "urlFrom" in message


def test_the_directory_raises_only_secret_ref_error_when_there_is_no_client() -> None:
    """A cluster whose seed nodes do not answer raises redis-py's RedisClusterException (no
    RedisError): the directory says it as a SecretRefError, the one error its callers
    catch, and a host read from a Secret stays out of the message."""
    from taskfleet_operator.model import RedisRef, SecretKey
    from taskfleet_operator.observe import RedisDirectory, SecretRefError
    from testenv.redis_server import free_port

    url = f"redis+cluster://127.0.0.1:{free_port()}"
    directory = RedisDirectory(lambda namespace, ref: url)
    with pytest.raises(SecretRefError) as raised:
        directory.client("ns", RedisRef(url_from=SecretKey("redis", "url")))
    assert "RedisClusterException" in str(raised.value)
    assert url not in str(raised.value) and "127.0.0.1" not in str(raised.value)
