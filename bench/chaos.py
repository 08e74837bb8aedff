"""Chaos run: tasks under faults, every execution counted.

Each phase has its own broker redis-server, its own ledger (a second Redis the
faults never touch, bench/peers/chaos_tasks.py) and worker "pods": process
groups of ``taskfleet worker --pool processes --concurrency 2`` with a 2 s task
lease. Each task records its execution in the ledger, then sleeps 10-50 ms.
After the backlog drains, a task index whose send Redis acknowledged and that
never ran is lost; runs beyond the first are duplicates. A send that failed
(and was sent again, as a producer would) is counted apart, not as lost.

1. worker_kills: a burst, then at random intervals a pod is SIGKILLed (node
   loss) or SIGTERMed (scale-down: it must drain and exit 0) while a
   replacement starts. Duplicates must stay within the tasks the killed pods
   held.
2. redis_restart_always / redis_restart_everysec: the broker SIGKILLed and
   restarted on its port and data directory (append-only file) while
   producers keep sending.
3. redis_pause: the broker frozen (SIGSTOP) for longer than the lease.
4. partition: one pod in a network namespace of its own, cut off by taking its
   veth link down for longer than the lease.
5. control_plane (not with --short): on the local cluster, the API server and
   etcd killed and restarted during a burst, then the active operator killed
   during a scale-up with a standby running, while a TaskQueue's every-minute
   schedule runs; each tick must be sent exactly once. The two operators run
   with the Helm chart's default leader lease (leaderLeaseSeconds), so the
   standby's takeover is what an installation sees.

The phases live in bench/faults/, a module per fault family. Each phase's faults
come from random.Random(f"{seed}:{phase}"), so a run can be
replayed (the interleaving with the workers, of course, differs).

    python bench/chaos.py [--json PATH] [--short] [--seed N] [--logs DIR]
                          [--no-control-plane] [--phases a,b]

A full run (`make chaos`, bench/results/chaos.json, which docs/guarantees-and-chaos.md quotes) takes
about 5 minutes on 2 cores, 3 of them in the control-plane phase; --short about a
minute. The JSON keeps its "seconds".
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.faults.broker import redis_pause, redis_restart
from bench.faults.control_plane import control_plane
from bench.faults.partition import partition
from bench.faults.plan import CONCURRENCY, FULL, LEASE_SECONDS, SHORT, TASK_MS, Plan
from bench.faults.summary import print_table, promises, summary_line
from bench.faults.worker_pods import worker_faults
from bench.report import LoadWatch, write_json

PHASES = ("worker_kills", "redis_restart_always", "redis_restart_everysec", "redis_pause",
          "partition", "control_plane")


def run_phases(plan: Plan, seed: int, logs: Path, only: Sequence[str]) -> dict[str, Any]:
    steps: dict[str, Callable[[random.Random], dict[str, Any]]] = {
        "worker_kills": lambda rng: worker_faults(plan, rng, logs),
        "redis_restart_always": lambda rng: redis_restart(plan, rng, logs, "always"),
        "redis_restart_everysec": lambda rng: redis_restart(plan, rng, logs, "everysec"),
        "redis_pause": lambda rng: redis_pause(plan, rng, logs),
        "partition": lambda rng: partition(plan, rng, logs),
        "control_plane": lambda rng: control_plane(rng, logs),
    }
    phases: dict[str, Any] = {}
    for name, step in steps.items():
        if name not in only or (name == "control_plane" and not plan.control_plane):
            continue
        print(f"{name} ...", flush=True)
        started = time.monotonic()
        # a generator per phase: how many faults one phase drew leaves the next one's alone
        phases[name] = step(random.Random(f"{seed}:{name}"))
        print(f"{name}: {summary_line(phases[name])} ({time.monotonic() - started:.0f}s)",
              flush=True)
    return phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--short", action="store_true",
                        help="1,000 tasks in about a minute, without the control plane")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--logs", type=Path, default=None,
                        help="where the pods' and operators' logs go (default: a new /tmp dir)")
    parser.add_argument("--no-control-plane", action="store_true")
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated, of {', '.join(PHASES)} (default: all)")
    args = parser.parse_args()
    only = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = sorted(set(only) - set(PHASES))
    if unknown:
        parser.error(f"--phases: unknown {', '.join(unknown)}; choose from {', '.join(PHASES)}")
    plan = SHORT if args.short else FULL
    if args.no_control_plane:
        plan = dataclasses.replace(plan, control_plane=False)
    logs = args.logs or Path(tempfile.mkdtemp(prefix="taskfleet-chaos-"))
    logs.mkdir(parents=True, exist_ok=True)
    print(f"chaos run: {plan.total_tasks} tasks, seed {args.seed}, logs in {logs}", flush=True)
    started = time.monotonic()
    with LoadWatch() as load:
        phases = run_phases(plan, args.seed, logs, only)
    if not plan.control_plane:
        phases["control_plane"] = {"skipped": "--short" if args.short else "--no-control-plane"}
    results: dict[str, Any] = {
        "parameters": {"seed": args.seed, "short": args.short, "phases": only,
                       "tasks": sum(v.get("tasks", 0) for v in phases.values()),
                       "task_lease_seconds": LEASE_SECONDS, "task_ms": list(TASK_MS),
                       "pool": "processes", "concurrency_per_pod": CONCURRENCY,
                       **dataclasses.asdict(plan),
                       "machine_cpus": os.cpu_count(), "machine": load.summary()},
        "phases": phases,
        "seconds": round(time.monotonic() - started, 1)}
    results["promises"] = promises(phases)
    print_table(results)
    write_json(args.json, results)
    return 0 if all(results["promises"].values()) else 1


if __name__ == "__main__":
    # SIGTERM (a CI timeout, kill) still runs the cleanup in the finally blocks.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    raise SystemExit(main())
