"""Shared fixtures: a real redis-server (flushed for every test), the local control plane
and a namespace per test, the operator, and worker processes; all stopped at the end."""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest
import redis

from taskfleet.connection import connect
from tests.support.cluster import Cluster
from tests.support.foreign_workers import ForeignWorker
from tests.support.node import RealNode
from tests.support.operator import OperatorProcess, crds_applied
from tests.support.processes import WorkerProcess, stopped_at_end
from tests.support.redis_cluster import RedisClusterServers
from tests.support.redis_server import RedisServer
from tests.support.resources import Pool
from tests.support.sentinel_group import SentinelGroup


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (a CI time limit) ends the run like Ctrl-C, so fixtures still stop servers."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


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
def cluster() -> Iterator[Cluster]:
    """The local control plane, started on first use and removed at the end of the run."""
    c = Cluster().up()
    try:
        yield c
    finally:
        c.down()


@pytest.fixture(scope="session")
def real_node(cluster: Cluster) -> RealNode:
    """The cluster's real node (containerd and a kubelet), started with it by cluster.sh;
    ``real_node.place(pod_spec)`` puts a pod there."""
    if os.environ.get("TASKFLEET_REAL_NODE") == "0":
        pytest.skip("the real node is off (TASKFLEET_REAL_NODE=0)")
    node = RealNode(cluster)
    assert node.status().running, "the real node is not running (see hack/testenv/node.sh)"
    return node


_namespaces = itertools.count()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = f"t{next(_namespaces)}-{id(cluster) % 10000}"
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
