"""The one parser of broker URLs: every form, and a clear error for each mistake."""

from __future__ import annotations

import pytest

from taskfleet.connection import broker_url, parse_broker_url
from taskfleet.errors import ConfigError


def test_single_server_urls_pass_through_to_redis_py() -> None:
    a = parse_broker_url("redis://:pw@redis:6379/2")
    assert (a.mode, a.url, a.replica_acks) == ("single", "redis://:pw@redis:6379/2", 0)
    assert parse_broker_url("rediss://redis:6380/0?ssl_ca_certs=/ca.pem").tls
    assert parse_broker_url("unix:///run/redis.sock").mode == "single"


def test_replica_acks_is_taken_out_of_a_single_server_url() -> None:
    a = parse_broker_url("redis://redis:6379/0?replica_acks=1&replica_ack_timeout_ms=250")
    assert (a.url, a.replica_acks, a.replica_ack_timeout_ms) == (
        "redis://redis:6379/0", 1, 250)


def test_sentinel_url_with_passwords_apart() -> None:
    a = parse_broker_url("redis+sentinel://app:data%40pw@s1:26379,s2,[::1]:26380/mymaster/3"
                         "?sentinel_password=spw&replica_acks=1")
    assert a.mode == "sentinel"
    assert a.hosts == (("s1", 26379), ("s2", 26379), ("::1", 26380))
    assert (a.master_name, a.db) == ("mymaster", 3)
    assert (a.username, a.password) == ("app", "data@pw")
    assert (a.sentinel_password, a.replica_acks) == ("spw", 1)
    assert parse_broker_url("rediss+sentinel://s1/m").tls


def test_cluster_url_with_seed_nodes() -> None:
    a = parse_broker_url("redis+cluster://:pw@n1:7000,n2:7001")
    assert a.mode == "cluster"
    assert a.hosts == (("n1", 7000), ("n2", 7001))
    assert (a.password, a.db) == ("pw", 0)
    assert parse_broker_url("redis+cluster://n1/0").hosts == (("n1", 6379),)


@pytest.mark.parametrize(("url", "message"), [
    ("http://redis:6379", "must be one of: redis://HOST:6379/0"),
    ("redis+sentinel://s1:26379", "needs the master name"),
    ("redis+sentinel://s1:26379/m/x", "the database must be a number"),
    ("redis+cluster://n1:7000/1", "a Redis Cluster has only database 0"),
    ("redis+cluster://n1:notaport", "has a bad port"),
    ("redis+cluster://n1:70000", "has a bad port"),
    ("redis+cluster:///0", "names no host"),
    ("redis://r:6379/0?replica_acks=many", "replica_acks must be a whole number"),
])
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_broker_url(url)


def test_a_password_is_not_repeated_in_an_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse_broker_url("redis+sentinel://:hunter2@s1:26379")
    assert "hunter2" not in str(err.value)


def test_broker_url_checks_the_form(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFLEET_BROKER_URL", "redis+cluster://n1:7000")
    assert broker_url() == "redis+cluster://n1:7000"
    with pytest.raises(ConfigError, match="must be one of"):
        broker_url("mysql://db")
