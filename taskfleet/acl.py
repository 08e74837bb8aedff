"""Least privilege on Redis: the ACL rule of a user that can run taskfleet and nothing else.

The rule lives in code, beside the key layout it follows, so that the README
quotes it, the tests create the user from it, and a new Redis command in the
library cannot be forgotten here (tests/unit/test_acl.py checks the Lua scripts
against it; tests/integration/test_redis_acl.py runs producer, worker, CLI, beat
and the operator's reads under it).

The user can touch only keys under ``tf:`` and publish or subscribe only to the
queues' wake channels; it cannot run KEYS, FLUSHALL, CONFIG, DEBUG or any other
command taskfleet does not send. SCAN is allowed because ``taskfleet inspect``
without queue names uses it to find the queues; it lists key names (not values)
of the whole database, so on a Redis shared with other applications drop
``+scan`` and name the queues (``taskfleet inspect transcode default``).
"""

from __future__ import annotations

from .keys import PREFIX, WAKE_CHANNEL_PATTERN

KEYS = f"{PREFIX}:*"
"""Every key taskfleet writes (see keys.py)."""

WAKE_CHANNELS = WAKE_CHANNEL_PATTERN
"""The queues' wake channels. Redis checks a PSUBSCRIBE pattern literally against the
user's channel patterns, so this is exactly the operator's pattern."""

COMMANDS = (
    # connection: health checks, a database number in the URL
    "ping", "select",
    # the Lua scripts (scripts.py), loaded on first use, and the commands they call
    "evalsha", "script|load", "script|exists", "time",
    "get", "set", "del", "pexpire", "exists",
    "hget", "hset", "hdel", "hincrby",
    "llen", "lindex", "lpush", "rpush", "lpop", "ltrim", "incrby",
    "zadd", "zrem", "zrange", "zrangebyscore", "zcount", "zcard",
    "publish",
    # called from Python: settle, results, heartbeats, schedules, dead letters, inspect
    "expire", "hsetnx", "hgetall", "lrange", "lrem", "blmove", "zremrangebyscore", "scan",
    # wake-ups: workers subscribe to their queues, the operator to all of them
    "subscribe", "unsubscribe", "psubscribe", "punsubscribe",
)


def rule() -> list[str]:
    """The ACL rule, after the user name and password: keys, channels, commands."""
    return [f"~{KEYS}", f"&{WAKE_CHANNELS}", "-@all", *(f"+{c}" for c in COMMANDS)]


def setuser_args(username: str, password: str) -> list[str]:
    """``ACL SETUSER`` with the rule; ``reset`` first, so running it again redefines the user
    instead of adding to what it had."""
    return ["ACL", "SETUSER", username, "reset", "on", f">{password}", *rule()]


def setuser_command(username: str = "taskfleet", password: str = "PASSWORD") -> str:
    """The command as a line for redis-cli (docs/security.md quotes it)."""
    return " ".join(setuser_args(username, password))
