"""Every WorkerPool and TaskQueue setting that concerns workers reaches them: a case per
CRD field (and worker runtime where it differs), each failing if the Deployment builder
(or, for deadLetterLimit, the queue settings writer) drops it; and a check that every
field of the CRDs is a case here or one the operator alone acts on."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from taskfleet.celery_wire import DEFAULT_PRIORITY_STEPS
from taskfleet.cli import build_parser
from taskfleet.connection import PASSWORD_ENV, SENTINEL_PASSWORD_ENV, TLS_ENV
from taskfleet.keys import DEAD_LETTER_LIMIT, QueueKeys
from taskfleet_operator.deployment import build_deployment
from taskfleet_operator.model import (
    DEFAULT_GRACE_SECONDS,
    METRICS_PORT,
    TaskQueue,
    parse_task_queue,
    parse_worker_pool,
)
from taskfleet_operator.queue_settings import QueueSettingsWriter
from taskfleet_operator.runtimes import RUNTIMES

CRDS = Path(__file__).resolve().parents[2] / "crds"

OPERATOR_ONLY = {
    "WorkerPool": {"replicas", "autoscaling"},
    "TaskQueue": {"schedules"},
}
"""Fields the operator acts on itself: the replica count, and the cron ticks it sends."""

Deployment = dict[str, Any]


@dataclass(frozen=True)
class Case:
    kind: str
    """WorkerPool or TaskQueue."""
    field: str
    """The spec field, dotted, as the CRD names it."""
    pool: dict[str, Any] = field(default_factory=dict)
    """Merged into the pool's spec."""
    queue: dict[str, Any] = field(default_factory=dict)
    """Merged into the queue's spec."""
    reached: Callable[[Deployment], bool] = lambda d: False
    """True when the Deployment carries the setting."""
    runtime: str = "taskfleet"

    def __str__(self) -> str:
        return f"{self.kind}.{self.field}[{self.runtime}]"


def container(d: Deployment) -> dict[str, Any]:
    found: dict[str, Any] = d["spec"]["template"]["spec"]["containers"][0]
    return found


def pod(d: Deployment) -> dict[str, Any]:
    found: dict[str, Any] = d["spec"]["template"]["spec"]
    return found


def argv(d: Deployment) -> list[str]:
    return [*container(d)["command"], *container(d)["args"]]


def option(d: Deployment, name: str) -> str | None:
    args = argv(d)
    return args[args.index(name) + 1] if name in args else None


def env(d: Deployment) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(d)["env"]}


def secret_env(d: Deployment, name: str, secret: str) -> bool:
    ref = env(d).get(name, {}).get("valueFrom", {}).get("secretKeyRef", {})
    return bool(ref.get("name") == secret and ref.get("key") == "k")


def probe(d: Deployment) -> dict[str, Any]:
    found: dict[str, Any] = container(d)["livenessProbe"]
    return found


SECRET = {"secretKeyRef": {"name": "s", "key": "k"}}
BROKER_URL_ENV = {name: runtime.broker_url_env for name, runtime in RUNTIMES.items()}
PROTOCOL_OF = {"taskfleet": "native", "celery": "celery", "rq": "rq"}


def each_runtime(kind: str, name: str, runtimes: Iterable[str], reached: Callable[
        [str], Callable[[Deployment], bool]], **patch: Any) -> list[Case]:
    return [Case(kind, name, reached=reached(r), runtime=r, **patch) for r in runtimes]


CASES: list[Case] = [
    # WorkerPool
    *each_runtime("WorkerPool", "queues", ["taskfleet", "celery", "rq"],
                  lambda r: lambda d: (option(d, "--queues") or option(d, "-Q")
                                       or ",".join(argv(d)[4:])) == "films,clips",
                  pool={"queues": ["films", "clips"]}),
    Case("WorkerPool", "app", pool={"app": "studio.jobs:app"},
         reached=lambda d: option(d, "--app") == "studio.jobs:app"),
    Case("WorkerPool", "app", pool={"app": "studio.jobs:app"}, runtime="celery",
         reached=lambda d: option(d, "-A") == "studio.jobs:app"
         and "studio.jobs:app" in probe(d)["exec"]["command"]),
    Case("WorkerPool", "image", pool={"image": "studio/worker:2"},
         reached=lambda d: container(d)["image"] == "studio/worker:2"),
    Case("WorkerPool", "imagePullPolicy", pool={"imagePullPolicy": "Always"},
         reached=lambda d: container(d).get("imagePullPolicy") == "Always"),
    *each_runtime("WorkerPool", "concurrency", ["taskfleet", "celery"],
                  lambda r: lambda d: option(d, "--concurrency") == "7",
                  pool={"concurrency": 7}),
    Case("WorkerPool", "pool", pool={"pool": "threads"},
         reached=lambda d: option(d, "--pool") == "threads"),
    Case("WorkerPool", "pool", pool={"pool": "threads"}, runtime="celery",
         reached=lambda d: option(d, "--pool") == "threads"),
    *each_runtime("WorkerPool", "runtime", ["celery", "rq"],
                  lambda r: lambda d: argv(d)[0] == r),  # taskfleet without the setting
    Case("WorkerPool", "resources", pool={"resources": {"limits": {"cpu": "3"}}},
         reached=lambda d: container(d).get("resources") == {"limits": {"cpu": "3"}}),
    Case("WorkerPool", "env", pool={"env": [{"name": "STUDIO", "value": "1"}]},
         reached=lambda d: env(d).get("STUDIO") == {"name": "STUDIO", "value": "1"}),
    Case("WorkerPool", "envFrom", pool={"envFrom": [{"configMapRef": {"name": "c"}}]},
         reached=lambda d: container(d).get("envFrom") == [{"configMapRef": {"name": "c"}}]),
    Case("WorkerPool", "nodeSelector", pool={"nodeSelector": {"gpu": "yes"}},
         reached=lambda d: pod(d).get("nodeSelector") == {"gpu": "yes"}),
    Case("WorkerPool", "tolerations", pool={"tolerations": [{"key": "gpu"}]},
         reached=lambda d: pod(d).get("tolerations") == [{"key": "gpu"}]),
    Case("WorkerPool", "affinity", pool={"affinity": {"nodeAffinity": {}}},
         reached=lambda d: pod(d).get("affinity") == {"nodeAffinity": {}}),
    Case("WorkerPool", "serviceAccountName", pool={"serviceAccountName": "studio"},
         reached=lambda d: pod(d).get("serviceAccountName") == "studio"),
    Case("WorkerPool", "automountServiceAccountToken",
         pool={"automountServiceAccountToken": True},
         reached=lambda d: pod(d)["automountServiceAccountToken"] is True),
    Case("WorkerPool", "enableServiceLinks", pool={"enableServiceLinks": True},
         reached=lambda d: pod(d)["enableServiceLinks"] is True),
    Case("WorkerPool", "code.configMap", pool={"code": {"configMap": "scripts"}},
         reached=lambda d: {"name": "code", "configMap": {"name": "scripts"}}
         in pod(d)["volumes"] and "PYTHONPATH" in env(d)),
    Case("WorkerPool", "podTemplate.metadata.labels",
         pool={"podTemplate": {"metadata": {"labels": {"team": "studio"}}}},
         reached=lambda d: d["spec"]["template"]["metadata"]["labels"].get("team")
         == "studio"),
    Case("WorkerPool", "podTemplate.metadata.annotations",
         pool={"podTemplate": {"metadata": {"annotations": {"note": "x"}}}},
         reached=lambda d: d["spec"]["template"]["metadata"]["annotations"].get("note")
         == "x"),
    Case("WorkerPool", "podTemplate.spec",
         pool={"podTemplate": {"spec": {"priorityClassName": "high"}}},
         reached=lambda d: pod(d).get("priorityClassName") == "high"),
    Case("WorkerPool", "terminationGracePeriodSeconds",
         pool={"terminationGracePeriodSeconds": 120},
         reached=lambda d: pod(d)["terminationGracePeriodSeconds"] == 120
         and option(d, "--drain-timeout") == "115"),
    *each_runtime("WorkerPool", "terminationGracePeriodSeconds", ["celery", "rq"],
                  lambda r: lambda d: pod(d)["terminationGracePeriodSeconds"] == 120,
                  pool={"terminationGracePeriodSeconds": 120}),
    Case("WorkerPool", "healthCheck.maxAgeSeconds", pool={"healthCheck": {"maxAgeSeconds": 90}},
         reached=lambda d: probe(d)["exec"]["command"][-2:] == ["--max-age", "90"]),
    *[case for key, value in (("initialDelaySeconds", 7), ("periodSeconds", 11),
                              ("failureThreshold", 5))
      for case in each_runtime("WorkerPool", f"healthCheck.{key}",
                               ["taskfleet", "celery", "rq"],
                               lambda r, key=key, value=value: lambda d: probe(d)[key] == value,
                               pool={"healthCheck": {key: value}})],
    Case("WorkerPool", "metrics.enabled", pool={"metrics": {"enabled": True}},
         reached=lambda d: option(d, "--metrics-port") == str(METRICS_PORT)
         and container(d)["ports"][0]["containerPort"] == METRICS_PORT),
    Case("WorkerPool", "metrics.port", pool={"metrics": {"enabled": True, "port": 9300}},
         reached=lambda d: option(d, "--metrics-port") == "9300"
         and container(d)["ports"][0]["containerPort"] == 9300),
    # TaskQueue
    *each_runtime("TaskQueue", "redis.url", ["taskfleet", "celery", "rq"],
                  lambda r: lambda d: env(d)[BROKER_URL_ENV[r]].get("value")
                  == "redis://studio:6379/2",
                  queue={"redis": {"url": "redis://studio:6379/2"}}),
    *each_runtime("TaskQueue", "redis.urlFrom", ["taskfleet", "celery", "rq"],
                  lambda r: lambda d: secret_env(d, BROKER_URL_ENV[r], "s"),
                  queue={"redis": {"urlFrom": SECRET}}),
    Case("TaskQueue", "redis.passwordFrom",
         queue={"redis": {"url": "redis://r:6379/0", "passwordFrom": SECRET}},
         reached=lambda d: secret_env(d, PASSWORD_ENV, "s")),
    Case("TaskQueue", "redis.sentinelPasswordFrom",
         queue={"redis": {"url": "redis+sentinel://s1:26379/main",
                          "sentinelPasswordFrom": SECRET}},
         reached=lambda d: secret_env(d, SENTINEL_PASSWORD_ENV, "s")),
    Case("TaskQueue", "redis.tls.enabled",
         queue={"redis": {"url": "redis://r:6379/0", "tls": {"enabled": True}}},
         reached=lambda d: env(d).get(TLS_ENV, {}).get("value") == "true"),
    Case("TaskQueue", "redis.tls.insecureSkipVerify",
         queue={"redis": {"url": "redis://r:6379/0", "tls": {"insecureSkipVerify": True}}},
         reached=lambda d: env(d).get(TLS_ENV, {}).get("value") == "insecure"),
    *each_runtime("TaskQueue", "queueName", ["taskfleet", "celery", "rq"],
                  lambda r: lambda d: "studio-films" in (
                      option(d, "--queues") or option(d, "-Q") or argv(d)[-1]),
                  queue={"queueName": "studio-films"}),
    Case("TaskQueue", "protocol", queue={"protocol": "celery"},
         reached=lambda d: option(d, "--celery-queues") == "films"),
    Case("TaskQueue", "celery.prioritySteps",
         queue={"protocol": "celery", "celery": {"prioritySteps": [0, 5, 9]}},
         reached=lambda d: option(d, "--celery-priority-steps") == "films=0,5,9"),
]


def spec_fields(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """The dotted names of a spec's settings: an object's fields, down to the leaves (a
    Secret reference, a list and an open object are one setting each)."""
    out: set[str] = set()
    for name, sub in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        nested = sub.get("properties")
        if nested and set(nested) != {"secretKeyRef"}:
            out |= spec_fields(sub, f"{path}.")
        else:
            out.add(path)
    return out


def crd_spec_fields(kind: str) -> set[str]:
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            return spec_fields(schema["properties"]["spec"])
    raise AssertionError(f"no CRD of kind {kind}")


@pytest.mark.parametrize("kind", ["WorkerPool", "TaskQueue"])
def test_every_crd_field_has_a_case_or_is_the_operators_own(kind: str) -> None:
    covered = {c.field for c in CASES if c.kind == kind} | {"deadLetterLimit"}
    fields = crd_spec_fields(kind)
    missing = {f for f in fields - covered
               if not any(f == own or f.startswith(f"{own}.") for own in OPERATOR_ONLY[kind])}
    assert not missing, f"{kind} fields that no test follows to the workers: {missing}"


def build(case: Case, with_setting: bool) -> Deployment:
    runtime = case.runtime if with_setting or case.field != "runtime" else "taskfleet"
    pool_spec: dict[str, Any] = {"queues": ["films"], "app": "video.tasks:app",
                                 "runtime": runtime}
    queue_spec: dict[str, Any] = {"redis": {"url": "redis://r:6379/0"},
                                  "protocol": PROTOCOL_OF[runtime]}
    if with_setting:
        pool_spec.update(case.pool)
        queue_spec.update(case.queue)
    pool = parse_worker_pool({"metadata": {"namespace": "ns", "name": "films", "uid": "u"},
                              "spec": pool_spec})
    queues = [parse_task_queue({"metadata": {"namespace": "ns", "name": name},
                                "spec": queue_spec}) for name in pool.queues]
    return build_deployment(pool, queues, 1)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_setting_reaches_the_workers(case: Case) -> None:
    assert not case.reached(build(case, with_setting=False)), "the check proves nothing"
    deployment = build(case, with_setting=True)
    assert case.reached(deployment), f"{case} is not in {container(deployment)}"
    if case.runtime == "taskfleet":  # and the worker takes what it is given
        build_parser().parse_args(argv(deployment)[1:])


def test_the_worker_reads_the_priority_steps_it_is_given() -> None:
    deployment = build(next(c for c in CASES if c.field == "celery.prioritySteps"), True)
    args = build_parser().parse_args(argv(deployment)[1:])
    assert args.celery_queues == ["films"]
    assert args.celery_priority_steps == [("films", (0, 5, 9))]


def test_default_priority_steps_are_left_to_the_workers_own_default() -> None:
    case = Case("TaskQueue", "protocol", queue={
        "protocol": "celery", "celery": {"prioritySteps": list(DEFAULT_PRIORITY_STEPS)}})
    assert "--celery-priority-steps" not in argv(build(case, with_setting=True))


def test_the_grace_period_default_is_the_crds() -> None:
    schema = yaml.safe_load((CRDS / "workerpools.taskfleet.dev.yaml").read_text())
    spec = schema["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["terminationGracePeriodSeconds"]["default"] \
        == DEFAULT_GRACE_SECONDS


class _Pipeline:
    def __init__(self, written: dict[str, dict[str, object]]) -> None:
        self.written = written

    def hset(self, key: str, name: str, value: object) -> None:
        self.written.setdefault(key, {})[name] = value

    def hdel(self, key: str, name: str) -> None:
        self.written.setdefault(key, {}).pop(name, None)

    def execute(self) -> None:
        return None


class _Directory:
    """One Redis whose pipeline records what the writer sets."""

    def __init__(self) -> None:
        self.written: dict[str, dict[str, object]] = {}

    def client(self, namespace: str, ref: object) -> _Directory:
        return self

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline(self.written)

    def redact(self, text: str) -> str:
        return text


@pytest.mark.parametrize("limit", [0, 250])
def test_dead_letter_limit_reaches_the_workers_through_the_queues_settings(
        limit: int) -> None:
    directory = _Directory()
    tq: TaskQueue = parse_task_queue({"metadata": {"namespace": "ns", "name": "films"},
                                      "spec": {"redis": {"url": "redis://r:6379/0"},
                                               "deadLetterLimit": limit}})
    QueueSettingsWriter(directory).apply_all([tq], 0.0)  # type: ignore[arg-type]  # a stand-in
    assert directory.written[QueueKeys("films").settings] == {DEAD_LETTER_LIMIT: limit}
