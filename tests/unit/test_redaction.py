"""No password and no Secret value in any error, log record or status text.

The pure parts: the broker URL parser and ``taskfleet`` command's errors, the one
redaction function, and the operator's reading of Secrets (a Secret's value that is no
URL, a malformed URL, a Secret without the opt-in label) up to the status message.
"""

from __future__ import annotations

import argparse
import base64
import inspect
import logging
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from taskfleet import connection
from taskfleet.cli import _redacted, main
from taskfleet.connection import (
    BrokerURLError,
    broker_url,
    connect,
    has_password,
    parse_broker_url,
    redact,
)
from taskfleet.errors import ConfigError
from taskfleet_operator import model, observe
from taskfleet_operator.model import RedisRef, SecretKey, TaskQueue
from taskfleet_operator.observe import (
    CREDENTIALS_LABEL,
    RedisDirectory,
    SecretRefError,
    read_queues,
    secret_value,
)

FIXED_TEXT = "\n".join(inspect.getsource(m) for m in (connection, observe, model))
"""What the code writes of itself: a password that is a piece of it ("6379", "redis",
"the database") proves nothing when it shows up in a message."""

SHAPES = [
    "redis://{user}:{pw}@127.0.0.1:6379/0",
    "redis://{pw}@127.0.0.1:6379/0",
    "redis://{user}:{pw}@127.0.0.1:6x79/0",
    "redis://{user}:{pw}@127.0.0.1:6379/zero",
    "redis://{user}:{pw}@",
    "rediss://{user}:{pw}@127.0.0.1:1/0?replica_acks=many",
    "redis://127.0.0.1:6379/0?password={pw}",
    "redis+sentinel://{user}:{pw}@s1:26379",
    "redis+sentinel://:{pw}@s1:26379/mymaster/x",
    "redis+sentinel://s1/mymaster?sentinel_password={pw}&replica_ack_timeout_ms=-1",
    "redis+cluster://:{pw}@n1:7000/2",
    "redis+cluster://{pw}@n1:notaport",
    "redis+cluster://{user}:{pw}@n1:7000,:7001",
    "http://{user}:{pw}@redis:6379",
    "{pw}",
    "{pw}://127.0.0.1",
]
"""URL forms, most of them wrong, each with the password in a place of its own."""

passwords = st.text(min_size=4, max_size=30).filter(
    lambda p: p not in FIXED_TEXT and "\x00" not in p)  # no NUL: the environment holds none
users = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", max_size=8)
problems = (ConfigError, ValueError)


def build(shape: str, user: str, password: str) -> str:
    url = shape.format(user=user, pw=password)
    assume(password not in shape.format(user=user, pw=""))  # the password's own place only
    return url


def texts_of(url: str, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Every error text the library has for the URL: the parser's, broker_url's (from
    the command line and from $TASKFLEET_BROKER_URL), connect's (one server: redis-py
    parses the URL without connecting) and the ``taskfleet`` command's stderr."""
    out: list[str] = []
    monkeypatch.setenv("TASKFLEET_BROKER_URL", url)
    for call in (lambda: parse_broker_url(url), lambda: broker_url(url), broker_url):
        try:
            call()
        except problems as exc:
            out.append(str(exc))
    try:
        if parse_broker_url(url).mode == "single":
            connect(url).close()
    except problems as exc:
        out.append(str(exc))
    if not any("broker URL" in t for t in out):
        return out  # a URL that parses: the command would go on and connect
    code = main(["inspect"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    out.append(err)
    return out


@settings(max_examples=250, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.sampled_from(SHAPES), user=users, password=passwords)
def test_no_error_of_the_library_repeats_any_part_of_a_password(
        shape: str, user: str, password: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    url = build(shape, user, password)
    for text in texts_of(url, monkeypatch, capsys):
        assert password not in text, text
        assert text.count("\n") <= 1, text
    if "@" in shape or "password=" in shape:  # a password where a URL holds one
        assert password not in redact(url)
        assert password not in redact(f"cannot use {url!r}: refused")


def test_the_port_error_of_a_password_with_a_slash_names_the_variable_and_the_fix(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TASKFLEET_BROKER_URL", "redis://user:s3cr/et@word@127.0.0.1:1/0")
    assert main(["inspect"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "$TASKFLEET_BROKER_URL" in err and "%2F" in err, err
    assert not any(part in err for part in ("s3cr", "et@wo", "rd@1")), err
    for url in ("redis://s3cr/et@127.0.0.1:1/0", "redis://u:s3cr?et@127.0.0.1:1/0"):
        with pytest.raises(BrokerURLError) as found:
            parse_broker_url(url)
        assert "s3cr" not in str(found.value) and "et@" not in str(found.value)


@settings(deadline=None)
@given(before=st.text(max_size=20), after=st.text(max_size=20),
       secrets=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=3))
def test_redact_hides_every_secret_wherever_it_stands(before: str, after: str,
                                                      secrets: list[str]) -> None:
    text = before + "".join(f"{s} " for s in secrets) + after
    out = redact(text, secrets)
    assert not any(s in out for s in secrets), out


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://taskfleet:hunter2@redis:6379/0", "redis://taskfleet:***@redis:6379/0"),
    ("redis://hunter2@redis:6379/0", "redis://***@redis:6379/0"),
    ("redis://u:hun/ter@2@redis:6379/0", "redis://u:***@redis:6379/0"),
    ("redis://redis:6379/0?password=hunter2", "redis://redis:6379/0?password=***"),
    ("redis+sentinel://s1/m?sentinel_password=hunter2&x=1",
     "redis+sentinel://s1/m?sentinel_password=***"),
    ("Error 111 connecting to redis:6379.", "Error 111 connecting to redis:6379."),
])
def test_redact_keeps_what_is_not_a_password(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_has_password_finds_each_place_of_one() -> None:
    for url in ("redis://:pw@r:6379/0", "redis://u:pw@r/0", "redis://r/0?password=pw",
                "redis+sentinel://pw@s1/m", "redis+sentinel://s1/m?sentinel_password=pw",
                "redis+cluster://u:pw@n1:7000"):
        assert has_password(url), url
    for url in ("redis://taskfleet@r:6379/0", "redis://r/0", "redis+cluster://n1:7000",
                "redis+sentinel://s1/m?replica_acks=1"):
        assert not has_password(url), url


# -- the operator: Secrets ---------------------------------------------------------------

URL_KEY = SecretKey("redis", "url")
PASSWORD_KEY = SecretKey("redis-auth", "password")


def encoded(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def labelled(value: str, label: str | None = "true") -> Any:
    """A reader of a Secret as the API returns it: labels and base64 data."""
    labels = {} if label is None else {CREDENTIALS_LABEL: label}

    def read(namespace: str, ref: SecretKey) -> str:
        return secret_value(namespace, ref, labels, {ref.key: encoded(value)})

    return read


class Records(logging.Handler):
    """Every log record, of every logger, while it is added to the root logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def queue(ref: RedisRef) -> TaskQueue:
    return TaskQueue(namespace="ns", name="jobs", uid="u", generation=1, queue_name="jobs",
                     redis=ref)


@settings(max_examples=300, deadline=None)
@given(shape=st.sampled_from(SHAPES), user=users, password=passwords)
def test_a_url_secret_that_cannot_be_used_is_never_repeated(shape: str, user: str,
                                                            password: str) -> None:
    value = build(shape, user, password)
    try:
        parse_broker_url(value)
    except ConfigError:
        pass
    else:
        assume(False)  # a usable URL: the operator connects (the integration tests)
    handler = Records()
    records = handler.records
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        directory = RedisDirectory(labelled(value))
        tq = queue(RedisRef(url_from=URL_KEY))
        error = read_queues(directory, [tq])[tq.key].error
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert error is not None
    assert "spec.redis.urlFrom" in error and "Secret ns/redis (key 'url')" in error, error
    for text in [error, directory.redact(f"redis: {value} failed"),
                 *(r.getMessage() for r in records)]:
        assert value not in text and password not in text, text


@settings(max_examples=200, deadline=None)
@given(password=passwords)
def test_a_password_secret_is_hidden_from_every_text_of_the_directory(password: str) -> None:
    directory = RedisDirectory(labelled(password))
    ref = RedisRef(url="redis://127.0.0.1:1/0", password_from=PASSWORD_KEY)
    assert directory.connection_key("ns", ref)[1] == password
    assert password not in directory.redact(f"AUTH {password} failed: {password!r}")


@pytest.mark.parametrize("label", [None, "false", "yes"])
def test_a_secret_without_the_opt_in_label_is_refused_naming_the_label(
        label: str | None) -> None:
    directory = RedisDirectory(labelled("redis://127.0.0.1:6379/0", label))
    tq = queue(RedisRef(url_from=URL_KEY))
    error = read_queues(directory, [tq])[tq.key].error or ""
    assert "spec.redis.urlFrom" in error and "Secret ns/redis" in error, error
    assert f'{CREDENTIALS_LABEL}="true"' in error, error
    assert f"kubectl label secret -n ns redis {CREDENTIALS_LABEL}=true" in error, error
    assert "127.0.0.1" not in error
    password_only = RedisDirectory(labelled("hunter2", label))
    with pytest.raises(SecretRefError, match=r"spec\.redis\.passwordFrom: Secret ns/redis-auth"):
        password_only.connection_key("ns", RedisRef(url="redis://r:6379/0",
                                              password_from=PASSWORD_KEY))


def test_a_missing_key_or_a_value_that_is_not_text_names_the_secret_and_key() -> None:
    with pytest.raises(SecretRefError, match="Secret ns/redis has no key 'url'"):
        secret_value("ns", URL_KEY, {CREDENTIALS_LABEL: "true"}, {"other": encoded("x")})
    with pytest.raises(SecretRefError, match=r"Secret ns/redis \(key 'url'\) is not UTF-8"):
        secret_value("ns", URL_KEY, {CREDENTIALS_LABEL: "true"},
                     {"url": base64.b64encode(b"\xff\xfe").decode()})


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=passwords)
def test_the_command_hides_the_passwords_of_its_broker_settings(
        password: str, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded_url = f"redis://app:{quote(password, safe='')}@127.0.0.1:6379/0"
    for env, broker in ((None, encoded_url), (encoded_url, None)):
        monkeypatch.delenv("TASKFLEET_BROKER_URL", raising=False)
        if env:
            monkeypatch.setenv("TASKFLEET_BROKER_URL", env)
        line = _redacted(f"failed: {password!s} and {password!r}",
                         argparse.Namespace(broker=broker))
        assert password not in line, line
    monkeypatch.setenv("TASKFLEET_BROKER_PASSWORD", password)
    assert password not in _redacted(f"AUTH {password}", argparse.Namespace(broker=None))


@pytest.mark.parametrize(("status", "said"), [(404, "is not found; create it"),
                                              (403, "is forbidden to the operator"),
                                              (500, "cannot be read (boom)")])
def test_an_unreadable_secret_is_named_with_what_to_do(status: int, said: str) -> None:
    from kubernetes.client.exceptions import ApiException

    def read(namespace: str, ref: SecretKey) -> str:
        raise ApiException(status=status, reason="boom")

    tq = queue(RedisRef(url="redis://127.0.0.1:1/0", password_from=PASSWORD_KEY))
    error = read_queues(RedisDirectory(read), [tq])[tq.key].error or ""
    assert f"spec.redis.passwordFrom: Secret ns/redis-auth {said}" in error, error
