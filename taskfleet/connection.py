"""Redis connections from a broker URL: one server, a Sentinel group or a Redis Cluster.

The one parser of broker URLs (:func:`parse_broker_url`); the App, the worker,
the ``taskfleet`` command, ``taskfleet beat`` and the operator all connect
through :func:`connect`.

- ``redis://[[user]:password@]host:6379/0``, ``rediss://...`` (TLS), ``unix://...``:
  one server (redis-py's own URL forms).
- ``redis+sentinel://[[user]:password@]host:26379[,host2:26379...]/MASTER[/db]``
  (``rediss+sentinel://`` for TLS): a Sentinel group. The credentials in the URL are
  the data nodes'; the sentinels' come from ``?sentinel_password=`` (and
  ``sentinel_username=``) or $TASKFLEET_SENTINEL_PASSWORD, since the two are set
  apart in Redis (``requirepass`` vs. sentinel ``requirepass``).
- ``redis+cluster://[[user]:password@]host:7000[,host2:7001...][/0]``
  (``rediss+cluster://``): a Redis Cluster from any of its nodes (seeds).

Any form takes ``?replica_acks=N`` (and ``replica_ack_timeout_ms=``, 1000 by
default): enqueue and settle wait (``WAIT``) until N replicas have the write, so an
acknowledged enqueue survives a failover.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, TypeAlias
from urllib.parse import parse_qsl, unquote, urlencode

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from .errors import ConfigError

Client: TypeAlias = redis.Redis | RedisCluster
"""What :func:`connect` returns: a client of one server (also behind Sentinel), or of a
cluster. Both speak the commands taskfleet sends."""

BROKER_ENV = "TASKFLEET_BROKER_URL"
PASSWORD_ENV = "TASKFLEET_BROKER_PASSWORD"
"""Overrides the URL's password, so a password can come from a Secret apart from the URL."""
SENTINEL_PASSWORD_ENV = "TASKFLEET_SENTINEL_PASSWORD"
"""The sentinels' password, apart from the data nodes' (a Secret of its own)."""
TLS_ENV = "TASKFLEET_BROKER_TLS"
"""'true': use TLS for a redis:// URL; 'insecure': TLS without certificate checks."""

Mode = Literal["single", "sentinel", "cluster"]
SCHEMES: dict[str, tuple[Mode, bool]] = {
    "redis": ("single", False), "rediss": ("single", True), "unix": ("single", False),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
}
"""URL scheme -> (mode, TLS)."""
_FORMS = ("redis://HOST:6379/0, rediss://HOST:6379/0, unix:///path/redis.sock, "
          "redis+sentinel://HOST:26379,HOST2:26379/MASTER_NAME/0 or "
          "redis+cluster://HOST:7000,HOST2:7001")
_OWN_OPTIONS = ("replica_acks", "replica_ack_timeout_ms", "sentinel_password",
                "sentinel_username")
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_PORT = 6379


@dataclass(frozen=True)
class BrokerAddress:
    """A parsed broker URL: where Redis is and how to log in."""

    mode: Mode
    url: str
    """For one server, the URL redis-py connects with (taskfleet's own options removed)."""
    tls: bool = False
    hosts: tuple[tuple[str, int], ...] = ()
    """Sentinels, or cluster seed nodes."""
    master_name: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    """Other query options (ssl_ca_certs, ...), passed to redis-py's connections."""
    replica_acks: int = 0
    replica_ack_timeout_ms: int = 1000


def broker_url(explicit: str | None = None) -> str:
    """The broker URL: the argument, else $TASKFLEET_BROKER_URL; checked by the parser."""
    url = explicit or os.environ.get(BROKER_ENV)
    if not url:
        raise ConfigError(f"no broker URL: pass --broker redis://HOST:6379/0 or set {BROKER_ENV}")
    parse_broker_url(url)
    return url


def _int_option(options: dict[str, str], name: str, default: int, url: str) -> int:
    raw = options.pop(name, None)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ConfigError(f"broker URL option {name} must be a whole number >= 0, got {raw!r}")
    return value


def _hosts(netloc: str, default_port: int, what: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in netloc.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        host = host.strip("[]")
        if not host:
            raise ConfigError(f"broker URL: {what} {item!r} needs a host (HOST:PORT)")
        try:
            number = int(port) if port else default_port
        except ValueError:
            raise ConfigError(f"broker URL: {what} {item!r} has a bad port") from None
        if not 0 < number < 65536:
            raise ConfigError(f"broker URL: {what} {item!r} has a bad port")
        out.append((host, number))
    return tuple(out)


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse any broker URL form (module doc); ConfigError says what is wrong and the forms."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise ConfigError(f"broker URL {_redacted(url)!r} must be one of: {_FORMS}")
    mode, tls = SCHEMES[scheme.lower()]
    rest, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    replica_acks = _int_option(options, "replica_acks", 0, url)
    ack_timeout = _int_option(options, "replica_ack_timeout_ms", 1000, url)
    if mode == "single":
        single = f"{scheme}://{rest}" + (f"?{urlencode(options)}" if options else "")
        return BrokerAddress(mode="single", url=single, tls=tls, options=options,
                             replica_acks=replica_acks, replica_ack_timeout_ms=ack_timeout)
    netloc, _, path = rest.partition("/")
    userinfo, at, hostlist = netloc.rpartition("@")
    if not at:
        userinfo, hostlist = "", netloc
    username = password = None
    if userinfo:
        user, colon, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if colon else None
        if not colon:  # redis://PASSWORD@ is how a bare password is often written
            username, password = None, unquote(user)
    if not hostlist:
        raise ConfigError(f"broker URL {_redacted(url)!r} names no host: {_FORMS}")
    parts = [p for p in path.split("/") if p]
    master, db = "", 0
    if mode == "sentinel":
        if not parts:
            raise ConfigError(f"broker URL {_redacted(url)!r}: a Sentinel URL needs the master "
                              "name after the hosts: redis+sentinel://HOST:26379/MASTER_NAME/0")
        master, parts = unquote(parts[0]), parts[1:]
    if len(parts) > 1:
        raise ConfigError(f"broker URL {_redacted(url)!r} has too many path parts: {_FORMS}")
    if parts:
        if not parts[0].isdigit():
            raise ConfigError(f"broker URL {_redacted(url)!r}: the database must be a number, "
                              f"got {parts[0]!r}")
        db = int(parts[0])
    if mode == "cluster" and db != 0:
        raise ConfigError(f"broker URL {_redacted(url)!r}: a Redis Cluster has only database "
                          "0; drop the /N")
    hosts = _hosts(hostlist, DEFAULT_SENTINEL_PORT if mode == "sentinel" else DEFAULT_PORT,
                   "sentinel" if mode == "sentinel" else "cluster node")
    return BrokerAddress(
        mode=mode, url=url, tls=tls, hosts=hosts, master_name=master, db=db,
        username=username, password=password,
        sentinel_username=options.pop("sentinel_username", None) or None,
        sentinel_password=options.pop("sentinel_password", None) or None,
        options=options, replica_acks=replica_acks, replica_ack_timeout_ms=ack_timeout)


def _redacted(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, tail = rest.partition("@")
    if not at or "/" in userinfo:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{tail}"


_TIMEOUTS: dict[str, object] = {
    # A body that is not UTF-8 (written by something else) must reach the message
    # decoder and be dead-lettered, not raise out of the reply parser and stop a worker.
    "decode_responses": True, "encoding_errors": "surrogateescape",
    # Bounded, so a lost Redis is noticed instead of hanging forever.
    "socket_connect_timeout": 5, "socket_timeout": 30, "socket_keepalive": True,
    "health_check_interval": 15,
}


def connect(url: str, *, password: str | None = None, tls: str | None = None,
            sentinel_password: str | None = None) -> Client:
    """A client of the broker the URL names, with bounded timeouts.

    ``password``, ``sentinel_password`` and ``tls`` ('true', 'insecure' or '')
    complete the URL; they default to $TASKFLEET_BROKER_PASSWORD,
    $TASKFLEET_SENTINEL_PASSWORD and $TASKFLEET_BROKER_TLS.
    """
    address = parse_broker_url(url)
    password = password if password is not None else os.environ.get(PASSWORD_ENV)
    sentinel_password = sentinel_password if sentinel_password is not None \
        else os.environ.get(SENTINEL_PASSWORD_ENV)
    tls = (tls if tls is not None else os.environ.get(TLS_ENV, "")).lower()
    use_tls = address.tls or tls in ("true", "1", "insecure")
    options: dict[str, object] = dict(_TIMEOUTS)
    if password:
        options["password"] = password
    if address.mode == "single":
        single = address.url
        if use_tls and single.startswith("redis://"):
            single = "rediss://" + single[len("redis://"):]
        if tls == "insecure":
            options["ssl_cert_reqs"] = "none"
        client: redis.Redis = redis.Redis.from_url(single, **options)
        return client
    if address.username:
        options["username"] = address.username
    if address.password and not password:
        options["password"] = address.password
    ssl: dict[str, object] = {}
    if use_tls:
        ssl["ssl"] = True
        if tls == "insecure":
            ssl["ssl_cert_reqs"] = "none"
        for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs"):
            if key in address.options:
                ssl[key] = address.options[key]
    if address.mode == "sentinel":
        sentinel_options: dict[str, object] = {
            "socket_connect_timeout": 2, "socket_timeout": 2, **ssl}
        if address.sentinel_username:
            sentinel_options["username"] = address.sentinel_username
        spw = address.sentinel_password or sentinel_password
        if spw:
            sentinel_options["password"] = spw
        sentinel = Sentinel(list(address.hosts), sentinel_kwargs=sentinel_options,  # type: ignore[no-untyped-call]
                            **ssl)
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            address.master_name, redis_class=redis.Redis, db=address.db, **options)
        return master
    nodes = [ClusterNode(host, port)  # type: ignore[no-untyped-call]
             for host, port in address.hosts]
    cluster = RedisCluster(startup_nodes=nodes, **options, **ssl)  # type: ignore[arg-type]
    return cluster


def is_cluster(client: Client) -> bool:
    return isinstance(client, RedisCluster)


def text(value: str | bytes) -> str:
    """A reply as str, whether or not the client decodes responses."""
    return value.decode() if isinstance(value, bytes) else value
