"""The taskfleet resources that tests, the demo and the benchmarks create, in one place:
TaskQueue and WorkerPool manifests, the kwok toleration, and a handle on one pool."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import yaml

from testenv.cluster import Cluster
from testenv.waiting import wait_for

API_VERSION = "taskfleet.dev/v1alpha1"
SAMPLE_APP = "tests.integration.apps.sample:app"
"""The tasks the integration tests run (tests/integration/apps/sample.py)."""
KWOK_TOLERATION = {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
"""Lets a pod onto kwok's fake nodes (they carry the kwok.x-k8s.io/node taint)."""
FAST_SCALING = {"pollSeconds": 0.5, "scaleDown": {"stabilizationSeconds": 1}}
"""Windows short enough for a test to see a whole scale-out and scale-in."""


def tolerate_kwok(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """A pod spec that may run on the fake nodes."""
    pod_spec.setdefault("tolerations", []).append(dict(KWOK_TOLERATION))
    return pod_spec


def task_queue(name: str, redis_url: str, **spec: Any) -> dict[str, Any]:
    """A TaskQueue manifest; ``spec`` adds or overrides fields (queueName, schedules...)."""
    return {"apiVersion": API_VERSION, "kind": "TaskQueue", "metadata": {"name": name},
            "spec": {"redis": {"url": redis_url}, **spec}}


def worker_pool(name: str, queues: list[str], autoscaling: dict[str, Any] | None = None,
                app: str = SAMPLE_APP, **spec: Any) -> dict[str, Any]:
    """A WorkerPool manifest on the fake nodes; autoscaling on when ``autoscaling`` is given."""
    body: dict[str, Any] = {"queues": queues, "app": app,
                            "tolerations": [dict(KWOK_TOLERATION)], **spec}
    if autoscaling is not None:
        body["autoscaling"] = autoscaling
    return {"apiVersion": API_VERSION, "kind": "WorkerPool", "metadata": {"name": name},
            "spec": body}


class Pool:
    """One WorkerPool in a test namespace: apply it, then read its Deployment, status and
    scale events, and wait for them, without repeating the pool's name and namespace."""

    def __init__(self, cluster: Cluster, namespace: str, name: str,
                 log: Callable[[], str] | None = None) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.name = name
        self.log = log
        """The operator's log, shown when a wait fails."""

    def apply(self, queues: list[str], autoscaling: dict[str, Any] | None = None,
              **spec: Any) -> Pool:
        self.cluster.apply(yaml.safe_dump(worker_pool(self.name, queues, autoscaling, **spec)),
                           namespace=self.namespace)
        return self

    @property
    def selector(self) -> str:
        return f"app.kubernetes.io/instance={self.name}"

    def deployment(self) -> dict[str, Any] | None:
        return self.cluster.get("deployment", self.name, self.namespace)

    def replicas(self) -> int | None:
        """The Deployment's spec.replicas (what the operator asked for); None: no Deployment."""
        d = self.deployment()
        return None if d is None else int(d["spec"]["replicas"])

    def status(self) -> dict[str, Any]:
        wp = self.cluster.get("workerpool", self.name, self.namespace) or {}
        status: dict[str, Any] = wp.get("status") or {}
        return status

    def condition(self, type_: str) -> dict[str, Any]:
        return next((c for c in self.status().get("conditions", []) if c["type"] == type_), {})

    def pods(self) -> list[dict[str, Any]]:
        """Pods of the pool that are not being deleted."""
        return [p for p in self.cluster.list("pods", self.namespace, self.selector)
                if not p["metadata"].get("deletionTimestamp")]

    def events(self, *reasons: str) -> list[dict[str, Any]]:
        """The pool's Events in the order they were written: timestamps have whole seconds
        only, so ties go by resourceVersion (etcd's revision, increasing with each write)."""
        events = self.cluster.list("events", self.namespace)
        ordered = sorted(events, key=lambda e: (e["metadata"]["creationTimestamp"],
                                                int(e["metadata"]["resourceVersion"])))
        return [e for e in ordered if e["involvedObject"]["name"] == self.name
                and (not reasons or e["reason"] in reasons)]

    def scale_events(self) -> list[str]:
        return [e["message"] for e in self.events("ScaledUp", "ScaledDown")]

    def describe(self) -> str:
        """What a failed wait shows: the namespace's objects, the status, the operator log."""
        parts = [self.cluster.kubectl("get", "wp,tq,deploy,pods", "-o", "wide",
                                      namespace=self.namespace, check=False).stdout,
                 json.dumps(self.status(), indent=1)]
        if self.log is not None:
            parts.append(self.log()[-3000:])
        return "\n".join(parts)

    def wait(self, what: str, probe: Callable[[], Any], timeout: float = 30.0) -> Any:
        return wait_for(f"{self.name}: {what}", probe, timeout, describe=self.describe)

    def wait_replicas(self, n: int, timeout: float = 30.0) -> None:
        self.wait(f"Deployment at {n} replica(s)", lambda: self.replicas() == n, timeout)

    def wait_condition(self, type_: str, field: str, value: str, timeout: float = 30.0) -> None:
        self.wait(f"condition {type_} with {field}={value}",
                  lambda: self.condition(type_).get(field) == value, timeout)
