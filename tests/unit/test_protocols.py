"""The celery and rq protocols' pure parts (layout, event decoding, worker bookkeeping,
reply parsing), the runtime celery/rq Deployments, the spec checks, and that the
protocol and runtime objects are the CRDs' enums, without servers."""

from __future__ import annotations

import base64
import copy
import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from taskfleet import celery_wire, cli
from taskfleet.cli import build_parser
from taskfleet.errors import ConfigError, MessageError
from taskfleet_operator.controller import resolve_queues
from taskfleet_operator.deployment import build_deployment, pods_of_pool
from taskfleet_operator.model import parse_task_queue, parse_worker_pool
from taskfleet_operator.policy import SpecError
from taskfleet_operator.protocols import PROTOCOLS, celery, rq
from taskfleet_operator.runtimes import RUNTIMES, own_runtime_of
from testenv.processes import ROOT
from testenv.skips import skip_for_opt_out


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def kombu_event(event: dict[str, Any]) -> str:
    """A worker event as kombu's fanout PUBLISHes it (the envelope a Celery 5.7 worker sent)."""
    return json.dumps({
        "body": base64.b64encode(json.dumps(event).encode()).decode(),
        "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {"hostname": event.get("hostname")},
        "properties": {"delivery_mode": 1, "priority": 0, "body_encoding": "base64",
                       "delivery_info": {"exchange": "celeryev",
                                         "routing_key": "worker.heartbeat"}}})


def queue_body(protocol: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "films"},
            "spec": {"redis": {"url": "redis://r:6379/0"}, "protocol": protocol, **spec}}


def pool_body(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"namespace": "ns", "name": "films", "uid": "u"},
            "spec": {"queues": ["films"], **spec}}


def test_celery_priority_lists_in_kombus_order() -> None:
    assert celery.priority_lists("films", (0, 3, 6, 9)) == [
        "films", "films\x06\x163", "films\x06\x166", "films\x06\x169"]
    assert celery.priority_lists("q", (5, 0)) == ["q", "q\x06\x165"]


def test_celery_event_decoding() -> None:
    event = {"hostname": "celery@p", "type": "worker-heartbeat", "active": 2, "freq": 2.0}
    assert celery.decode_event(kombu_event(event)) == event
    assert celery.decode_event("not json") is None
    assert celery.decode_event(json.dumps({"body": "%%%", "properties": {
        "body_encoding": "base64"}})) is None
    assert celery.decode_event(json.dumps({"no": "body"})) is None


def test_celery_workers_unknown_until_warm_then_forgotten_when_silent_or_offline() -> None:
    clock = Clock()
    events = celery.WorkerEvents(_NoRedis(), clock)  # type: ignore[arg-type]  # not started
    assert events.running_by_pod() is None, "not subscribed: unknown"
    events.subscribed(True)
    events.heard({"hostname": "celery@films-abc-1", "type": "worker-heartbeat", "active": 3,
                  "freq": 2.0})
    events.heard({"hostname": "celery@films-abc-2", "type": "worker-online", "freq": 2.0})
    events.heard({"hostname": "elsewhere", "type": "worker-heartbeat", "active": 1})
    events.heard({"type": "worker-heartbeat", "active": 1})
    assert events.running_by_pod() is None, "too early to know every worker"
    clock.now += celery.WARMUP_SECONDS
    assert events.running_by_pod() == {"films-abc-1": 3, "films-abc-2": 0}
    events.heard({"hostname": "celery@films-abc-2", "type": "worker-offline"})
    assert events.running_by_pod() == {"films-abc-1": 3}
    clock.now += 3 * 2.0 + 0.1
    assert events.running_by_pod() == {}, "silent for three heartbeats: gone"
    events.subscribed(False)
    assert events.running_by_pod() is None


class _NoRedis:
    """Only what WorkerEvents reads before its thread starts: the database number."""

    connection_pool = SimpleNamespace(connection_kwargs={"db": 3})


def test_celery_pods_of_a_pool_by_the_deployments_pod_names() -> None:
    running = {"films-7d9c8b6f5-x2k4q": 1, "films-hd-7d9c8b6f5-x2k4q": 2, "films": 4,
               "other-7d9c8b6f5-x2k4q": 8}
    assert pods_of_pool("films", running) == {"films-7d9c8b6f5-x2k4q": 1}
    assert pods_of_pool("films-hd", running) == {"films-hd-7d9c8b6f5-x2k4q": 2}
    assert celery.pod_of("celery@films-1") == "films-1"
    assert celery.pod_of("worker1@host") is None


def test_rq_reply_parsing() -> None:
    stats = rq.PROTOCOL.parse([4, 1, 2, 3, 5, "2026-01-01T00:00:00.000000Z", "1767225610.5"])
    assert (stats.ready, stats.in_flight, stats.delayed, stats.dead) == (4, 3, 3, 5)
    assert stats.oldest_age_seconds == pytest.approx(10.5)
    assert rq.PROTOCOL.parse([0, 0, 0, 0, 0, "", "1767225610.5"]).oldest_age_seconds == 0.0
    assert rq.PROTOCOL.parse([1, 0, 0, 0, 0, "yesterday", "1767225610.5"]).oldest_age_seconds == 0.0


def test_task_queue_protocols_parse_and_refuse_what_they_cannot_serve() -> None:
    tq = parse_task_queue(queue_body("celery", celery={"prioritySteps": [9, 0, 5]}))
    assert (tq.protocol, tq.priority_steps) == ("celery", (0, 5, 9))
    assert parse_task_queue(queue_body("rq")).protocol == "rq"
    with pytest.raises(SpecError, match=re.escape("must be one of native, celery, rq")):
        parse_task_queue(queue_body("sqs"))
    with pytest.raises(SpecError, match=re.escape("spec.celery.prioritySteps")):
        parse_task_queue(queue_body("celery", celery={"prioritySteps": ["high"]}))
    with pytest.raises(SpecError, match=re.escape("spec.schedules: a rq queue")):
        parse_task_queue(queue_body("rq", schedules=[{"name": "a", "cron": "@daily",
                                                      "task": "t"}]))
    with pytest.raises(SpecError, match=re.escape("spec.protocol: a celery queue lives on one")):
        parse_task_queue(queue_body("celery", redis={"url": "redis+cluster://r:7000"}))


def test_worker_pool_runtimes_parse_and_refuse_what_they_cannot_run() -> None:
    assert parse_worker_pool(pool_body(runtime="rq")).spec["runtime"] == "rq"
    with pytest.raises(SpecError, match=re.escape("must be one of taskfleet, celery, rq")):
        parse_worker_pool(pool_body(runtime="dramatiq", app="a:b"))
    with pytest.raises(SpecError, match=re.escape("spec.app must be an import path")):
        parse_worker_pool(pool_body(runtime="celery"))
    with pytest.raises(SpecError, match=re.escape("an rq worker runs one job at a time")):
        parse_worker_pool(pool_body(runtime="rq", concurrency=4))


def test_runtime_and_protocol_must_match_and_the_password_must_be_in_the_url() -> None:
    pool = parse_worker_pool(pool_body(runtime="celery", app="video.celery:app"))
    native = parse_task_queue(queue_body("native"))
    _, problem = resolve_queues(pool, {native.key: native})
    assert problem is not None and problem[1].startswith(
        "spec.runtime celery cannot serve TaskQueue 'films' (protocol native)")
    secret = parse_task_queue(queue_body("celery", redis={
        "url": "redis://r:6379/0", "passwordFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}))
    _, problem = resolve_queues(pool, {secret.key: secret})
    assert problem is not None and "take the password and TLS in the URL" in problem[1]
    fine = parse_task_queue(queue_body("celery"))
    assert resolve_queues(pool, {fine.key: fine}) == ([fine], None)


def test_celery_deployment_runs_celery_worker_named_after_its_pod() -> None:
    pool = parse_worker_pool(pool_body(runtime="celery", app="video.celery:app", concurrency=4,
                                       pool="threads", terminationGracePeriodSeconds=300))
    tq = parse_task_queue(queue_body("celery"))
    spec = build_deployment(pool, [tq], 2)["spec"]["template"]["spec"]
    [c] = spec["containers"]
    assert [*c["command"], *c["args"]] == [
        "celery", "-A", "video.celery:app", "worker", "-Q", "films", "--concurrency", "4",
        "--pool", "threads", "--hostname", "celery@$(POD_NAME)", "--loglevel", "INFO"]
    env = {e["name"]: e for e in c["env"]}
    assert env["CELERY_BROKER_URL"]["value"] == "redis://r:6379/0"
    assert "POD_NAME" in env
    assert c["livenessProbe"]["exec"]["command"][:2] == ["sh", "-c"]
    assert "inspect ping" in c["livenessProbe"]["exec"]["command"][2]
    assert spec["terminationGracePeriodSeconds"] == 300


def test_rq_deployment_runs_rq_worker_named_after_its_pod() -> None:
    pool = parse_worker_pool(pool_body(runtime="rq"))
    tq = parse_task_queue(queue_body("rq"))
    [c] = build_deployment(pool, [tq], 1)["spec"]["template"]["spec"]["containers"]
    assert [*c["command"], *c["args"]] == ["rq", "worker", "--name", "$(POD_NAME)", "films"]
    assert {e["name"] for e in c["env"]} >= {"RQ_REDIS_URL", "POD_NAME"}
    assert "rq:worker:" in c["livenessProbe"]["exec"]["command"][2]


def test_a_taskfleet_pool_serving_a_celery_queue_takes_celery_messages_there() -> None:
    pool = parse_worker_pool(pool_body(app="video.tasks:app", queues=["films", "native"]))
    films = parse_task_queue(queue_body("celery"))
    native = parse_task_queue({"metadata": {"namespace": "ns", "name": "native"},
                               "spec": {"redis": {"url": "redis://r:6379/0"}}})
    queues, problem = resolve_queues(pool, {films.key: films, native.key: native})
    assert problem is None
    [c] = build_deployment(pool, queues, 1)["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["taskfleet"]
    assert c["args"][c["args"].index("--queues") + 1] == "films,native"
    assert c["args"][-2:] == ["--celery-queues", "films"]


VALID_CELERY = {
    "body": base64.b64encode(json.dumps([["v1", 720], {}, {"callbacks": None, "errbacks": None,
                                                          "chain": None, "chord": None}])
                             .encode()).decode(),
    "content-encoding": "utf-8", "content-type": "application/json",
    "headers": {"lang": "py", "task": "video.transcode", "id": "6844114e", "eta": None,
                "expires": None, "retries": 0},
    "properties": {"delivery_info": {"exchange": "", "routing_key": "films"}, "priority": 0,
                   "body_encoding": "base64"}}

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8)
                     | st.floats(allow_nan=False), lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def test_a_valid_celery_message_decodes() -> None:
    message = celery_wire.decode(json.dumps(VALID_CELERY))
    assert (message.id, message.task, message.queue, message.args, message.celery) == (
        "6844114e", "video.transcode", "films", ["v1", 720], True)
    assert celery_wire.is_envelope(json.dumps(VALID_CELERY))


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from([("body",), ("content-type",), ("headers",), ("properties",),
                              ("headers", "task"), ("headers", "id"), ("headers", "retries"),
                              ("headers", "eta"), ("properties", "body_encoding"),
                              ("properties", "delivery_info")]),
       value=_json, remove=st.booleans())
def test_celery_messages_with_any_field_wrong_decode_or_raise_message_error(
        field: tuple[str, ...], value: Any, remove: bool) -> None:
    envelope = copy.deepcopy(VALID_CELERY)
    target: Any = envelope
    for key in field[:-1]:
        target = target[key]
    if remove:
        target.pop(field[-1], None)
    else:
        target[field[-1]] = value
    try:
        message = celery_wire.decode(json.dumps(envelope))
    except MessageError:
        return
    assert isinstance(message.args, list) and isinstance(message.kwargs, dict)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_decodes_or_raises_message_error(text: str) -> None:
    try:
        message = celery_wire.decode('{"body"' + text)
    except MessageError:
        return
    assert message.celery and message.id and message.task


def test_celery_takes_the_broker_url_from_the_environment_before_the_apps_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Why a runtime celery pool sets CELERY_BROKER_URL: it wins over what the app says."""
    skip_for_opt_out("TASKFLEET_DEPS", "Celery (a benchmark peer)")
    from celery import Celery

    monkeypatch.setenv("CELERY_BROKER_URL", "redis://from-the-pool:6379/0")
    app = Celery("users_app", broker="redis://hard-coded:6379/0")
    assert app.conf.broker_url == "redis://from-the-pool:6379/0"


def _crd_enum(crd: str, field: str) -> list[str]:
    schema = yaml.safe_load((ROOT / "crds" / crd).read_text())
    spec = schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    values: list[str] = spec["properties"][field]["enum"]
    return values


def test_one_protocol_object_per_crd_protocol_and_one_runtime_object_per_crd_runtime() -> None:
    assert list(PROTOCOLS) == _crd_enum("taskqueues.taskfleet.dev.yaml", "protocol")
    assert list(RUNTIMES) == _crd_enum("workerpools.taskfleet.dev.yaml", "runtime")
    for name, protocol in PROTOCOLS.items():
        assert protocol.name == name
        assert own_runtime_of(name).serves[0] == name, "a runtime of its own tells busy pods"
    for name, runtime in RUNTIMES.items():
        assert runtime.name == name
        assert set(runtime.serves) <= set(PROTOCOLS)


def test_only_a_protocol_with_wake_ups_lets_its_queues_rest() -> None:
    """Celery and RQ clients publish no wake-up: their queues are read every poll."""
    assert [n for n, p in PROTOCOLS.items() if p.wakes_on_enqueue] == ["native"]
    tq = parse_task_queue(queue_body("celery"))
    assert tq.queue_protocol is PROTOCOLS["celery"]
    pool = parse_worker_pool(pool_body(runtime="celery", app="video.celery:app"))
    assert pool.runtime is RUNTIMES["celery"]
    assert parse_worker_pool(pool_body(app="video.tasks:app")).runtime is RUNTIMES["taskfleet"]


def test_priority_steps_option_round_trip_and_mistakes_named() -> None:
    value = celery_wire.priority_steps_option("films", (9, 0, 5))
    assert value == "films=0,5,9"
    args = build_parser().parse_args(["worker", "--app", "a:b", "-Q", "films,clips",
                                      "--celery-queues", "films",
                                      "--celery-priority-steps", value])
    assert args.celery_priority_steps == [("films", (0, 5, 9))]
    for bad in ("films", "=0,3", "films=", "films=a", "films=0,256", "films=-1"):
        with pytest.raises(ValueError, match="must be QUEUE=STEPS"):
            celery_wire.parse_priority_steps_option(bad)
        with pytest.raises(SystemExit):
            build_parser().parse_args(["worker", "--app", "a:b", "--celery-priority-steps",
                                       bad])


def test_priority_steps_of_a_queue_not_taking_celery_messages_are_refused() -> None:
    args = build_parser().parse_args(["worker", "--app", "a:b", "-Q", "films,clips",
                                      "--celery-queues", "films",
                                      "--celery-priority-steps", "clips=0,5"])
    with pytest.raises(ConfigError, match="--celery-priority-steps clips: list it in "
                                          "--celery-queues too"):
        cli._worker(args)
