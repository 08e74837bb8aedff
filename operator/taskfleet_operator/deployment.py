"""The Deployment of a WorkerPool: a pure function of the pool and its queues."""

from __future__ import annotations

import copy
import re
from typing import Any

from taskfleet.connection import BROKER_ENV, PASSWORD_ENV, SENTINEL_PASSWORD_ENV, TLS_ENV

from .model import API_VERSION, RedisRef, TaskQueue, WorkerPool
from .policy import SpecError

DEFAULT_IMAGE = "taskfleet/worker:0.1.0"
"""Overridden by the operator's --worker-image (the Helm chart sets it)."""
CODE_DIR = "/opt/taskfleet/code"
WORKER_UID = 10001
POD_LABEL_NAME = "taskfleet-worker"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
PROBE_TIMEOUT_SECONDS = 10


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


def pods_of_pool(pool: str, pods: dict[str, int]) -> dict[str, int]:
    """The entries whose pod a Deployment named ``pool`` created (``<pool>-<hash>-<id>``)."""
    pattern = re.compile(re.escape(pool) + r"-[a-z0-9]+-[a-z0-9]+")
    return {pod: n for pod, n in pods.items() if pattern.fullmatch(pod)}


def broker_env(ref: RedisRef, url_variable: str = BROKER_ENV) -> list[dict[str, Any]]:
    """Broker settings as environment, Secrets passed by reference, never copied; the URL
    in ``url_variable`` (where the worker runtime reads it)."""
    env: list[dict[str, Any]] = []
    if ref.url_from is not None:
        env.append({"name": url_variable, "valueFrom": {"secretKeyRef": {
            "name": ref.url_from.name, "key": ref.url_from.key}}})
    else:
        env.append({"name": url_variable, "value": ref.url})
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


def liveness_probe(pool: WorkerPool) -> dict[str, Any]:
    """Restart a worker that is cut off (or stuck): it holds tasks it cannot finish. How
    it is asked is its runtime's; how often and how patiently is spec.healthCheck's."""
    health = pool.spec.get("healthCheck") or {}
    return {
        "exec": {"command": pool.runtime.liveness_command(pool)},
        "initialDelaySeconds": health.get("initialDelaySeconds", 30),
        "periodSeconds": health.get("periodSeconds", 30),
        "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
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
    runtime = pool.runtime
    env = [*broker_env(ref, runtime.broker_url_env),
           {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
           *copy.deepcopy(spec.get("env") or [])]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if spec.get("code"):
        volumes.append({"name": "code", "configMap": {"name": spec["code"]["configMap"]}})
        mounts.append({"name": "code", "mountPath": CODE_DIR, "readOnly": True})
        env.append({"name": "PYTHONPATH", "value": CODE_DIR})
    command = runtime.command(pool, queues)
    container: dict[str, Any] = {
        "name": "worker",
        "image": spec.get("image") or default_image,
        "command": command[:1],
        "args": command[1:],
        "env": env,
        "volumeMounts": mounts,
        "livenessProbe": liveness_probe(pool),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
    }
    port = pool.metrics_port
    if port is not None:
        # Named, so a PodMonitor (or any pod scrape config) finds it by name.
        container["ports"] = [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    for key in ("resources", "envFrom", "imagePullPolicy"):
        if spec.get(key):
            container[key] = copy.deepcopy(spec[key])
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": pool.grace_seconds,
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
