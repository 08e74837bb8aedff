"""Shared fixtures: a real redis-server (flushed for every test), the local control plane
and a namespace per test, the operator, and worker processes; all stopped at the end.

Tests run in parallel (pytest-xdist, ``make test``): every test process owns its Redis
servers and processes, and all of them share one control plane (a namespace per test),
started by the first test that needs it and removed by the controlling process at the
end of the run. No test is skipped silently: a skip fails the run unless an opt-out in
``testenv/skips.py`` asked for it."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
import redis

from taskfleet.connection import connect
from testenv.cluster import Cluster, shared_cluster, shared_cluster_down
from testenv.foreign_workers import ForeignWorker
from testenv.images import build_images
from testenv.node import RealNode
from testenv.operator import OperatorProcess, crds_applied
from testenv.processes import WorkerProcess, stopped_at_end
from testenv.redis_cluster import RedisClusterServers
from testenv.redis_server import RedisServer
from testenv.resources import Pool
from testenv.sentinel_group import SentinelGroup
from testenv.skips import OPT_OUTS, allowed_skip, skip_for_opt_out

RUN_DIR = "TASKFLEET_TEST_RUN_DIR"
"""Where the test processes of one run meet: the shared control plane's state."""

def controls_the_run(config: pytest.Config) -> bool:
    """True in the process that runs the session: pytest itself, or xdist's controller."""
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (a CI time limit) ends the run like Ctrl-C, so fixtures still stop servers."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    if controls_the_run(config):
        # Set before xdist starts its workers, which inherit the environment.
        os.environ[RUN_DIR] = tempfile.mkdtemp(prefix="taskfleet-run-")


def pytest_unconfigure(config: pytest.Config) -> None:
    if controls_the_run(config) and RUN_DIR in os.environ:
        run_dir = Path(os.environ.pop(RUN_DIR))
        shared_cluster_down(run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


def _fail_silent_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr: Any = report.longrepr
    reason = str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)
    reason = reason.removeprefix("Skipped: ")
    if allowed_skip(reason):
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped, and no opt-out asked for it: {reason}\n"
                       f"Install what it needs (make setup does), or turn the part off with "
                       f"one of {', '.join(f'{k}={v}' for k, v in OPT_OUTS.items())}.")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _fail_silent_skip(outcome.get_result())  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _fail_silent_skip(outcome.get_result())  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def sentinel_group() -> Iterator[SentinelGroup]:
    """One master, two replicas, three sentinels; the data nodes and the sentinels have
    passwords of their own."""
    group = SentinelGroup(password="data-secret", sentinel_password="sentinel-secret").start()
    try:
        yield group
    finally:
        group.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """Three masters with a replica each."""
    servers = RedisClusterServers().start()
    try:
        yield servers
    finally:
        servers.close()


BROKER_MODES = ["single", "sentinel", "cluster"]
all_broker_modes = pytest.mark.parametrize("broker_mode", BROKER_MODES, indirect=True)
"""Runs a test that takes ``redis_url`` against one server, a Sentinel group and a cluster."""


@pytest.fixture
def broker_mode(request: pytest.FixtureRequest) -> str:
    """'single' unless the test is parametrized with ``all_broker_modes``."""
    return str(getattr(request, "param", "single"))


@pytest.fixture
def redis_url(broker_mode: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A broker URL of the test's mode, every key of it flushed."""
    if broker_mode == "sentinel":
        group: SentinelGroup = request.getfixturevalue("sentinel_group")
        group.flushall()
        yield group.url
        return
    if broker_mode == "cluster":
        servers: RedisClusterServers = request.getfixturevalue("redis_cluster")
        servers.flushall()
        yield servers.url
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    client = redis.Redis.from_url(server.url)
    client.flushall()
    client.close()
    yield server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = connect(redis_url)
    yield client  # type: ignore[misc]
    client.close()


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """taskfleet worker processes the test starts, stopped at its end."""
    yield from stopped_at_end()


@pytest.fixture
def foreign() -> Iterator[list[ForeignWorker]]:
    """Celery and RQ worker processes the test starts, stopped at its end."""
    yield from stopped_at_end()


@pytest.fixture
def celery_app(redis_url: str) -> Iterator[object]:
    """The test Celery app, its broker and result backend the test's redis-server."""
    from tests.integration.apps import celery_tasks

    celery_tasks.app.conf.broker_url = redis_url
    celery_tasks.app.conf.result_backend = redis_url
    yield celery_tasks.app
    celery_tasks.app.close()


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The local control plane, started on first use by any test process of the run and
    removed when the run ends (``pytest_unconfigure``)."""
    return shared_cluster(Path(os.environ[RUN_DIR]))


@pytest.fixture(scope="session")
def images() -> None:
    """The project's images and their Python base in podman's storage, built once per test
    process (seconds when the layer cache holds them); hack/images.sh installs podman and
    buildah when they are missing, so no test needs to skip for want of them."""
    try:
        build_images()
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> RealNode:
    """The cluster's real node (containerd and a kubelet), started with it by cluster.sh;
    ``real_node.place(pod_spec)`` puts a pod there."""
    skip_for_opt_out("TASKFLEET_REAL_NODE", "the real node")
    node = RealNode(cluster)
    assert node.status().running, "the real node is not running (see hack/testenv/node.sh)"
    return node


_namespaces = itertools.count()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting); the test process's
    PID keeps the names of parallel test processes apart."""
    name = f"t{next(_namespaces)}-{os.getpid()}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    """The taskfleet CRDs installed from crds/ (server-side apply, as a user would)."""
    crds_applied(cluster)
    return cluster


@pytest.fixture
def operator(crds: Cluster, namespace: str, tmp_path: Path) -> Iterator[OperatorProcess]:
    """`taskfleet operator` watching the test's namespace; its log is shown on failure."""
    op = OperatorProcess(crds, namespace, tmp_path / "operator.log").start()
    yield op
    op.stop()
    print(f"--- operator log ---\n{op.log()}")


@pytest.fixture
def pools(cluster: Cluster, namespace: str, operator: OperatorProcess
          ) -> Callable[[str], Pool]:
    """Handles on the test's pools, each showing the operator's log when a wait fails."""
    return lambda name: Pool(cluster, namespace, name, operator.log)


@pytest.fixture
def killable_sentinel_group() -> Iterator[SentinelGroup]:
    """A Sentinel group of the test's own: the test kills its master."""
    g = SentinelGroup(password="data-secret", sentinel_password="sentinel-secret").start()
    try:
        yield g
    finally:
        g.close()
