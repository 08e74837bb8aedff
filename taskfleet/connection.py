"""Redis connections from a broker URL."""

from __future__ import annotations

import os

import redis

from .errors import ConfigError

BROKER_ENV = "TASKFLEET_BROKER_URL"
PASSWORD_ENV = "TASKFLEET_BROKER_PASSWORD"
"""Overrides the URL's password, so a password can come from a Secret apart from the URL."""
TLS_ENV = "TASKFLEET_BROKER_TLS"
"""'true': use TLS for a redis:// URL; 'insecure': TLS without certificate checks."""


def broker_url(explicit: str | None = None) -> str:
    """The broker URL: the argument, else $TASKFLEET_BROKER_URL."""
    url = explicit or os.environ.get(BROKER_ENV)
    if not url:
        raise ConfigError(f"no broker URL: pass --broker redis://HOST:6379/0 or set {BROKER_ENV}")
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"broker URL {url!r} must start with redis://, rediss:// (TLS) or unix://")
    return url


def connect(url: str, *, password: str | None = None, tls: str | None = None) -> redis.Redis:
    """A client with bounded timeouts, so a lost Redis is noticed instead of hanging forever.

    ``password`` and ``tls`` ('true', 'insecure' or '') complete the URL; they
    default to $TASKFLEET_BROKER_PASSWORD and $TASKFLEET_BROKER_TLS.
    """
    options: dict[str, object] = {}
    password = password if password is not None else os.environ.get(PASSWORD_ENV)
    if password:
        options["password"] = password
    tls = (tls if tls is not None else os.environ.get(TLS_ENV, "")).lower()
    if tls in ("true", "1", "insecure") and url.startswith("redis://"):
        url = "rediss://" + url[len("redis://"):]
    if tls == "insecure":
        options["ssl_cert_reqs"] = "none"
    client: redis.Redis = redis.Redis.from_url(
        url,
        **options,
        decode_responses=True,
        # A body that is not UTF-8 (written by something else) must reach the message
        # decoder and be dead-lettered, not raise out of the reply parser and stop a worker.
        encoding_errors="surrogateescape",
        socket_connect_timeout=5,
        socket_timeout=30,
        socket_keepalive=True,
        health_check_interval=15,
    )
    return client


def text(value: str | bytes) -> str:
    """A reply as str, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value
