"""What a worker pod gets of the cluster: no ServiceAccount token and no Service links
unless the pool asks; and the operator's namespaces (--namespace) and their Lease."""

from __future__ import annotations

from typing import Any

import pytest

from taskfleet_operator.command import _namespaces
from taskfleet_operator.deployment import build_deployment
from taskfleet_operator.model import parse_task_queue, parse_worker_pool
from taskfleet_operator.policy import SpecError
from taskfleet_operator.runtime import leader_lease_name

QUEUE = parse_task_queue({"metadata": {"namespace": "v", "name": "q"},
                          "spec": {"redis": {"url": "redis://redis:6379/0"}}})


def pod_spec(**spec: Any) -> dict[str, Any]:
    pool = parse_worker_pool({"metadata": {"namespace": "v", "name": "p"},
                              "spec": {"queues": ["q"], "app": "video.tasks:app", **spec}})
    out: dict[str, Any] = build_deployment(pool, [QUEUE], 1)["spec"]["template"]["spec"]
    return out


def test_no_token_and_no_service_links_by_default() -> None:
    spec = pod_spec()
    assert spec["automountServiceAccountToken"] is False
    assert spec["enableServiceLinks"] is False


def test_a_pool_asks_for_them() -> None:
    spec = pod_spec(automountServiceAccountToken=True, enableServiceLinks=True)
    assert spec["automountServiceAccountToken"] is True
    assert spec["enableServiceLinks"] is True
    spec = pod_spec(podTemplate={"spec": {"enableServiceLinks": True}})
    assert (spec["automountServiceAccountToken"], spec["enableServiceLinks"]) == (False, True)


@pytest.mark.parametrize("field", ["automountServiceAccountToken", "enableServiceLinks"])
def test_a_wrong_value_is_named(field: str) -> None:
    with pytest.raises(SpecError, match=f"spec.{field} must be true or false"):
        pod_spec(**{field: "yes"})


def test_namespaces_argument() -> None:
    assert _namespaces("a,b") == ["a", "b"]
    assert _namespaces(" a ") == ["a"]
    for bad in ("", ",", "A", "a_b", "-a"):
        with pytest.raises(Exception, match="namespace names"):
            _namespaces(bad)


def test_one_lease_per_watched_scope() -> None:
    assert leader_lease_name(None) == leader_lease_name([]) == "taskfleet-operator"
    assert leader_lease_name("a") == leader_lease_name(["a"]) == "taskfleet-operator-ns-a"
    assert leader_lease_name(["a", "b"]) == leader_lease_name(["b", "a", "a"])
    assert leader_lease_name(["a", "b"]) != leader_lease_name(["a", "c"])
    assert leader_lease_name(["a", "b"]).startswith("taskfleet-operator-nss-")


def test_a_pool_cannot_relabel_its_pods_away_from_the_operator() -> None:
    pool = parse_worker_pool({"metadata": {"namespace": "v", "name": "p"}, "spec": {
        "queues": ["q"], "app": "video.tasks:app", "podTemplate": {"metadata": {"labels": {
            "app.kubernetes.io/managed-by": "me", "app.kubernetes.io/instance": "x",
            "team": "video"}}}}})
    labels = build_deployment(pool, [QUEUE], 1)["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "taskfleet-operator"
    assert labels["app.kubernetes.io/instance"] == "p"
    assert labels["team"] == "video"
