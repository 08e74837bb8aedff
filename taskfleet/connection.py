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
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

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
_EXAMPLE = "redis://HOST:6379/0"
DEFAULT_REPLICA_ACK_TIMEOUT_MS = 1000
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_PORT = 6379
_ENCODE = ("a password with / @ : ? # or % in it must be percent-encoded (%2F %40 %3A %3F "
           "%23 %25), or given apart in $TASKFLEET_BROKER_PASSWORD")
"""The fix for a URL whose password broke its form."""


class BrokerURLError(ConfigError):
    """A broker URL that cannot be used. ``problem`` says what is wrong and the fix and
    holds no part of the URL (no host, no user, no password), so that it may be shown
    for a URL that came from a Secret."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"broker URL: {problem}")
        self.problem = problem


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
    replica_ack_timeout_ms: int = DEFAULT_REPLICA_ACK_TIMEOUT_MS


def broker_url(flag: str | None = None, app_url: str | None = None, app: str | None = None
               ) -> str:
    """The broker URL of a ``taskfleet`` command, by one rule for every command (as
    ``celery -A proj worker``): ``--broker``, else $TASKFLEET_BROKER_URL, else the URL of
    the command's app (``app``, its import path; ``app_url``, what ``App(...)`` was given).
    Checked by the parser; ConfigError names each place a URL may come from."""
    for where, url in (("--broker", flag), (f"${BROKER_ENV}", os.environ.get(BROKER_ENV)),
                       (f"the broker URL of {app}", app_url)):
        if url:
            return _checked(url, where)
    if app is None:
        raise ConfigError(f"no broker URL: pass --broker {_EXAMPLE} or set {BROKER_ENV}")
    raise ConfigError(f"no broker URL: pass --broker {_EXAMPLE}, set {BROKER_ENV}, or give the "
                      f"app one: App('{_EXAMPLE}') for {app}")


def app_broker_url(own: str | None) -> str:
    """The broker URL of an App in the code that made it: its own, else $TASKFLEET_BROKER_URL
    (the ``taskfleet`` command's rule puts the environment first: :func:`broker_url`)."""
    if own:
        return _checked(own, "App(broker=...)")
    env = os.environ.get(BROKER_ENV)
    if env:
        return _checked(env, f"${BROKER_ENV}")
    raise ConfigError(f"no broker URL: give the App one, App('{_EXAMPLE}'), or set {BROKER_ENV}")


def _checked(url: str, where: str) -> str:
    try:
        parse_broker_url(url)
    except BrokerURLError as exc:
        raise ConfigError(f"{where} is not a usable broker URL: {exc.problem}") from None
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
        raise BrokerURLError(f"option {name} must be a whole number >= 0")
    return value


def _ordinal(n: int) -> str:
    return {1: "first", 2: "second", 3: "third"}.get(n, f"{n}th")


def _hosts(netloc: str, default_port: int, what: str) -> tuple[tuple[str, int], ...]:
    out = []
    for n, item in enumerate(netloc.split(","), 1):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        host = host.strip("[]")
        if not host:
            raise BrokerURLError(f"the {_ordinal(n)} {what} needs a host (HOST:PORT)")
        try:
            number = int(port) if port else default_port
        except ValueError:
            number = -1
        if not 0 < number < 65536:
            raise BrokerURLError(f"the {_ordinal(n)} {what} has a bad port (HOST:PORT, a "
                                 f"number up to 65535); {_ENCODE}")
        out.append((host, number))
    return tuple(out)


def _check_single(scheme: str, rest: str) -> None:
    """What redis-py would refuse at connect time, or misread (a password cut at an
    unencoded / taken for a host), refused here with a message that holds none of it."""
    if scheme.lower() == "unix":
        return
    netloc, _, path = rest.partition("/")
    if netloc.count("@") > 1 or "@" in path:
        raise BrokerURLError(f"a / or a second @ before the host; {_ENCODE}")
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        parts.port  # noqa: B018 - parsed for its ValueError
    except ValueError:
        raise BrokerURLError(f"the port must be a number up to 65535 (HOST:6379); "
                             f"{_ENCODE}") from None
    if not parts.hostname:
        raise BrokerURLError(f"it names no host: {_FORMS}")
    db = unquote(parts.path).strip("/")
    if db and not db.isdigit():
        raise BrokerURLError("the database must be a number (redis://HOST:6379/0); " + _ENCODE)


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse any broker URL form (module doc); ConfigError says what is wrong and the forms."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise BrokerURLError(f"it must be one of: {_FORMS}")
    mode, tls = SCHEMES[scheme.lower()]
    if "@" in rest.partition("?")[2] and "@" not in rest.partition("?")[0]:
        raise BrokerURLError(f"an @ after a ?; {_ENCODE}")
    rest, _, query = rest.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    replica_acks = _int_option(options, "replica_acks", 0, url)
    ack_timeout = _int_option(options, "replica_ack_timeout_ms",
                              DEFAULT_REPLICA_ACK_TIMEOUT_MS, url)
    if mode == "single":
        _check_single(scheme, rest)
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
    if netloc.count("@") > 1 or "@" in path:
        raise BrokerURLError(f"a / or a second @ before the host; {_ENCODE}")
    if not hostlist:
        raise BrokerURLError(f"it names no host: {_FORMS}")
    parts = [p for p in path.split("/") if p]
    master, db = "", 0
    if mode == "sentinel":
        if not parts:
            raise BrokerURLError("a Sentinel URL needs the master name after the hosts: "
                                 "redis+sentinel://HOST:26379/MASTER_NAME/0")
        master, parts = unquote(parts[0]), parts[1:]
    if len(parts) > 1:
        raise BrokerURLError(f"it has too many path parts: {_FORMS}; {_ENCODE}")
    if parts:
        if not parts[0].isdigit():
            raise BrokerURLError(f"the database must be a number; {_ENCODE}")
        db = int(parts[0])
    if mode == "cluster" and db != 0:
        raise BrokerURLError("a Redis Cluster has only database 0; drop the /N")
    hosts = _hosts(hostlist, DEFAULT_SENTINEL_PORT if mode == "sentinel" else DEFAULT_PORT,
                   "sentinel" if mode == "sentinel" else "cluster node")
    return BrokerAddress(
        mode=mode, url=url, tls=tls, hosts=hosts, master_name=master, db=db,
        username=username, password=password,
        sentinel_username=options.pop("sentinel_username", None) or None,
        sentinel_password=options.pop("sentinel_password", None) or None,
        options=options, replica_acks=replica_acks, replica_ack_timeout_ms=ack_timeout)


def url_passwords(url: str) -> list[str]:
    """The passwords a broker URL (one :func:`parse_broker_url` accepts) holds: in its
    userinfo, or as ``?password=`` or ``?sentinel_password=``."""
    address = parse_broker_url(url)
    found = [address.password, address.sentinel_password]
    if address.mode == "single":
        found += [urlsplit(address.url).password, address.options.get("password")]
        found = [unquote(p) if p else p for p in found] + found
    return [p for p in dict.fromkeys(found) if p]


def has_password(url: str) -> bool:
    """Whether a broker URL holds a password (:func:`url_passwords`)."""
    return bool(url_passwords(url))


HIDDEN = "***"
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_URL_END = re.compile(r"[\s'\"]")
_SECRET_OPTION = re.compile(r"([?&;][^=&\s]*(?:pass|secret|token|auth)[^=&\s]*=)", re.IGNORECASE)


def _redact_url(url: str) -> str:
    """The URL with its userinfo's password (up to the last @: an unencoded @ may be part
    of it) and everything after a password option hidden; each hidden run is one ***."""
    scheme, sep, rest = url.partition("://")
    hidden = [False] * len(rest)
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        start = len(user) + 1 if colon and "/" not in user else 0
        hidden[start:at] = [True] * (at - start)
    option = _SECRET_OPTION.search(rest)
    if option:  # to the end: an unencoded & or @ in the value stays hidden
        hidden[option.end():] = [True] * (len(rest) - option.end())
    out: list[str] = []
    for i, char in enumerate(rest):
        if not hidden[i]:
            out.append(char)
        elif i == 0 or not hidden[i - 1]:
            out.append(HIDDEN)
    return f"{scheme}{sep}{''.join(out)}"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` (a URL, an error message, a log line) without a password in it: the
    password of every URL's userinfo (up to its last @, so an unencoded @ or / in it
    is covered), everything after a password option (``?password=``,
    ``?sentinel_password=``), and every one of ``secrets`` (values read from Secrets or
    the environment) wherever it stands. The one redaction of the project: errors, logs,
    status and the CLI all use it."""
    values = sorted({s for s in secrets if s}, key=len, reverse=True)
    text = _without(text, values)
    out: list[str] = []
    pos = 0
    for found in _URL.finditer(text):
        if found.start() < pos:
            continue
        out.append(text[pos:found.start()])
        # a URL ends at white space or a quote after its last @ (a password may hold
        # either; what stands between is hidden with it)
        at = text.rfind("@", found.end())
        stop = _URL_END.search(text, at if at >= 0 else found.end())
        end = stop.start() if stop else len(text)
        if _SECRET_OPTION.search(text, found.end(), end):
            end = len(text)  # the value of ?password= may hold a space or a quote
        out.append(_redact_url(text[found.start():end]))
        pos = end
    out.append(text[pos:])
    return _without("".join(out), values)


def _without(text: str, values: list[str]) -> str:
    """``text`` with each of ``values`` replaced, until none is left (a replacement next
    to a character may form one again); all of it hidden if that does not end."""
    for _ in range(8):
        if not any(v in text for v in values):
            return text
        for value in values:
            text = text.replace(value, HIDDEN if value not in HIDDEN else "[hidden]")
    if not any(v in text for v in values):
        return text
    return next(m for m in (HIDDEN, "[hidden]", "") if not any(v in m for v in values))


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
        try:
            client: redis.Redis = redis.Redis.from_url(single, **options)
        except ValueError:  # its message may quote the URL, so it is not shown
            raise BrokerURLError(f"redis-py cannot read it: {_FORMS}; {_ENCODE}") from None
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
