"""One operator, many pools: the cost of an observation cycle, the operator's memory
and CPU, and the reaction to a burst on one pool among all the others, on the local
control plane (kwok fake nodes, no pods: the pools are idle at zero).

1. Cycle: one observation pass over N queues (one pipelined round trip), its Redis
   time from INFO commandstats, and decide() for N pools, in this process.
2. Footprint: a real operator process managing N WorkerPools and N TaskQueues:
   time until it has applied every Deployment, then RSS and CPU at steady state,
   and memory per pool (RSS over what the same process holds with no pools).
3. Burst: one pool at zero, first alone, then among the N; time from a burst to
   its Deployment's spec.replicas changing, repeated, as bench/autoscale.py does it.
4. Where the memory goes, in this process: the operator's own registry holding N
   pools and queues (tracemalloc), and the same objects as the Kubernetes
   client's models (what an operator built on them would hold).

    python bench/pools.py [--json PATH] [--pools N] [--bursts N] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis
import yaml

from bench.autoscale import BENCH_APP, cycle, reaction, summarize
from bench.kube import wait_quiet
from bench.report import write_json
from taskfleet import QueueStats
from taskfleet_operator.controller import Controller
from taskfleet_operator.model import TaskQueue
from taskfleet_operator.observe import QueueReading
from taskfleet_operator.registry import Registry
from taskfleet_operator.runtimes import WorkerRuntime
from testenv.cluster import Cluster
from testenv.operator import DiscardedWrites, OperatorProcess, crds_applied
from testenv.processes import cpu_seconds, rss_mb
from testenv.redis_server import RedisServer
from testenv.resources import task_queue, worker_pool
from testenv.waiting import wait_for

GOALS = {"redis_ms_per_cycle": 100.0, "rss_mb": 500.0, "steady_cpu_percent": 10.0}
"""What one operator must stay within at 10,000 pools."""


def manifests(url: str, pools: int) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for i in range(pools):
        docs.append(task_queue(f"tq{i}", url, queueName=f"q{i}"))
        docs.append(worker_pool(f"wp{i}", [f"tq{i}"], {"minReplicas": 0, "maxReplicas": 3},
                                app=BENCH_APP))
    return docs


def create_in_chunks(cluster: Cluster, ns: str, docs: list[dict[str, Any]],
                     chunk: int = 2000) -> None:
    """kubectl create, not apply: one request per object instead of a read and a write."""
    for start in range(0, len(docs), chunk):
        cluster.kubectl("create", "-f", "-", input=yaml.safe_dump_all(docs[start:start + chunk]),
                        namespace=ns)


def deployments(cluster: Cluster, ns: str) -> int:
    """How many Deployments ``ns`` holds, from a one-item page (its remainingItemCount): a
    full list of 10,000 every few seconds would take a core from the operator measured."""
    page = json.loads(cluster.kubectl(
        "get", "--raw", f"/apis/apps/v1/namespaces/{ns}/deployments?limit=1").stdout)
    return len(page["items"]) + int(page["metadata"].get("remainingItemCount") or 0)


def footprint(cluster: Cluster, ns: str, url: str, pools: int, bursts: int,
              tmp: Path, steady_seconds: float = 60.0) -> dict[str, Any]:
    op = OperatorProcess(cluster, ns, tmp / "operator-pools.log").start()
    try:
        assert op.process is not None
        pid = op.process.pid
        time.sleep(min(10.0, steady_seconds))  # started, watching, nothing to manage yet
        empty_rss = rss_mb(pid)
        # The same pool's reaction, first alone and then among all the others: the two
        # figures the goal compares, in one run.
        alone = summarize("reaction from zero, the one pool", reaction(cluster, ns, url,
                                                                       bursts, 0))
        create_in_chunks(cluster, ns, manifests(url, pools))
        start = time.monotonic()
        wait_for("the operator's every Deployment",  # and the reaction pool's
                 lambda: deployments(cluster, ns) >= pools + 1, 1800, interval=5)
        converge = time.monotonic() - start
        print(f"  {pools} Deployments applied in {converge:.0f} s", flush=True)
        wait_quiet(cluster, ns, min(20.0, steady_seconds), 1800)
        client = redis.Redis.from_url(url)
        client.config_resetstat()
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(steady_seconds)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        redis_usec = sum(v["usec"] for v in client.info("commandstats").values())
        client.close()
        rss = rss_mb(pid)
        out: dict[str, Any] = {
            "pools": pools, "converge_seconds": round(converge, 1),
            "rss_mb": round(rss, 1), "rss_with_no_pools_mb": round(empty_rss, 1),
            "kb_per_pool": round((rss - empty_rss) * 1024 / pools, 1),
            "steady_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
            "steady_redis_ms_per_second": round(redis_usec / 1000 / (t1 - t0), 2)}
        print(f"  operator: {out}", flush=True)
        out["reaction_alone"] = alone
        out["reaction_among_all"] = summarize(
            f"reaction from zero among {pools} pools",
            reaction(cluster, ns, url, bursts, 0))
        return out
    finally:
        op.stop()


def memory_breakdown(url: str, pools: int) -> dict[str, float]:
    """KB per pool (a WorkerPool and its TaskQueue) held by the operator's registry (the
    parsed objects), by its controller once every pool is decided (history, status kept,
    readings, metrics), and by a Deployment as the Kubernetes client's models (what an
    operator that kept them would hold)."""
    from kubernetes.client import ApiClient

    docs = manifests(url, pools)
    for i, doc in enumerate(docs):  # as the API server returns them
        doc["metadata"].update(namespace="bench", uid=f"uid-{i}", resourceVersion=str(i),
                               generation=1, creationTimestamp="2026-01-01T00:00:00Z")
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    registry = Registry()
    for doc in docs:
        if doc["kind"] == "TaskQueue":
            registry.queue_changed("ADDED", doc)
        else:
            registry.pool_changed("ADDED", doc)
    gc.collect()
    registry_bytes = tracemalloc.get_traced_memory()[0] - base
    base = tracemalloc.get_traced_memory()[0]
    controller = Controller(registry, DiscardedWrites(), _EmptyQueues(),
                            default_image="taskfleet/worker:test")
    controller.reconcile(everything=True)  # every pool decided, its status kept
    gc.collect()
    controller_bytes = tracemalloc.get_traced_memory()[0] - base
    del registry, controller
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]

    api = ApiClient()
    models = [api.deserialize(json.dumps(build_like_deployment(pool, queue)),
                              "V1Deployment", "application/json")
              for queue, pool in zip(docs[::2], docs[1::2], strict=True)]
    gc.collect()
    model_bytes = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del models
    return {"registry_kb_per_pool": round(registry_bytes / 1024 / pools, 2),
            "controller_kb_per_pool": round(controller_bytes / 1024 / pools, 2),
            "deployment_model_kb_per_pool": round(model_bytes / 1024 / pools, 2)}


class _EmptyQueues:
    """Every queue read as empty."""

    def read_queues(self, queues: Iterable[TaskQueue]) -> dict[tuple[str, str], QueueReading]:
        return {q.key: QueueReading(QueueStats(0, 0, 0, 0, 0.0)) for q in queues}

    def busy_by_pod(self, queue: TaskQueue, runtime: WorkerRuntime | None = None
                    ) -> dict[str, int] | None:
        return {}

    def redact(self, text: str) -> str:
        return text


def build_like_deployment(pool: dict[str, Any], queue: dict[str, Any]) -> dict[str, Any]:
    """The Deployment the operator applies for ``pool``, as the watch delivers it."""
    from taskfleet_operator.deployment import build_deployment
    from taskfleet_operator.model import parse_task_queue, parse_worker_pool

    manifest: dict[str, Any] = build_deployment(parse_worker_pool(pool),
                                                [parse_task_queue(queue)], 0,
                                                "taskfleet/worker:test")
    manifest["metadata"].update(uid="u", resourceVersion="1")
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--pools", type=int, default=10_000)
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    pools, bursts = (100, 2) if args.quick else (args.pools, args.bursts)
    tmp = Path("/tmp") / f"taskfleet-bench-pools-{int(time.time())}"
    tmp.mkdir(parents=True, exist_ok=True)
    server = RedisServer().start()
    result: dict[str, Any] = {"goals_at_10000_pools": GOALS}
    try:
        result["cycle"] = cycle(server.url, pools)
        print(f"cycle: {result['cycle']}", flush=True)
        result["memory"] = memory_breakdown(server.url, pools)
        print(f"memory: {result['memory']}", flush=True)
        redis.Redis.from_url(server.url).flushall()  # the footprint's pools are idle
        cluster = Cluster(name="tf-pools").up()
        try:
            crds_applied(cluster)
            cluster.kubectl("create", "namespace", "pools")
            result["operator"] = footprint(cluster, "pools", server.url, pools, bursts, tmp,
                                           steady_seconds=5.0 if args.quick else 60.0)
        finally:
            cluster.down()
    finally:
        server.close()

    c, o, m = result["cycle"], result["operator"], result["memory"]
    r = o["reaction_among_all"]
    print()
    print(f"{'':<44}{'measured':>12}   goal at 10,000")
    print(f"{'Redis time per cycle, ' + str(c['queues']) + ' queues':<44}"
          f"{c['redis_ms_per_cycle']:>10.1f}ms   <= 100 ms")
    print(f"{'observe wall time per cycle':<44}{c['observe_wall_ms_median']:>10.1f}ms")
    print(f"{'decide() for all pools':<44}{c['decide_ms_for_all_pools']:>10.1f}ms")
    print(f"{'operator RSS, ' + str(o['pools']) + ' pools':<44}{o['rss_mb']:>10.0f}MB   <= 500 MB")
    print(f"{'  per pool (over the empty operator)':<44}{o['kb_per_pool']:>10.1f}KB")
    print(f"{'  registry, per pool':<44}{m['registry_kb_per_pool']:>10.1f}KB")
    print(f"{'  controller state, per pool':<44}{m['controller_kb_per_pool']:>10.1f}KB")
    print(f"{'  a Deployment as client models, per pool':<44}"
          f"{m['deployment_model_kb_per_pool']:>10.1f}KB")
    print(f"{'operator CPU at steady state':<44}{o['steady_cpu_percent']:>11.1f}%   <= 10 %")
    print(f"{'Redis time at steady state, per second':<44}"
          f"{o['steady_redis_ms_per_second']:>10.1f}ms")
    print(f"{'reaction to a burst among all, p95':<44}{r['p95_s']:>11.2f}s   "
          f"<= alone: {o['reaction_alone']['p95_s']:.2f} s")
    print(f"{'Deployments applied from a cold start':<44}{o['converge_seconds']:>11.0f}s")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    # SIGTERM (a CI timeout, kill) still runs the cleanup in main's finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    raise SystemExit(main())
