"""spec.metrics of a WorkerPool: the workers serve Prometheus metrics on a named port."""

from __future__ import annotations

from typing import Any

import pytest

from taskfleet_operator.deployment import build_deployment
from taskfleet_operator.model import parse_task_queue, parse_worker_pool
from taskfleet_operator.policy import SpecError

QUEUE = parse_task_queue({"metadata": {"namespace": "v", "name": "q"},
                          "spec": {"redis": {"url": "redis://redis:6379/0"}}})


def worker(spec_metrics: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"queues": ["q"], "app": "video.tasks:app"}
    if spec_metrics is not None:
        spec["metrics"] = spec_metrics
    pool = parse_worker_pool({"metadata": {"namespace": "v", "name": "p"}, "spec": spec})
    container: dict[str, Any] = build_deployment(pool, [QUEUE], 1)["spec"]["template"][
        "spec"]["containers"][0]
    return container


def test_off_by_default() -> None:
    for off in (None, {}, {"enabled": False, "port": 9300}):
        container = worker(off)
        assert "--metrics-port" not in container["args"]
        assert "ports" not in container


def test_enabled_serves_on_a_named_port() -> None:
    container = worker({"enabled": True})
    assert container["args"][-2:] == ["--metrics-port", "9200"]
    assert container["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]
    container = worker({"enabled": True, "port": 8000})
    assert container["args"][-2:] == ["--metrics-port", "8000"]
    assert container["ports"][0]["containerPort"] == 8000


@pytest.mark.parametrize(("metrics", "named"), [
    ({"enabled": "yes"}, "spec.metrics.enabled"),
    ({"enabled": True, "port": 70000}, "spec.metrics.port"),
    ({"enabled": True, "port": "9200"}, "spec.metrics.port"),
    ("on", "spec.metrics"),
])
def test_a_wrong_field_is_named(metrics: Any, named: str) -> None:
    with pytest.raises(SpecError, match=named.replace(".", r"\.")):
        worker(metrics)
