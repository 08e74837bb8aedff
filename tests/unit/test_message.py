"""Pure parts of the runtime: messages, ids, key layout, backoff, routing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskfleet import App, MessageError
from taskfleet.app import _due_ms
from taskfleet.backoff import retry_delay
from taskfleet.keys import QueueKeys, priority_band
from taskfleet.message import (
    Message,
    check_arguments,
    check_priority,
    encode_calls,
    new_task_id,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)


@given(args=st.lists(json_values, max_size=5),
       kwargs=st.dictionaries(st.text(min_size=1), json_values, max_size=5),
       priority=st.integers(0, 9), retries=st.integers(0, 100))
def test_message_round_trips_through_json(args: list[object], kwargs: dict[str, object],
                                          priority: int, retries: int) -> None:
    m = Message(id=new_task_id(), task="video.transcode", queue="transcode", args=args,
                kwargs=kwargs, priority=priority, retries=retries, enqueued_at=1.5)
    assert Message.decode(m.encode()) == m


@given(arg_lists=st.lists(st.lists(json_values, max_size=5), min_size=1, max_size=5),
       priority=st.integers(0, 9), task=st.text(min_size=1), queue=st.text(min_size=1),
       enqueued_at=st.floats(0, 4e9))
def test_a_batch_encodes_each_call_as_its_own_message_would(
        arg_lists: list[list[object]], priority: int, task: str, queue: str,
        enqueued_at: float) -> None:
    encoded = encode_calls(task, queue, priority, enqueued_at, arg_lists)
    assert len({task_id for task_id, _ in encoded}) == len(arg_lists)
    for (task_id, text), args in zip(encoded, arg_lists, strict=True):
        assert text == Message(id=task_id, task=task, queue=queue, args=args,
                               priority=priority, enqueued_at=enqueued_at).encode()


def test_a_batch_with_an_argument_that_is_not_json_is_refused_before_sending() -> None:
    app = App("redis://127.0.0.1:1/0")  # nothing listens: a send would fail differently
    with pytest.raises(TypeError, match="JSON-serialisable"):
        app.send_many("t", [[1], [object()]])
    with pytest.raises(TypeError, match="JSON-serialisable"):
        app.send_many("t", [[float("nan")]])


@pytest.mark.parametrize(("raw", "field"), [
    ("{not json", "not valid JSON"),
    ("[1]", "JSON object"),
    ('{"id": "a", "task": "", "queue": "q"}', "'task'"),
    ('{"id": "a", "task": "t"}', "'queue'"),
    ('{"id": "a", "task": "t", "queue": "q", "args": {}}', "'args'"),
    ('{"id": "a", "task": "t", "queue": "q", "kwargs": []}', "'kwargs'"),
    ('{"id": "a", "task": "t", "queue": "q", "retries": "x"}', "'retries'"),
])
def test_bad_messages_name_the_field(raw: str, field: str) -> None:
    with pytest.raises(MessageError, match=field):
        Message.decode(raw)


def test_task_ids_are_unique_and_time_ordered() -> None:
    ids = [new_task_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 for i in ids)
    assert ids[0][:12] <= ids[-1][:12]  # the 48-bit millisecond prefix never goes back


def test_arguments_must_be_json() -> None:
    app = App("redis://127.0.0.1:1/0")
    with pytest.raises(TypeError, match="JSON-serialisable"):
        app._message("t", [object()], {}, None, 0).encode()
    with pytest.raises(TypeError, match="kwargs must be a dict"):
        check_arguments([], [])
    assert check_arguments((1, "a"), {"k": [1]}) == ([1, "a"], {"k": [1]})


@pytest.mark.parametrize("bad", [-1, 10, 1.5, "9"])
def test_priority_range(bad: object) -> None:
    with pytest.raises(ValueError, match="0 to 9"):
        check_priority(bad)  # type: ignore[arg-type]


@given(st.integers(0, 9))
def test_priority_bands_are_monotonic(p: int) -> None:
    assert 0 <= priority_band(p) <= 2
    if p < 9:
        assert priority_band(p) <= priority_band(p + 1)


def test_every_queue_key_shares_one_cluster_hash_tag() -> None:
    qk = QueueKeys("video.transcode")
    for key in [*qk.all_keys(), qk.wake_channel]:
        assert "{video.transcode}" in key
        assert key.index("{") == key.index("{video.transcode}")
    assert qk.ready_bands == [qk.ready(2), qk.ready(1), qk.ready(0)]


@given(retries=st.integers(0, 80), base=st.floats(0.01, 10), maximum=st.floats(0.01, 1000))
def test_backoff_is_capped_and_jitter_stays_below_the_ceiling(retries: int, base: float,
                                                              maximum: float) -> None:
    ceiling = retry_delay(retries, base, maximum, jitter=False)
    assert ceiling == min(maximum, base * 2.0 ** retries)
    jittered = retry_delay(retries, base, maximum, jitter=True, rng=random.Random(retries))
    assert 0.0 <= jittered <= ceiling


def test_backoff_doubles() -> None:
    assert [retry_delay(n, 1.0, 100.0, jitter=False) for n in range(8)] == [
        1, 2, 4, 8, 16, 32, 64, 100]


def test_routing_prefers_registration_then_patterns_then_default() -> None:
    app = App("redis://127.0.0.1:1/0", routes={"video.*": "transcode", "report.*": "reports"})

    @app.task(name="mail.send", queue="mail")
    def send() -> None: ...

    assert app.route("mail.send") == "mail"
    assert app.route("video.transcode") == "transcode"
    assert app.route("report.hourly") == "reports"
    assert app.route("other") == "default"


def test_task_options_are_validated() -> None:
    app = App("redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match="max_retries"):
        app.task(name="x", max_retries=-1)(lambda: None)
    with pytest.raises(ValueError, match="time_limit"):
        app.task(name="y", time_limit=0)(lambda: None)


def test_due_time_from_countdown_or_eta() -> None:
    assert _due_ms(None, None) == 0
    assert _due_ms(0, None) == 0
    eta = datetime.now(UTC) + timedelta(seconds=60)
    assert _due_ms(None, eta) == int(eta.timestamp() * 1000)
    with pytest.raises(ValueError, match="timezone-aware"):
        _due_ms(None, datetime.now())
    with pytest.raises(ValueError, match="not both"):
        _due_ms(1, eta)


def test_broker_url_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from taskfleet import ConfigError
    from taskfleet.connection import broker_url

    monkeypatch.delenv("TASKFLEET_BROKER_URL", raising=False)
    with pytest.raises(ConfigError, match="TASKFLEET_BROKER_URL"):
        broker_url(None)
    with pytest.raises(ConfigError, match="rediss://"):
        broker_url("http://x")
