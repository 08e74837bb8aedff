"""Scale-out on a Redis Cluster (three masters, a replica each) against one redis-server.

Both in the same run, on the same machine:

1. Throughput: 12 queues spread over the slots, 4 worker processes (inline pool),
   each serving 3 of them; N no-op tasks enqueued evenly, timed until every queue is
   empty and nothing is in flight. Each master's share of the commands and its CPU
   seconds show how the load spread.
2. The operator's observation cycle for 1,000 queues (``read_queues``: one pipelined
   round trip per Redis node), median of 20 passes.

On a 2-core machine the cluster's six redis-server processes, the workers and the
producer share two cores, so the ratio shows the overhead and the spread, not the
gain more machines would bring.

    python bench/cluster.py [--json PATH] [--tasks N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import redis

from bench.report import write_json
from taskfleet import App, queue_stats
from taskfleet.connection import Client, connect
from taskfleet_operator.model import RedisRef, TaskQueue
from taskfleet_operator.observe import RedisDirectory, read_queues
from testenv.processes import WorkerProcess, stop_all
from testenv.redis_cluster import RedisClusterServers
from testenv.redis_server import RedisServer

QUEUES = [f"spread-{i}" for i in range(12)]
WORKERS = 4
OBSERVE_PASSES = 20


def _nodes(ports: list[int]) -> list[redis.Redis]:
    return [redis.Redis(port=p, decode_responses=True) for p in ports]


def _node_figures(nodes: list[redis.Redis]) -> list[dict[str, float]]:
    out = []
    for n in nodes:
        info = n.info()
        calls = sum(v["calls"] for v in n.info("commandstats").values())
        out.append({"port": n.connection_pool.connection_kwargs["port"],
                    "cpu_seconds": round(info["used_cpu_user"] + info["used_cpu_sys"], 2),
                    "commands": calls})
    return out


def throughput(url: str, nodes: list[redis.Redis], n: int) -> dict[str, Any]:
    app = App(url)
    client: Client = app.redis
    per_queue = n // len(QUEUES)
    step = len(QUEUES) // WORKERS
    workers = [WorkerProcess(url, "bench.peers.taskfleet_app:app",
                             QUEUES[i * step:(i + 1) * step], pool="inline",
                             options=["--log-level", "WARNING"]).start()
               for i in range(WORKERS)]
    try:
        def drained() -> bool:
            stats = queue_stats(client, QUEUES)
            return all(s.ready == 0 and s.in_flight == 0 for s in stats.values())

        app.send_many("bench.noop", [()] * 200, queue=QUEUES[0])  # warm up
        time.sleep(2)
        while not drained():
            time.sleep(0.05)
        for node in nodes:
            node.config_resetstat()
        before = {f["port"]: f["cpu_seconds"] for f in _node_figures(nodes)}
        started = time.perf_counter()
        for q in QUEUES:
            app.send_many("bench.noop", [()] * per_queue, queue=q)
        while not drained():
            time.sleep(0.005)
        seconds = time.perf_counter() - started
        spread = [{**f, "cpu_seconds": round(f["cpu_seconds"] - before[f["port"]], 2)}
                  for f in _node_figures(nodes)]
    finally:
        stop_all((w.process for w in workers if w.process is not None), timeout=30)
    return {"tasks": per_queue * len(QUEUES), "seconds": round(seconds, 2),
            "tasks_per_second": round(per_queue * len(QUEUES) / seconds), "masters": spread}


def observe_cycle(url: str, count: int = 1000) -> dict[str, float]:
    app = App(url)
    for i in range(0, count, 10):
        app.send_many("bench.noop", [()] * (i % 7), queue=f"q{i}")
    queues = [TaskQueue("bench", f"tq{i}", "", 1, f"q{i}", RedisRef(url=url))
              for i in range(count)]
    directory = RedisDirectory(lambda ns, ref: "")
    read_queues(directory, queues)  # connect, load the script
    wall = []
    for _ in range(OBSERVE_PASSES):
        started = time.perf_counter()
        readings = read_queues(directory, queues)
        wall.append(time.perf_counter() - started)
        assert all(r.stats is not None for r in readings.values())
    return {"queues": count, "observe_wall_ms_median": round(statistics.median(wall) * 1000, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--tasks", type=int, default=24_000)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "parameters": {"tasks": args.tasks, "queues": len(QUEUES), "workers": WORKERS,
                       "observe_passes": OBSERVE_PASSES, "machine_cpus": os.cpu_count()}}
    single = RedisServer().start()
    try:
        results["single"] = {"throughput": throughput(single.url, _nodes([single.port]),
                                                      args.tasks),
                             "observe": observe_cycle(single.url)}
    finally:
        single.close()
    servers = RedisClusterServers().start()
    try:
        masters = _nodes(servers.master_ports())
        results["cluster"] = {"throughput": throughput(servers.url, masters, args.tasks)}
        servers.flushall()
        results["cluster"]["observe"] = observe_cycle(servers.url)
        client = connect(servers.url)
        results["cluster"]["queues_per_master"] = {
            str(p): sum(1 for q in QUEUES
                        if client.get_node_from_key(f"tf:{{{q}}}:messages").port == p)  # type: ignore[union-attr]
            for p in servers.master_ports()}
    finally:
        servers.close()
    s, c = results["single"], results["cluster"]
    results["ratios"] = {
        "cluster_vs_single_tasks_per_second": round(
            c["throughput"]["tasks_per_second"] / s["throughput"]["tasks_per_second"], 2),
        "cluster_vs_single_observe_ms": round(
            c["observe"]["observe_wall_ms_median"] / s["observe"]["observe_wall_ms_median"], 2),
    }
    print(f"{'':<10}{'tasks/s':>10}{'observe 1,000 queues (ms)':>28}")
    for name in ("single", "cluster"):
        r = results[name]
        print(f"{name:<10}{r['throughput']['tasks_per_second']:>10,}"
              f"{r['observe']['observe_wall_ms_median']:>28}")
    print("\ncluster masters (port, cpu s, commands):",
          [(m["port"], m["cpu_seconds"], m["commands"]) for m in c["throughput"]["masters"]])
    print("ratios:", results["ratios"])
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
