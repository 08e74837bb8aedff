"""Autoscaler reaction time and the cost of one observation cycle, on the local control plane.

1. Reaction: time from a burst being enqueued to the Deployment's spec.replicas
   changing, with the default poll (2 s), from zero and from one, repeated; the
   same for a burst sent by Celery's own client to a `runtime: celery` pool at
   zero; and, on the real node, from a burst on a pool at zero to the first task
   done in a worker container that did not exist before (what a user waits for).
2. Cycle: one observation pass over 1,000 queues (one pipelined round trip),
   its Redis time from INFO commandstats, and decide() for 1,000 pools; then a
   real operator process managing 1,000 WorkerPools: its memory and CPU.

KEDA's documented defaults are printed beside the figures: a 30 s polling
interval for activation from zero, then the HPA's 15 s sync period.

    python bench/autoscale.py [--json PATH] [--bursts N] [--pools N] [--quick]
                              [--celery-only]

`make bench` runs it in full and writes bench/results/autoscale.json, which the
README quotes (bench/report.py); --celery-only runs the Celery reaction alone. A full
run takes about 8 minutes on 2 cores (the first on a machine builds the images, about
2 minutes more); the JSON keeps the machine's load average during the run.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import redis
import yaml
from celery import Celery

from bench.kube import wait_quiet, wait_replicas
from bench.report import LoadWatch, write_json
from taskfleet import App, celery_wire, keys
from taskfleet.records import ResultRecord
from taskfleet_operator.decide import History, Observation, decide
from taskfleet_operator.model import RedisRef, TaskQueue
from taskfleet_operator.observe import RedisDirectory, read_queues
from taskfleet_operator.policy import ScalingPolicy
from testenv.cluster import Cluster
from testenv.images import WORKER_IMAGE, oci_archives
from testenv.node import RealNode
from testenv.operator import OperatorProcess, crds_applied
from testenv.processes import cpu_seconds, rss_mb
from testenv.redis_server import RedisServer
from testenv.resources import task_queue, worker_pool
from testenv.waiting import wait_for

KEDA = {"activation_poll_seconds": 30, "hpa_sync_seconds": 15}
BENCH_APP = "bench.peers.taskfleet_app:app"
BURST_TASKS = 100
"""Tasks per burst in the reaction runs (native and Celery)."""
COLD_BURST_TASKS = 20
"""Tasks per burst on the real node's pool, where each task waits for a new container."""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def clear(client: redis.Redis, queue: str) -> None:
    client.delete(*keys.QueueKeys(queue).all_keys())


def reaction(cluster: Cluster, ns: str, url: str, bursts: int, minimum: int) -> list[float]:
    name = f"react{minimum}"
    cluster.apply(yaml.safe_dump_all([
        task_queue(name, url),
        worker_pool(name, [name], {"minReplicas": minimum, "maxReplicas": 10,
                                   "scaleToZeroAfterSeconds": 0,
                                   "scaleDown": {"stabilizationSeconds": 0}}, app=BENCH_APP),
    ]), namespace=ns)
    app = App(url)
    client = redis.Redis.from_url(url)
    times = []
    for _ in range(bursts):
        clear(client, name)
        wait_replicas(cluster, ns, name, lambda r: r == minimum)
        time.sleep(2.5)  # settle a whole poll period, so the burst lands at a random phase
        start = time.perf_counter()
        app.send_many("bench.noop", [()] * BURST_TASKS, queue=name)
        end = wait_replicas(cluster, ns, name, lambda r: r > minimum)
        times.append(end - start)
    clear(client, name)
    return times


def celery_reaction(cluster: Cluster, ns: str, url: str, bursts: int) -> list[float]:
    """A runtime celery pool at zero and a burst of 100 tasks sent by Celery's own client
    (send_task, spread over Celery's priorities): time to the Deployment's change."""
    name = "creact"
    cluster.apply(yaml.safe_dump_all([
        task_queue(name, url, protocol="celery"),
        worker_pool(name, [name], {"minReplicas": 0, "maxReplicas": 10,
                                   "scaleToZeroAfterSeconds": 0,
                                   "scaleDown": {"stabilizationSeconds": 0}},
                    app="bench.peers.celery_app:app", runtime="celery"),
    ]), namespace=ns)

    def metrics_available() -> bool:
        status = (cluster.get("workerpool", name, ns) or {}).get("status") or {}
        return any(c.get("type") == "MetricsAvailable" and c.get("status") == "True"
                   for c in status.get("conditions", []))

    # the first heartbeat window has passed within the minute
    wait_for("the celery pool's metrics available", metrics_available, 60)
    client = redis.Redis.from_url(url)
    producer = Celery("bench-client", broker=url)
    lists = celery_wire.priority_lists(name)
    times = []
    try:
        for _ in range(bursts):
            client.delete(*lists, celery_wire.UNACKED)
            wait_replicas(cluster, ns, name, lambda r: r == 0)
            time.sleep(2.5)  # a whole poll period, so the burst lands at a random phase
            start = time.perf_counter()
            for i in range(BURST_TASKS):
                producer.send_task("bench.noop", queue=name, priority=i % 10)
            end = wait_replicas(cluster, ns, name, lambda r: r > 0)
            times.append(end - start)
    finally:
        client.delete(*lists, celery_wire.UNACKED)
        producer.close()
    return times


def container_start(cluster: Cluster, node: RealNode, ns: str, url: str, bursts: int
                    ) -> dict[str, list[float]]:
    """What a user waits for: from a burst on a pool at zero to the first task done in a
    worker container that did not exist before (real containers on the real node), beside
    the time to the Deployment's change. The generic worker image runs the no-op task,
    given to it as a ConfigMap (spec.code), with the default 2 s poll."""
    cluster.kubectl("create", "configmap", "bench-code",
                    f"--from-file={Path(__file__).parent / 'peers' / 'taskfleet_app.py'}",
                    namespace=ns)
    name = "cold"
    pool = worker_pool(name, [name], {"minReplicas": 0, "maxReplicas": 3,
                                      "scaleToZeroAfterSeconds": 0,
                                      "scaleDown": {"stabilizationSeconds": 0}},
                       app="taskfleet_app:app", code={"configMap": "bench-code"},
                       image=WORKER_IMAGE,
                       pool="threads", terminationGracePeriodSeconds=10)
    pool["spec"].pop("tolerations")
    node.place_pool(pool["spec"])
    cluster.apply(yaml.safe_dump_all([task_queue(name, url), pool]), namespace=ns)
    app = App(url)
    out: dict[str, list[float]] = {"deployment_s": [], "first_task_s": []}
    for _ in range(bursts):
        wait_for("the pool back at zero", lambda: not (
            cluster.list("pods", ns, f"app.kubernetes.io/instance={name}")
            or (cluster.get("deployment", name, ns) or {}).get("spec", {}).get("replicas")),
            120)
        time.sleep(2.5)  # a whole poll period, so the burst lands at a random phase
        start, wall = time.perf_counter(), time.time()
        results = app.send_many("bench.noop", [()] * COLD_BURST_TASKS, queue=name)
        out["deployment_s"].append(wait_replicas(cluster, ns, name, lambda r: r > 0) - start)
        for r in results:
            r.get(timeout=120)
        done = [ResultRecord.decode(app.redis.lindex(keys.result_key(r.id), 0)).date_done
                for r in results]
        out["first_task_s"].append(min(done) - wall)
    return out


def cycle(url: str, pools: int) -> dict[str, float]:
    """One observation pass over N queues and N decisions, in this process."""
    client = redis.Redis.from_url(url, decode_responses=True)
    app = App(url)
    for i in range(pools):
        app.send_many("bench.noop", [()] * (i % 7), queue=f"q{i}")
    queues = [TaskQueue("bench", f"tq{i}", "", 1, f"q{i}", RedisRef(url=url))
              for i in range(pools)]
    directory = RedisDirectory(lambda ns, ref: "")
    read_queues(directory, queues)  # connect, load scripts
    client.config_resetstat()
    rounds = 20
    wall = []
    for _ in range(rounds):
        start = time.perf_counter()
        readings = read_queues(directory, queues)
        wall.append(time.perf_counter() - start)
    stats = client.info("commandstats")
    redis_usec = sum(v["usec"] for k, v in stats.items() if k.startswith("cmdstat_evalsha"))
    policy = ScalingPolicy(max_replicas=20)
    start = time.perf_counter()
    for tq in queues:
        s = readings[tq.key].stats
        assert s is not None
        decide(policy, Observation(time.time(), 1, s.ready, s.in_flight, s.oldest_age_seconds),
               History())
    decide_ms = (time.perf_counter() - start) * 1000
    return {"queues": pools, "redis_ms_per_cycle": round(redis_usec / rounds / 1000, 2),
            "observe_wall_ms_median": round(statistics.median(wall) * 1000, 2),
            "decide_ms_for_all_pools": round(decide_ms, 2)}


def operator_footprint(cluster: Cluster, ns: str, url: str, pools: int,
                       tmp: Path) -> dict[str, float]:
    docs: list[dict[str, Any]] = []
    for i in range(pools):
        docs.append(task_queue(f"tq{i}", url, queueName=f"q{i}"))
        docs.append(worker_pool(f"wp{i}", [f"tq{i}"], {"minReplicas": 0, "maxReplicas": 3},
                                app=BENCH_APP))
    cluster.apply(yaml.safe_dump_all(docs), namespace=ns)
    op = OperatorProcess(cluster, ns, tmp / "operator-footprint.log").start()
    try:
        start = time.monotonic()
        wait_for("the operator's every Deployment",
                 lambda: len(cluster.list("deployments", ns)) >= pools, 600, interval=2)
        converge = time.monotonic() - start
        # Steady state: the operator's start (statuses of every object) and the
        # controller-manager's work on 1,000 new Deployments are over when nothing
        # changes for 15 s.
        wait_quiet(cluster, ns, 15, 900 - converge)
        assert op.process is not None
        pid = op.process.pid
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(30)
        cpu1, t1 = cpu_seconds(pid), time.monotonic()
        return {"pools": pools, "converge_seconds": round(converge, 1),
                "rss_mb": round(rss_mb(pid), 1),
                "steady_cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 1)}
    finally:
        op.stop()


def summarize(what: str, times: list[float]) -> dict[str, float]:
    """Median, p95 and max of repeated timings, printed as they come."""
    print(f"{what}: median {statistics.median(times):.3f}s p95 {pct(times, 95):.3f}s over "
          f"{len(times)} bursts", flush=True)
    return {"median_s": round(statistics.median(times), 3), "p95_s": round(pct(times, 95), 3),
            "max_s": round(max(times), 3), "samples": len(times)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument("--pools", type=int, default=1000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--celery-only", action="store_true",
                        help="only the reaction to a Celery burst (a runtime celery pool)")
    args = parser.parse_args()
    bursts, pools = (3, 50) if args.quick else (args.bursts, args.pools)
    tmp = Path("/tmp") / f"taskfleet-bench-{int(time.time())}"
    tmp.mkdir(parents=True, exist_ok=True)
    server = RedisServer().start()
    cluster = Cluster(name="tf-bench").up()
    result: dict[str, Any] = {
        "parameters": {"bursts": bursts, "burst_tasks": BURST_TASKS,
                       "cold_burst_tasks": COLD_BURST_TASKS,
                       "poll_seconds": ScalingPolicy().poll_seconds, "pools": pools,
                       "machine_cpus": os.cpu_count()},
        "keda_documented_defaults": KEDA}
    load = LoadWatch().start()
    try:
        crds_applied(cluster)
        cluster.kubectl("create", "namespace", "bench")
        op = OperatorProcess(cluster, "bench", tmp / "operator.log").start()
        try:
            result["reaction_celery_burst_from_zero"] = summarize(
                "reaction to a Celery burst, from zero",
                celery_reaction(cluster, "bench", server.url, bursts))
            if args.celery_only:
                result["parameters"]["machine"] = load.summary()
                return _celery_table(result, args.json)
            for minimum, label in ((0, "from_zero"), (1, "from_one")):
                times = reaction(cluster, "bench", server.url, bursts, minimum)
                result[f"reaction_{label}"] = summarize(f"reaction {label}", times)
            node = RealNode(cluster)
            for archive in oci_archives().values():
                node.load_image(archive)
            cold = container_start(cluster, node, "bench", server.url, bursts)
            for key, label in (("deployment_s", "deployment_change"),
                               ("first_task_s", "first_task_in_new_container")):
                result[f"from_zero_{label}"] = summarize(f"from zero, {label}", cold[key])
        finally:
            op.stop()
        result["cycle"] = cycle(server.url, pools)
        print(f"cycle: {result['cycle']}", flush=True)
        redis.Redis.from_url(server.url).flushall()  # the footprint's pools are idle
        cluster.kubectl("create", "namespace", "footprint")
        result["operator"] = operator_footprint(cluster, "footprint", server.url, pools, tmp)
        print(f"operator: {result['operator']}", flush=True)
    finally:
        load.stop()
        result["parameters"]["machine"] = load.summary()
        cluster.down()
        server.close()

    r0, r1 = result["reaction_from_zero"], result["reaction_from_one"]
    print()
    print(f"{'':<34}{'taskfleet':>12}   {'KEDA + HPA defaults'}")
    print(f"{'reaction from zero, p95':<34}{r0['p95_s']:>11.2f}s   up to 30 s (poll)")
    print(f"{'reaction from one, p95':<34}{r1['p95_s']:>11.2f}s   up to 30 s + 15 s (HPA)")
    rc = result["reaction_celery_burst_from_zero"]
    print(f"{'Celery burst, runtime celery, p95':<34}{rc['p95_s']:>11.2f}s   up to 30 s (poll)")
    f = result["from_zero_first_task_in_new_container"]
    print(f"{'first task in a new container, p95':<34}{f['p95_s']:>11.2f}s   "
          "up to 30 s (poll) + 15 s (HPA) + pod start")
    c, o = result["cycle"], result["operator"]
    print(f"{'Redis time, ' + str(c['queues']) + ' queues/cycle':<34}"
          f"{c['redis_ms_per_cycle']:>10.1f}ms   one list read per trigger")
    print(f"{'decide() for all pools':<34}{c['decide_ms_for_all_pools']:>10.1f}ms")
    print(f"{'operator RSS, ' + str(o['pools']) + ' pools':<34}{o['rss_mb']:>10.0f}MB")
    print(f"{'operator CPU at steady state':<34}{o['steady_cpu_percent']:>11.1f}%")
    write_json(args.json, result)
    return 0


def _celery_table(result: dict[str, Any], path: Path | None) -> int:
    rc = result["reaction_celery_burst_from_zero"]
    print()
    print(f"{'':<34}{'taskfleet':>12}   {'KEDA + HPA defaults'}")
    print(f"{'Celery burst, runtime celery, p95':<34}{rc['p95_s']:>11.2f}s   up to 30 s (poll)")
    write_json(path, result)
    return 0


if __name__ == "__main__":
    # SIGTERM (a CI timeout, kill) still runs the cleanup in main's finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    raise SystemExit(main())
