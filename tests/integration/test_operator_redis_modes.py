"""The operator with queues on a Redis Cluster and behind Sentinel (through a failover)."""

from __future__ import annotations

from collections.abc import Callable

import yaml

from taskfleet import App
from testenv.cluster import Cluster
from testenv.processes import WorkerProcess
from testenv.redis_cluster import RedisClusterServers
from testenv.resources import FAST_SCALING, SAMPLE_APP, Pool, task_queue
from testenv.sentinel_group import SentinelGroup
from testenv.waiting import assert_stays


def test_a_pool_whose_queues_are_on_a_cluster_scales_out_and_to_zero(
        pools: Callable[[str], Pool], cluster: Cluster, namespace: str,
        redis_cluster: RedisClusterServers, workers: list[WorkerProcess]) -> None:
    redis_cluster.flushall()
    url = redis_cluster.url
    # Queues whose names hash to different slots, on different masters.
    names = ["alpha", "beta", "gamma", "delta"]
    for name in names:
        cluster.apply(yaml.safe_dump(task_queue(name, url)), namespace=namespace)
    pool = pools("spread").apply(names, {"maxReplicas": 4, "targetPerReplica": 10,
                                         "scaleToZeroAfterSeconds": 2, **FAST_SCALING})
    pool.wait_replicas(0)
    app = App(url)
    nodes = {app.redis.get_node_from_key(f"tf:{{{n}}}:messages").name  # type: ignore[union-attr]
             for n in names}
    assert len(nodes) >= 2, "the test's queues should live on more than one master"
    for name in names:
        app.send_many("sample.add", [[i, i] for i in range(10)], queue=name)
    pool.wait_replicas(4)
    assert pool.status()["queueReady"] == 40, "every queue read, on every node"
    workers.append(WorkerProcess(url, SAMPLE_APP, names, concurrency=4).start())
    pool.wait_replicas(0, timeout=60)


def test_a_pool_behind_sentinel_holds_its_size_through_a_failover(
        pools: Callable[[str], Pool], cluster: Cluster, namespace: str,
        killable_sentinel_group: SentinelGroup) -> None:
    cluster.kubectl("create", "secret", "generic", "redis", "--from-literal=password=data-secret",
                    "--from-literal=sentinel=sentinel-secret", namespace=namespace)
    cluster.kubectl("label", "secret", "redis", "taskfleet.dev/redis-credentials=true",
                    namespace=namespace)
    hosts = ",".join(f"127.0.0.1:{p}" for p in killable_sentinel_group.sentinel_ports)
    url = f"redis+sentinel://{hosts}/tfmaster/0"  # no password in the URL: both from a Secret
    cluster.apply(yaml.safe_dump(task_queue("ha", url, redis={
        "url": url, "passwordFrom": {"secretKeyRef": {"name": "redis", "key": "password"}},
        "sentinelPasswordFrom": {"secretKeyRef": {"name": "redis", "key": "sentinel"}}})),
        namespace=namespace)
    pool = pools("ha-pool").apply(["ha"], {"maxReplicas": 5, "targetPerReplica": 5,
                                           "scaleToZeroAfterSeconds": 1, **FAST_SCALING})
    app = App(killable_sentinel_group.url)
    app.send_many("sample.add", [[i, i] for i in range(10)], queue="ha")
    pool.wait_replicas(2)
    old = killable_sentinel_group.kill_master()
    # Through the failover and past scaleToZeroAfterSeconds: never fewer replicas.
    assert_stays("two replicas while the master is lost and replaced",
                 lambda: pool.replicas() == 2 and pool.status()["desiredReplicas"] == 2,
                 6.0, describe=pool.describe)
    killable_sentinel_group.wait_failed_over(old)
    app.send_many("sample.add", [[i, i] for i in range(10)], queue="ha")
    pool.wait("the operator reads the new master", lambda: pool.status().get("queueReady") == 20)
    pool.wait_replicas(4)
    assert pool.condition("MetricsAvailable")["status"] == "True"


def test_redis_urls_are_checked_by_the_api_server(crds: Cluster, namespace: str) -> None:
    cases = {
        "redis+sentinel://s1:26379": "needs the master name after the sentinels",
        "redis+cluster://n1:7000/2": "a Redis Cluster has only database 0",
        "http://redis:6379": "redis.url must start with redis:// or rediss://",
    }
    for url, message in cases.items():
        out = crds.apply(yaml.safe_dump(task_queue("bad", url)), namespace=namespace,
                         check=False)
        assert out.returncode != 0 and message in out.stderr, (url, out.stderr)
    out = crds.apply(yaml.safe_dump(task_queue("bad", "redis://r:6379/0", redis={
        "url": "redis://r:6379/0",
        "sentinelPasswordFrom": {"secretKeyRef": {"name": "s", "key": "k"}}})),
        namespace=namespace, check=False)
    assert "sentinelPasswordFrom is the sentinels' password" in out.stderr
    for url in ("redis+sentinel://s1:26379,s2:26379/mymaster/0?replica_acks=1",
                "redis+cluster://n1:7000,n2:7001", "rediss://r:6380/0"):
        crds.apply(yaml.safe_dump(task_queue("good", url)), namespace=namespace)
