"""Bad input, tried systematically: every parser of outside data either returns a value of
the declared shape or raises its module's own error naming the field, never another
exception.

The parsers: task messages as a worker takes them from Redis (``Message.decode``);
WorkerPool and TaskQueue specs as the operator reads them (``parse_worker_pool``,
``parse_task_queue``, ``parse_policy``); schedules and cron expressions from a TaskQueue
or a ``taskfleet beat`` file. Two kinds of input for each: anything at all, and a valid
value with one field replaced by anything or removed, which reaches the deeper checks.

Property tests with hypothesis rather than a coverage-guided fuzzer such as atheris:
hypothesis needs no native extension built for this interpreter, runs inside the normal
pytest run in a few seconds, and shrinks a failure to the smallest input.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from taskfleet.cron import Cron, CronError, next_tick, parse, zone
from taskfleet.errors import MessageError
from taskfleet.message import Message
from taskfleet.schedule import Schedule, ScheduleError
from taskfleet_operator.deployment import build_deployment
from taskfleet_operator.model import TaskQueue, WorkerPool, parse_task_queue, parse_worker_pool
from taskfleet_operator.policy import SpecError, parse_policy

# No deadline: unit tests assert nothing about time. Modest example counts keep the file
# to a few seconds; the mutation strategies below aim the examples at the checks.
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

json_scalars = (st.none() | st.booleans() | st.integers()
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
"""What JSON (a Redis message, a Kubernetes object) can carry."""

yaml_values = st.recursive(
    json_scalars | st.floats() | st.dates() | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12)
"""What yaml.safe_load can give a ``taskfleet beat`` file: also NaN, infinities, dates
and bytes."""

REMOVE = object()
"""A mutation that deletes the field instead of replacing it."""

Path = tuple[str | int, ...]


def paths(value: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every field and list item under ``value``, the containers included."""
    items: Any = (value.items() if isinstance(value, dict)
                  else enumerate(value) if isinstance(value, list) else ())
    for key, child in items:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def mutated(base: dict[str, Any], path: Path, new: Any) -> dict[str, Any]:
    """``base`` with the field at ``path`` replaced by ``new`` (or removed: REMOVE)."""
    out = copy.deepcopy(base)
    parent: Any = out
    for key in path[:-1]:
        parent = parent[key]
    if new is REMOVE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = new
    return out


def named(path: Path) -> list[str]:
    """The field names along a path (list indices are no names)."""
    return [k for k in path if isinstance(k, str)]


# -- task messages ------------------------------------------------------------------------

VALID_MESSAGE: dict[str, Any] = {
    "v": 1, "id": "0190f5c2a1b27c3d8e9f0a1b2c3d4e5f", "task": "video.transcode",
    "queue": "transcode", "args": ["v1", 720], "kwargs": {"codec": "h264"}, "priority": 5,
    "retries": 1, "enqueued_at": 1767225600.25}


def decoded_or_refused(raw: str | bytes) -> Message | None:
    """The decoded message, or None when it was refused with a MessageError that says why."""
    try:
        message = Message.decode(raw)
    except MessageError as exc:
        assert str(exc).startswith("message"), exc
        return None
    # What the worker relies on after decoding: the declared types, nothing else.
    assert all(isinstance(v, str) and v for v in (message.id, message.task, message.queue))
    assert isinstance(message.args, list)
    assert isinstance(message.kwargs, dict)
    for number in (message.priority, message.retries):
        assert isinstance(number, int) and not isinstance(number, bool)
    assert isinstance(message.enqueued_at, float) and math.isfinite(message.enqueued_at)
    return message


@FUZZ
@given(st.text() | st.binary())
@example("[" * 5000 + "]" * 5000)  # nesting deeper than the JSON parser may recurse
@example('{"id": "a", "task": "t", "queue": "q", "enqueued_at": 1' + "0" * 400 + "}")
@example(b"\xff\xfe{")
def test_any_text_decodes_or_is_refused(raw: str | bytes) -> None:
    decoded_or_refused(raw)


@FUZZ
@given(json_values)
def test_any_json_value_decodes_or_is_refused(value: Any) -> None:
    decoded_or_refused(json.dumps(value))


@FUZZ
@given(st.sampled_from(sorted(VALID_MESSAGE)), json_values | st.just(REMOVE))
@example("enqueued_at", 10**400)
@example("enqueued_at", "soon")
@example("priority", True)
@example("retries", 2.5)
def test_a_wrong_message_field_is_named(field: str, value: Any) -> None:
    raw = json.dumps(mutated(VALID_MESSAGE, (field,), value))
    try:
        Message.decode(raw)
    except MessageError as exc:
        assert f"'{field}'" in str(exc), exc
        return
    assert decoded_or_refused(raw) is not None


# -- WorkerPool and TaskQueue specs -------------------------------------------------------

META = {"name": "transcoder", "namespace": "video", "uid": "u-1", "generation": 3}

VALID_POOL_SPEC: dict[str, Any] = {
    "queues": ["transcode", "default"], "app": "video.tasks:app", "image": "video:1.0",
    "imagePullPolicy": "IfNotPresent", "concurrency": 2, "pool": "processes",
    "resources": {"requests": {"cpu": "2"}}, "env": [{"name": "A", "value": "1"}],
    "envFrom": [{"secretRef": {"name": "s"}}], "nodeSelector": {"pool": "transcode"},
    "tolerations": [{"key": "dedicated", "operator": "Exists"}], "affinity": {},
    "serviceAccountName": "worker", "code": {"configMap": "tasks"},
    "podTemplate": {"metadata": {"labels": {"team": "video"}, "annotations": {"a": "b"}},
                    "spec": {"priorityClassName": "batch"}},
    "terminationGracePeriodSeconds": 120, "replicas": 1,
    "metrics": {"enabled": True, "port": 9200},
    "autoscaling": {
        "enabled": True, "minReplicas": 0, "maxReplicas": 8, "targetPerReplica": 2,
        "targetLatencySeconds": 60, "activationThreshold": 0, "scaleToZeroAfterSeconds": 300,
        "pollSeconds": 2,
        "scaleUp": {"stabilizationSeconds": 0, "maxStepPercent": 100, "maxStepReplicas": 4,
                    "periodSeconds": 2},
        "scaleDown": {"stabilizationSeconds": 60, "maxStepPercent": 50, "maxStepReplicas": 1,
                      "periodSeconds": 2},
        "onMetricsError": {"fallbackReplicas": 2}}}

VALID_QUEUE_SPEC: dict[str, Any] = {
    "redis": {"url": "redis://redis:6379/0",
              "passwordFrom": {"secretKeyRef": {"name": "redis", "key": "password"}},
              "tls": {"enabled": False, "insecureSkipVerify": False}},
    "queueName": "transcode", "protocol": "native",
    "schedules": [{"name": "hourly", "cron": "0 * * * *", "timezone": "Europe/Paris",
                   "task": "report.hourly", "args": [1], "kwargs": {"fmt": "pdf"},
                   "startingDeadlineSeconds": 600, "suspend": False}]}

QUEUE = TaskQueue(namespace="video", name="transcode", uid="u-2", generation=1,
                  queue_name="transcode", redis=parse_task_queue(
                      {"metadata": META, "spec": VALID_QUEUE_SPEC}).redis)

spec_keys = st.sampled_from(sorted({*VALID_POOL_SPEC, *VALID_QUEUE_SPEC})) | st.text(max_size=8)
any_specs = json_values | st.dictionaries(spec_keys, json_values, max_size=8)


def refused_spec(exc: SpecError, path: Path = ()) -> None:
    """A refusal names the field by its path from spec, and names the field that was
    changed (or the object holding it)."""
    text = str(exc)
    assert text.startswith("spec") or "spec." in text, text
    assert not path or any(k in text for k in named(path)), (path, text)


def pool_or_refused(spec: Any, path: Path = ()) -> WorkerPool | None:
    try:
        pool = parse_worker_pool({"metadata": dict(META), "spec": spec})
    except SpecError as exc:
        refused_spec(exc, path)
        return None
    # A pool the parser accepts can be served: its Deployment can be built.
    deployment = build_deployment(pool, [QUEUE], pool.policy.manual_replicas)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["name"] == "worker"
    return pool


def queue_or_refused(spec: Any, path: Path = ()) -> TaskQueue | None:
    try:
        tq = parse_task_queue({"metadata": dict(META), "spec": spec})
    except SpecError as exc:
        refused_spec(exc, path)
        return None
    assert isinstance(tq.queue_name, str) and tq.queue_name
    assert isinstance(tq.redis.url, str) or tq.redis.url_from is not None
    for raw in tq.schedules:  # what the operator's schedule runner then does with each
        schedule_or_refused(raw, "spec.schedules", queue=tq.queue_name)
    return tq


@FUZZ
@given(any_specs)
def test_any_worker_pool_spec_parses_or_is_refused(spec: Any) -> None:
    pool_or_refused(spec)


@FUZZ
@given(st.sampled_from(list(paths(VALID_POOL_SPEC))), json_values | st.just(REMOVE))
@example(("terminationGracePeriodSeconds",), "600")
@example(("podTemplate",), ["spec"])
@example(("podTemplate", "metadata", "labels"), "team=video")
@example(("code",), {})
@example(("env",), 5)
def test_a_wrong_worker_pool_field_is_named(path: Path, value: Any) -> None:
    pool_or_refused(mutated(VALID_POOL_SPEC, path, value), path)


@FUZZ
@given(any_specs)
def test_any_policy_parses_or_is_refused(spec: Any) -> None:
    if not isinstance(spec, dict):
        return  # parse_policy takes the spec parse_worker_pool has checked is an object
    try:
        parse_policy(spec)
    except SpecError as exc:
        refused_spec(exc)


@FUZZ
@given(any_specs)
def test_any_task_queue_spec_parses_or_is_refused(spec: Any) -> None:
    queue_or_refused(spec)


@FUZZ
@given(st.sampled_from(list(paths(VALID_QUEUE_SPEC))), json_values | st.just(REMOVE))
@example(("schedules",), "0 * * * *")
@example(("schedules", 0), "hourly")
@example(("redis", "tls"), True)
@example(("redis", "url"), 6379)
def test_a_wrong_task_queue_field_is_named(path: Path, value: Any) -> None:
    queue_or_refused(mutated(VALID_QUEUE_SPEC, path, value), path)


# -- schedules and cron -------------------------------------------------------------------

VALID_SCHEDULE: dict[str, Any] = VALID_QUEUE_SPEC["schedules"][0] | {"queue": "reports"}
AFTER = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # the night Europe/Paris springs forward


def schedule_or_refused(d: Any, where: str = "schedules", path: Path = (),
                        queue: str | None = None) -> Schedule | None:
    try:
        schedule = Schedule.from_dict(d, queue=queue, where=where)
    except ScheduleError as exc:
        assert str(exc).startswith(where), exc
        assert not path or any(k in str(exc) for k in named(path)), (path, exc)
        return None
    # A schedule that parses can be run: it has a next tick.
    assert next_tick(schedule.cron, schedule.timezone, AFTER) > AFTER
    assert math.isfinite(schedule.starting_deadline_seconds)
    return schedule


@FUZZ
@given(yaml_values | st.dictionaries(st.sampled_from(sorted(VALID_SCHEDULE)) | st.text(),
                                     yaml_values, max_size=8))
def test_any_schedule_parses_or_is_refused(d: Any) -> None:
    schedule_or_refused(d)


@FUZZ
@given(st.sampled_from(list(paths(VALID_SCHEDULE))), yaml_values | st.just(REMOVE))
@example(("cron",), "0 0 30 2 *")
@example(("suspend",), "false")
@example(("timezone",), date(2026, 1, 1))
@example(("startingDeadlineSeconds",), math.nan)
def test_a_wrong_schedule_field_is_named(path: Path, value: Any) -> None:
    schedule_or_refused(mutated(VALID_SCHEDULE, path, value), path=path)


cron_fields = st.one_of(
    st.text(alphabet="0123456789*/-,", min_size=1, max_size=7),
    st.sampled_from(["*", "jan", "feb-dec", "mon-fri", "sun,sat", "*/0", "L", "?", "29",
                     "30", "31", "2", "4,6,9,11"]))
cron_like = st.lists(cron_fields, min_size=1, max_size=6).map(" ".join)


def cron_or_refused(expression: str) -> Cron | None:
    try:
        cron = parse(expression)
    except CronError as exc:
        assert str(exc).startswith("cron"), exc
        return None
    return cron


@FUZZ
@given(st.text() | cron_like)
@example("0 0 31 4,6,9,11 *")
@example("0 0 30 feb *")
def test_any_cron_parses_or_is_refused(expression: str) -> None:
    cron_or_refused(expression)


@FUZZ
@given(cron_like, st.sampled_from(["UTC", "Europe/Paris", "America/St_Johns",
                                   "Australia/Lord_Howe", "Pacific/Kiritimati"]))
def test_a_cron_that_parses_has_a_next_tick(expression: str, tz: str) -> None:
    cron = cron_or_refused(expression)
    if cron is not None:
        assert next_tick(cron, zone(tz), AFTER) > AFTER


@FUZZ
@given(st.text())
@example("../../etc/passwd")
@example("America")
@example("/etc/localtime")
def test_any_time_zone_name_resolves_or_is_refused(name: str) -> None:
    try:
        zone(name)
    except CronError as exc:
        assert "time zone" in str(exc), exc
