"""Worker pods under the restricted Pod Security Standard, enforced by the real API server's
PodSecurity admission in a namespace labelled ``pod-security.kubernetes.io/enforce``.

The generated pod template must pass the restricted profile as it is; a podTemplate
override that breaks it must be refused by the admission, with its message where a user
looks (the ReplicaSet's events, the Deployment's ReplicaFailure condition).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from testenv.cluster import Cluster
from testenv.operator import OperatorProcess
from testenv.resources import Pool, task_queue

VIOLATES = "violates PodSecurity"


@pytest.fixture
def restricted(cluster: Cluster, namespace: str) -> str:
    """The test namespace, enforcing the restricted profile (and shown to be enforcing)."""
    cluster.kubectl("label", "namespace", namespace,
                    "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest")
    probe = cluster.kubectl("run", "probe", "--image=busybox", "--privileged",
                            "--dry-run=server", namespace=namespace, check=False)
    assert probe.returncode != 0 and VIOLATES in probe.stderr, probe.stderr
    return namespace


def refusals(cluster: Cluster, namespace: str, pool: Pool) -> list[str]:
    """What the admission said when the pool's ReplicaSets tried to create pods."""
    messages = [c.get("message", "") for rs in cluster.list("replicasets", namespace,
                                                             pool.selector)
                for c in (rs.get("status") or {}).get("conditions", [])
                if c["type"] == "ReplicaFailure"]
    messages += [e["message"] for e in cluster.list("events", namespace)
                 if e["involvedObject"]["kind"] == "ReplicaSet"
                 and e["involvedObject"]["name"].startswith(f"{pool.name}-")
                 and e["reason"] == "FailedCreate"]
    return [m for m in messages if VIOLATES in m]


def test_worker_pods_pass_the_restricted_profile(cluster: Cluster, restricted: str,
                                                 operator: OperatorProcess,
                                                 redis_url: str) -> None:
    cluster.apply(yaml.safe_dump(task_queue("work", redis_url)), namespace=restricted)
    pool = Pool(cluster, restricted, "workers", operator.log).apply(["work"], replicas=2)
    pods = pool.wait("two pods created", lambda: len(pool.pods()) == 2 and pool.pods(), 60)
    assert refusals(cluster, restricted, pool) == []
    spec: dict[str, Any] = pods[0]["spec"]
    [container] = spec["containers"]
    # the fields the restricted profile asks for, as the pods carry them
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_an_override_that_breaks_the_profile_is_refused_visibly(
        cluster: Cluster, restricted: str, operator: OperatorProcess, redis_url: str) -> None:
    cluster.apply(yaml.safe_dump(task_queue("work", redis_url)), namespace=restricted)
    pool = Pool(cluster, restricted, "as-root", operator.log).apply(
        ["work"], replicas=1, podTemplate={"spec": {"securityContext": {
            "runAsUser": 0, "seccompProfile": {"type": "RuntimeDefault"}}}})
    [message, *_] = pool.wait("the admission refuses the pods",
                              lambda: refusals(cluster, restricted, pool), 60)
    assert "runAsUser=0" in message, message
    assert pool.pods() == []
    # The Deployment says so in its own status, which `kubectl describe deploy` shows.
    deployment = pool.deployment() or {}
    failure = [c for c in (deployment.get("status") or {}).get("conditions", [])
               if c["type"] == "ReplicaFailure"]
    assert failure and VIOLATES in failure[0]["message"], deployment.get("status")
    # ... and the operator puts it on the pool, where the user looks first.
    pool.wait_condition("Ready", "reason", "PodsRefused", timeout=30)
    assert VIOLATES in pool.condition("Ready")["message"]
    assert [e["type"] for e in pool.events("PodsRefused")] == ["Warning"]
