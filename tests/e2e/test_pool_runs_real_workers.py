"""End to end: real worker processes, one per Running pod, consume a queue while the
operator scales their pool out and back to zero, and nothing is lost or run twice."""

from __future__ import annotations

import redis
import yaml

from taskfleet import App
from tests.support.cluster import Cluster
from tests.support.kubelet import PodProcessRunner
from tests.support.operator import OperatorProcess
from tests.support.processes import ROOT
from tests.support.resources import task_queue, worker_pool
from tests.support.waiting import wait_for


def test_pool_scales_with_real_workers_and_loses_nothing(cluster: Cluster, namespace: str,
                                                         operator: OperatorProcess,
                                                         redis_url: str,
                                                         redis_client: redis.Redis) -> None:
    cluster.apply(yaml.safe_dump_all([
        task_queue("jobs", redis_url),
        worker_pool("jobs-pool", ["jobs"], {"minReplicas": 0, "maxReplicas": 3,
                                            "targetPerReplica": 20, "scaleToZeroAfterSeconds": 2,
                                            "pollSeconds": 0.5,
                                            "scaleDown": {"stabilizationSeconds": 1}},
                    pool="threads", concurrency=2, terminationGracePeriodSeconds=30),
    ]), namespace=namespace)
    runner = PodProcessRunner(str(cluster.kubeconfig), namespace,
                              "app.kubernetes.io/instance=jobs-pool", ROOT).start()
    try:
        app = App(redis_url)
        results = app.send_many("sample.sleep_record",
                                [[str(i), 0.05] for i in range(300)], queue="jobs")
        for r in results:
            r.get(timeout=120)
        done = redis_client.lrange("test:runs:record", 0, -1)
        assert sorted(done, key=int) == [str(i) for i in range(300)], "each task done once"
        wait_for("the pool back at zero",
                 lambda: cluster.get("deployment", "jobs-pool", namespace)["spec"]["replicas"]
                 == 0, 60)
        wait_for("every worker process drained and exited",
                 lambda: not runner.running(), 60)
        assert len(runner.started) == 3, f"the pool went out to max: {runner.started}"
        assert {p.returncode for p in runner.processes.values()} == {0}, \
            "workers stopped by SIGTERM exit 0"
        events = [e["message"] for e in cluster.list("events", namespace)
                  if e["reason"] in ("ScaledUp", "ScaledDown")]
        assert any(m.startswith("ready=") and "→ 3" in m for m in events), events
    finally:
        runner.stop()
