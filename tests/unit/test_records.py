"""The records kept in Redis (taskfleet.records): each decoder returns its type or raises
RecordError naming what is wrong, whatever it is given; encode and decode agree; a dead
letter names its task whichever client sent it; Celery's lists and envelopes are kombu's.
"""

from __future__ import annotations

import contextlib
import json
import math
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from kombu.transport.redis import Channel

from taskfleet import celery_wire
from taskfleet.errors import MessageError, RecordError
from taskfleet.message import Message
from taskfleet.records import (
    CURRENT_SHOWN,
    DeadLetterRecord,
    ResultRecord,
    UnreadableRecord,
    WorkerInfo,
    decode_dead_letters,
)
from tests.unit.test_fuzz_inputs import FUZZ, REMOVE, json_values, mutated, paths

NATIVE = Message(id="t1", task="video.transcode", queue="transcode", args=["v1"],
                 enqueued_at=1.5).encode()
CELERY = json.dumps({  # as Celery 5.7's send_task wrote it (video.sleep, priority 5)
    "body": "W1siYSIsIDBdLCB7fSwgeyJjYWxsYmFja3MiOiBudWxsLCAiZXJyYmFja3MiOiBudWxsLCAiY2hh"
            "aW4iOiBudWxsLCAiY2hvcmQiOiBudWxsfV0=",
    "content-encoding": "utf-8", "content-type": "application/json",
    "headers": {"lang": "py", "task": "video.sleep",
                "id": "bc59cd5a-8f65-4fe9-b681-ef5448558920", "shadow": None, "eta": None,
                "expires": None, "group": None, "group_index": None, "retries": 0,
                "timelimit": [None, None], "root_id": "bc59cd5a-8f65-4fe9-b681-ef5448558920",
                "parent_id": None, "argsrepr": "['a', 0]", "kwargsrepr": "{}",
                "origin": "gen10504@vm", "ignore_result": None, "replaced_task_nesting": 0,
                "stamped_headers": None, "stamps": {}},
    "properties": {"correlation_id": "bc59cd5a-8f65-4fe9-b681-ef5448558920",
                   "reply_to": "e145e581-cb73-375c-82fc-eef9ce43291e", "delivery_mode": 2,
                   "delivery_info": {"exchange": "", "routing_key": "films"}, "priority": 5,
                   "body_encoding": "base64",
                   "delivery_tag": "d147b767-069d-473d-b7ec-7987385c5109"}})
VALID_DEAD: dict[str, Any] = {"id": "t1", "queue": "transcode", "reason": "unknown task",
                              "failed_at": 1767225600.25, "body": NATIVE}
VALID_RESULT: dict[str, Any] = {"status": "FAILURE", "task": "video.transcode",
                                "error": "OSError: disk full", "traceback": "Traceback...",
                                "date_done": 1767225600.25}
VALID_HEARTBEAT = {"pod": "transcoder-0", "queues": "transcode,bulk", "busy": "1",
                   "concurrency": "4", "last_seen": "1767225600.25",
                   "current": "video.transcode t1"}


# -- dead letters ------------------------------------------------------------------------


def dead_letter_or_refused(raw: str | bytes) -> DeadLetterRecord | None:
    try:
        record = DeadLetterRecord.decode(raw)
    except RecordError as exc:
        assert str(exc).startswith(("unreadable dead letter: ", "dead letter of ")), exc
        return None
    assert all(isinstance(v, str) for v in (record.id, record.queue, record.reason,
                                            record.body))
    assert isinstance(record.failed_at, float) and math.isfinite(record.failed_at)
    name = record.task_name()
    assert name is None or (isinstance(name, str) and name)
    with contextlib.suppress(MessageError):  # a body a worker refuses: what made it dead
        record.message()
    return record


@FUZZ
@given(st.text() | st.binary())
@example("[" * 5000 + "]" * 5000)
@example(b"\xff\xfe{")
@example('{"id": "a", "queue": "q", "reason": "r", "body": "{}", "failed_at": 1' + "0" * 400
         + "}")
def test_any_text_is_a_dead_letter_or_refused(raw: str | bytes) -> None:
    dead_letter_or_refused(raw)


@FUZZ
@given(st.sampled_from(sorted(VALID_DEAD)), json_values | st.just(REMOVE))
@example("failed_at", 10**400)
@example("failed_at", True)
@example("body", {"task": "x"})
def test_a_wrong_dead_letter_field_is_named(field: str, value: Any) -> None:
    raw = json.dumps(mutated(VALID_DEAD, (field,), value))
    record = dead_letter_or_refused(raw)
    if record is None:
        with pytest.raises(RecordError, match=f"field '{field}'"):
            DeadLetterRecord.decode(raw)


@FUZZ
@given(json_values)
def test_any_body_names_a_task_or_none_and_decodes_or_is_refused(body: Any) -> None:
    text = body if isinstance(body, str) else json.dumps(body)
    dead_letter_or_refused(DeadLetterRecord("t1", "q", "r", 1.0, text).encode())


@FUZZ
@given(st.sampled_from(list(paths(json.loads(CELERY)))), json_values | st.just(REMOVE))
@example(("properties",), [])
@example(("properties", "priority"), 10**400)
@example(("headers",), "video.sleep")
def test_any_celery_envelope_field_names_a_task_or_none_and_decodes_or_is_refused(
        path: tuple[str | int, ...], value: Any) -> None:
    body = json.dumps(mutated(json.loads(CELERY), path, value))
    dead_letter_or_refused(DeadLetterRecord("t1", "films", "r", 1.0, body).encode())
    assert isinstance(celery_wire.envelope_priority(body), int)


def test_a_dead_letter_round_trips_and_names_its_task_whoever_sent_it() -> None:
    native = DeadLetterRecord(**VALID_DEAD)
    assert DeadLetterRecord.decode(native.encode()) == native
    assert json.loads(native.encode()) == VALID_DEAD
    assert (native.task_name(), native.from_celery) == ("video.transcode", False)
    assert native.message().task == "video.transcode"
    celery = DeadLetterRecord("bc59", "films", "unknown task", 1.0, CELERY)
    assert (celery.task_name(), celery.from_celery) == ("video.sleep", True)
    assert (celery.message().args, celery.message().celery) == (["a", 0], True)
    refused = DeadLetterRecord("x", "q", "not JSON", 1.0, "{'task': 'video.sleep'}")
    assert refused.task_name() is None
    with pytest.raises(MessageError):
        refused.message()


def test_a_dead_letter_over_the_limit_is_not_decoded() -> None:
    raw = DeadLetterRecord(**VALID_DEAD).encode()
    assert DeadLetterRecord.decode(raw, max_bytes=len(raw)).id == "t1"
    with pytest.raises(RecordError, match=f"dead letter of {len(raw)} bytes, over the limit "
                                          f"of {len(raw) - 1}: not decoded"):
        DeadLetterRecord.decode(raw, max_bytes=len(raw) - 1)


def test_a_list_of_dead_letters_keeps_the_unreadable_ones_in_place() -> None:
    good = DeadLetterRecord(**VALID_DEAD)
    assert decode_dead_letters([good.encode(), b"not json", json.dumps([1]), good.encode()]) \
        == [good, UnreadableRecord("unreadable dead letter: not JSON (Expecting value: line "
                                   "1 column 1 (char 0))"),
            UnreadableRecord("unreadable dead letter: not a JSON object"), good]


# -- results ------------------------------------------------------------------------------


def result_or_refused(raw: str | bytes) -> ResultRecord | None:
    try:
        record = ResultRecord.decode(raw)
    except RecordError as exc:
        assert str(exc).startswith("unreadable result: "), exc
        return None
    assert record.status in ("SUCCESS", "FAILURE")
    assert isinstance(record.task, str)
    assert math.isfinite(record.date_done)
    if record.status == "FAILURE":
        assert isinstance(record.error, str)
        assert record.traceback is None or isinstance(record.traceback, str)
    return record


@FUZZ
@given(st.text() | st.binary())
@example("[" * 5000 + "]" * 5000)
def test_any_text_is_a_result_or_refused(raw: str | bytes) -> None:
    result_or_refused(raw)


@FUZZ
@given(st.sampled_from(sorted(VALID_RESULT)), json_values | st.just(REMOVE))
@example("status", "PENDING")
@example("error", 5)
def test_a_wrong_result_field_is_named(field: str, value: Any) -> None:
    raw = json.dumps(mutated(VALID_RESULT, (field,), value))
    if result_or_refused(raw) is None:
        with pytest.raises(RecordError, match=f"field '{field}'"):
            ResultRecord.decode(raw)


def test_results_round_trip_as_stored_before() -> None:
    success = ResultRecord.success("sample.add", {"sum": 3})
    assert list(json.loads(success.encode())) == ["status", "task", "result", "date_done"]
    assert ResultRecord.decode(success.encode()) == success
    assert success.value == {"sum": 3}
    failure = ResultRecord.failure("sample.add", "OSError: disk full", "Traceback...")
    assert list(json.loads(failure.encode())) == ["status", "task", "error", "traceback",
                                                  "date_done"]
    assert ResultRecord.decode(failure.encode()) == failure
    assert failure.value == "OSError: disk full"
    with pytest.raises(ValueError):
        ResultRecord.success("sample.add", math.nan).encode()


# -- heartbeats ---------------------------------------------------------------------------


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(VALID_HEARTBEAT)), st.text(max_size=30)))
@example({"busy": "1" * 400})
@example({"last_seen": "nan"})
@example({"last_seen": "1e400"})
def test_any_heartbeat_fields_decode_or_are_refused(fields: dict[str, str]) -> None:
    try:
        info = WorkerInfo.decode("w1", {**VALID_HEARTBEAT, **fields})
    except RecordError as exc:
        assert str(exc).startswith("unreadable heartbeat of worker 'w1': field '"), exc
        return
    assert isinstance(info.busy, int) and isinstance(info.concurrency, int)
    assert math.isfinite(info.last_seen)


def test_a_heartbeat_round_trips_and_missing_fields_take_their_defaults() -> None:
    info = WorkerInfo("w1", "transcoder-0", ["transcode", "bulk"], 1, 4, 1767225600.25,
                      ("video.transcode t1",))
    fields = {k: str(v) for k, v in info.encode().items()}
    assert fields == VALID_HEARTBEAT
    assert WorkerInfo.decode("w1", fields) == info
    assert WorkerInfo.decode("w2", {}) == WorkerInfo("w2", "", [], 0, 1, 0.0)
    many = WorkerInfo("w1", "p", [], 9, 9, 1.0, tuple(f"t {i}" for i in range(9)))
    assert len(str(many.encode()["current"]).split(",")) == CURRENT_SHOWN


# -- Celery's side ------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [(0, 3, 6, 9), (0, 5), (0, 1, 2, 3, 4, 5, 6, 7, 8, 9)])
def test_a_priority_goes_to_the_list_kombu_puts_it_on(steps: tuple[int, ...]) -> None:
    kombu = SimpleNamespace(priority_steps=list(steps), sep=celery_wire.PRIORITY_SEPARATOR)
    kombu.priority = lambda n: Channel.priority(kombu, n)
    for priority in range(10):
        assert celery_wire.priority_list("films", priority, steps) \
            == Channel._q_for_pri(kombu, "films", priority), priority
    assert celery_wire.envelope_priority(CELERY) == 5
    assert celery_wire.envelope_priority('{"properties": {"priority": 1e400}}') == 0


def test_an_envelope_carries_the_task_as_a_celery_client_sends_it() -> None:
    message = Message(id="c1", task="video.sleep", queue="films", args=["a", 0],
                      kwargs={"k": 1}, retries=0, celery=True)
    text = celery_wire.envelope(message, "films")
    assert celery_wire.is_envelope(text)
    back = celery_wire.decode(text)
    assert (back.id, back.task, back.queue, back.args, back.kwargs, back.retries,
            back.celery) == ("c1", "video.sleep", "films", ["a", 0], {"k": 1}, 0, True)
    sent = json.loads(CELERY)
    made = json.loads(text)
    assert set(made) == set(sent)
    assert set(sent["headers"]) - set(made["headers"]) == {"replaced_task_nesting",
                                                           "stamped_headers", "stamps"}
    assert set(made["properties"]) == set(sent["properties"])
