"""Redis connections from a broker URL."""

from __future__ import annotations

import os

import redis

from .errors import ConfigError

BROKER_ENV = "TASKFLEET_BROKER_URL"


def broker_url(explicit: str | None = None) -> str:
    """The broker URL: the argument, else $TASKFLEET_BROKER_URL."""
    url = explicit or os.environ.get(BROKER_ENV)
    if not url:
        raise ConfigError(f"no broker URL: pass --broker redis://HOST:6379/0 or set {BROKER_ENV}")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"broker URL {url!r} must start with redis://, rediss:// (TLS) or unix://")
    return url


def connect(url: str) -> redis.Redis:
    """A client with bounded timeouts, so a lost Redis is noticed instead of hanging forever."""
    client: redis.Redis = redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=5,
        socket_timeout=30,
        socket_keepalive=True,
        health_check_interval=15,
    )
    return client


def text(value: str | bytes) -> str:
    """A reply as str, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value
