"""Prometheus metrics of a worker (optional: pip install taskfleet[metrics])."""

from __future__ import annotations

import os
import tempfile

from .broker import Ack, DeadLetter, Outcome, RetryLater, Return
from .errors import ConfigError
from .worker import Metrics

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                    600.0, 1800.0, 3600.0)
"""Seconds. Tasks run from milliseconds to an hour (a transcode); the client's default
buckets stop at 10 s, which would put every long task in +Inf."""


def _client() -> object:
    try:
        import prometheus_client
    except ImportError as exc:
        raise ConfigError("--metrics-port needs prometheus-client: pip install "
                          "'taskfleet[metrics]'") from exc
    return prometheus_client


def prepare_multiprocess() -> None:
    """Give the processes pool a shared directory before any child starts."""
    if not os.environ.get(MULTIPROC_ENV):
        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="taskfleet-metrics-")


def serve(port: int, address: str, multiprocess: bool) -> None:
    _client()
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client import multiprocess as mp

    if multiprocess:
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(port, addr=address, registry=registry)
    else:
        start_http_server(port, addr=address)


class PrometheusMetrics(Metrics):
    def __init__(self) -> None:
        _client()
        from prometheus_client import Counter, Histogram

        self.started_total = Counter("taskfleet_tasks_started_total", "Tasks started", ["task"])
        self.finished_total = Counter("taskfleet_tasks_finished_total",
                                      "Tasks finished, by outcome", ["task", "outcome"])
        self.duration = Histogram("taskfleet_task_duration_seconds", "Task run time", ["task"],
                                  buckets=DURATION_BUCKETS)

    def started(self, task: str) -> None:
        self.started_total.labels(task).inc()

    def finished(self, task: str, outcome: Outcome, duration: float) -> None:
        self.finished_total.labels(task, _outcome_label(outcome)).inc()
        self.duration.labels(task).observe(duration)


def _outcome_label(outcome: Outcome) -> str:
    if isinstance(outcome, Ack):
        return "succeeded"
    if isinstance(outcome, RetryLater):
        return "retried"
    if isinstance(outcome, DeadLetter):
        return "failed"
    assert isinstance(outcome, Return)
    return "returned"
