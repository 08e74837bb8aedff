"""The Deployment of a WorkerPool: a pure function of the pool and its queues."""

from __future__ import annotations

import copy
from typing import Any

from taskfleet.connection import BROKER_ENV, PASSWORD_ENV, SENTINEL_PASSWORD_ENV, TLS_ENV

from .model import API_VERSION, METRICS_PORT, RedisRef, TaskQueue, WorkerPool
from .policy import SpecError

DEFAULT_IMAGE = "taskfleet/worker:0.1.0"
"""Overridden by the operator's --worker-image (the Helm chart sets it)."""
HEALTH_FILE = "/tmp/taskfleet-health"
CODE_DIR = "/opt/taskfleet/code"
WORKER_UID = 10001
POD_LABEL_NAME = "taskfleet-worker"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
SERVES = {"taskfleet": ("native", "celery"), "celery": ("celery",), "rq": ("rq",)}
"""WorkerPool.spec.runtime -> the TaskQueue protocols its workers take tasks from."""
RUNTIME_BROKER_ENV = {"celery": "CELERY_BROKER_URL", "rq": "RQ_REDIS_URL"}
"""Where Celery (``Settings.broker_url``, ahead of the app's own setting) and the ``rq``
command (``--url``'s envvar) read the broker URL."""
CELERY_POOLS = {"processes": "prefork", "threads": "threads"}


def selector_labels(pool: WorkerPool) -> dict[str, str]:
    return {"app.kubernetes.io/name": POD_LABEL_NAME, "app.kubernetes.io/instance": pool.name}


def selector_string(pool: WorkerPool) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(pool).items())


def shared_redis(queues: list[TaskQueue]) -> RedisRef:
    """The one Redis that all of a pool's queues live on (a worker has one broker)."""
    refs = {q.redis for q in queues}
    if len(refs) != 1:
        raise SpecError("spec.queues: all queues of a pool must use the same spec.redis "
                        f"(found {len(refs)} different ones); split the pool")
    return refs.pop()


def broker_env(ref: RedisRef) -> list[dict[str, Any]]:
    """Broker settings as environment, Secrets passed by reference, never copied."""
    env: list[dict[str, Any]] = []
    if ref.url_from is not None:
        env.append({"name": BROKER_ENV, "valueFrom": {"secretKeyRef": {
            "name": ref.url_from.name, "key": ref.url_from.key}}})
    else:
        env.append({"name": BROKER_ENV, "value": ref.url})
    if ref.password_from is not None:
        env.append({"name": PASSWORD_ENV, "valueFrom": {"secretKeyRef": {
            "name": ref.password_from.name, "key": ref.password_from.key}}})
    if ref.sentinel_password_from is not None:
        env.append({"name": SENTINEL_PASSWORD_ENV, "valueFrom": {"secretKeyRef": {
            "name": ref.sentinel_password_from.name,
            "key": ref.sentinel_password_from.key}}})
    if ref.tls or ref.tls_insecure:
        env.append({"name": TLS_ENV, "value": "insecure" if ref.tls_insecure else "true"})
    return env


def metrics_port(pool: WorkerPool) -> int | None:
    """The workers' Prometheus port when spec.metrics.enabled, else None."""
    metrics = pool.spec.get("metrics") or {}
    return int(metrics.get("port", METRICS_PORT)) if metrics.get("enabled") else None


def worker_args(pool: WorkerPool, queues: list[TaskQueue]) -> list[str]:
    spec = pool.spec
    grace = int(spec.get("terminationGracePeriodSeconds", 600))
    # The worker gives up on running tasks a little before the kubelet's SIGKILL,
    # so it can return them to their queues itself.
    drain = max(1, grace - 5)
    args = ["worker", "--app", spec["app"], "--queues", ",".join(q.queue_name for q in queues),
            "--concurrency", str(spec.get("concurrency", 1)),
            "--pool", spec.get("pool", "processes"), "--drain-timeout", str(drain),
            "--health-file", HEALTH_FILE,
            *celery_args(queues)]
    port = metrics_port(pool)
    if port is not None:
        args += ["--metrics-port", str(port)]
    return args


def celery_args(queues: list[TaskQueue]) -> list[str]:
    """taskfleet workers also take Celery clients' messages from protocol celery queues."""
    names = [q.queue_name for q in queues if q.protocol == "celery"]
    return ["--celery-queues", ",".join(names)] if names else []


def runtime_command(pool: WorkerPool, queues: list[TaskQueue]) -> list[str]:
    """The container's command line for the pool's runtime. Celery and RQ both drain on
    SIGTERM (warm shutdown: running tasks finish, nothing new is taken), bounded by the
    grace period."""
    spec = pool.spec
    names = [q.queue_name for q in queues]
    runtime = spec.get("runtime", "taskfleet")
    if runtime == "celery":
        return ["celery", "-A", spec["app"], "worker", "-Q", ",".join(names),
                "--concurrency", str(spec.get("concurrency", 1)),
                "--pool", CELERY_POOLS[spec.get("pool", "processes")],
                "--hostname", "celery@$(POD_NAME)", "--loglevel", "INFO"]
    if runtime == "rq":
        return ["rq", "worker", "--name", "$(POD_NAME)", *names]
    return ["taskfleet", *worker_args(pool, queues)]


def liveness_probe(health: dict[str, Any], pool: WorkerPool | None = None) -> dict[str, Any]:
    """Restart a worker whose heartbeat has not reached Redis for maxAgeSeconds: it is cut
    off (or stuck) and holds leases it cannot extend. A Celery worker must answer a ping
    over the broker; an RQ worker's key (which expires unless its heartbeat renews it:
    worker_ttl, 420 s, plus 60 s) must exist and not say the worker died."""
    runtime = pool.spec.get("runtime", "taskfleet") if pool is not None else "taskfleet"
    if runtime == "celery" and pool is not None:
        command = ["sh", "-c", 'exec celery -A "$0" inspect ping -d "celery@$POD_NAME" '
                   '--timeout 10', pool.spec["app"]]
    elif runtime == "rq":
        command = ["python", "-c", "import os, sys, redis; r = redis.Redis.from_url(os.environ"
                   "['RQ_REDIS_URL']); k = 'rq:worker:' + os.environ['POD_NAME']; "
                   "sys.exit(0 if r.exists(k) and not r.hexists(k, 'death') else 1)"]
    else:
        command = ["taskfleet", "health", "--file", HEALTH_FILE,
                   "--max-age", str(health.get("maxAgeSeconds", 60))]
    return {
        "exec": {"command": command},
        "initialDelaySeconds": health.get("initialDelaySeconds", 30),
        "periodSeconds": health.get("periodSeconds", 30), "timeoutSeconds": 10,
        "failureThreshold": health.get("failureThreshold", 3)}


def build_deployment(pool: WorkerPool, queues: list[TaskQueue], replicas: int,
                     default_image: str = DEFAULT_IMAGE) -> dict[str, Any]:
    """The full desired Deployment (server-side applied as a whole)."""
    spec = pool.spec
    ref = shared_redis(queues)
    labels = {**selector_labels(pool), "app.kubernetes.io/component": "worker",
              "app.kubernetes.io/part-of": "taskfleet",
              "app.kubernetes.io/managed-by": "taskfleet-operator"}
    overrides = spec.get("podTemplate") or {}
    meta = overrides.get("metadata") or {}
    runtime = spec.get("runtime", "taskfleet")
    broker = broker_env(ref)
    if runtime in RUNTIME_BROKER_ENV:
        broker = [{**broker[0], "name": RUNTIME_BROKER_ENV[runtime]}, *broker[1:]]
    env = [*broker,
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           *copy.deepcopy(spec.get("env") or [])]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if spec.get("code"):
        volumes.append({"name": "code", "configMap": {"name": spec["code"]["configMap"]}})
        mounts.append({"name": "code", "mountPath": CODE_DIR, "readOnly": True})
        env.append({"name": "PYTHONPATH", "value": CODE_DIR})
    container: dict[str, Any] = {
        "name": "worker",
        "image": spec.get("image") or default_image,
        "command": runtime_command(pool, queues)[:1],
        "args": runtime_command(pool, queues)[1:],
        "env": env,
        "volumeMounts": mounts,
        "livenessProbe": liveness_probe(spec.get("healthCheck") or {}, pool),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
    }
    port = metrics_port(pool)
    if port is not None:
        # Named, so a PodMonitor (or any pod scrape config) finds it by name.
        container["ports"] = [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    for key in ("resources", "envFrom", "imagePullPolicy"):
        if spec.get(key):
            container[key] = copy.deepcopy(spec[key])
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": int(spec.get("terminationGracePeriodSeconds", 600)),
        "securityContext": {"runAsNonRoot": True, "runAsUser": WORKER_UID,
                            "runAsGroup": WORKER_UID, "fsGroup": WORKER_UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
        # Workers talk to Redis, not to the API server: no token and no Service
        # variables unless the pool asks (podTemplate.spec may still set either).
        "automountServiceAccountToken": bool(spec.get("automountServiceAccountToken", False)),
        "enableServiceLinks": bool(spec.get("enableServiceLinks", False)),
    }
    for key in ("nodeSelector", "tolerations", "affinity", "serviceAccountName"):
        if spec.get(key):
            pod_spec[key] = copy.deepcopy(spec[key])
    for key, value in (overrides.get("spec") or {}).items():
        pod_spec[key] = copy.deepcopy(value)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": pool.name,
            "namespace": pool.namespace,
            "labels": labels,
            "ownerReferences": [{"apiVersion": API_VERSION, "kind": "WorkerPool",
                                 "name": pool.name, "uid": pool.uid, "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector_labels(pool)},
            # Surge, never take a worker away before its replacement is up.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                # the operator's labels win: the selector and the admission policy's
                # "pods it manages" (app.kubernetes.io/managed-by) rest on them
                "metadata": {"labels": {**(meta.get("labels") or {}), **labels},
                             "annotations": dict(meta.get("annotations") or {})},
                "spec": pod_spec,
            },
        },
    }
