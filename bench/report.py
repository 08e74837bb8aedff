"""What every benchmark does with its figures at the end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: Path | None, results: dict[str, Any]) -> None:
    """Write the figures to ``path`` (when given) and say where."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")


def _n(value: float) -> str:
    return f"{value:,.0f}"


def throughput_table(results: dict[str, Any]) -> str:
    """The README's peer table, from bench/throughput.py's JSON (a test keeps them equal)."""
    widths = sorted(int(w) for w in next(iter(results["systems"].values()))["processes"])
    head = " | ".join(f"{w} process{'es' if w > 1 else ''}: tasks/s (range), CPU/task"
                      for w in widths)
    lines = [f"| system | delivery | {head} | batch enqueue/s |",
             "|---" * (3 + len(widths)) + "|"]
    for name, row in results["systems"].items():
        cells = " | ".join(
            f"{_n(f['median'])} ({_n(f['min'])}-{_n(f['max'])}), "
            f"{_n(f['worker_cpu_us_per_task'])} µs"
            for f in (row["processes"][str(w)] for w in widths))
        strong = "**" if name == "taskfleet" else ""
        lines.append(f"| {strong}{name}{strong} | {row['guarantee']} | {cells} | "
                     f"{_n(row['enqueue_per_second'])} |")
    return "\n".join(lines)


def ratios_table(results: dict[str, Any]) -> str:
    """The README's list of ratios, from the same JSON."""
    return "\n".join(f"| {name} | {value:.2f}x |" for name, value in results["ratios"].items())


def pools_table(results: dict[str, Any]) -> str:
    """The README's table of one operator managing many pools, from bench/pools.py's JSON."""
    c, o, m = results["cycle"], results["operator"], results["memory"]
    r = o["reaction_among_all"]
    rows = [
        (f"Redis time of one read of all {_n(c['queues'])} queues", f"{c['redis_ms_per_cycle']} ms",
         "100 ms"),
        ("Redis time per second at steady state (pools at rest)",
         f"{o['steady_redis_ms_per_second']} ms", ""),
        (f"operator memory (RSS) with {_n(o['pools'])} pools", f"{_n(o['rss_mb'])} MB", "500 MB"),
        ("memory per pool (over the operator with none)", f"{o['kb_per_pool']} KB", ""),
        ("of which the registry's parsed objects", f"{m['registry_kb_per_pool']} KB", ""),
        ("of which the controller's state (history, status, readings, metrics)",
         f"{m['controller_kb_per_pool']} KB", ""),
        ("a Deployment as the Kubernetes client's models (the operator keeps none)",
         f"{m['deployment_model_kb_per_pool']} KB", ""),
        ("operator CPU at steady state", f"{o['steady_cpu_percent']} % of a core", "10 %"),
        (f"a burst on one pool among them: to its Deployment's change, p95 ({r['samples']} "
         "bursts)", f"{r['p95_s']} s", f"as alone: {o['reaction_alone']['p95_s']} s"),
        ("every Deployment applied after the objects are created",
         f"{_n(o['converge_seconds'])} s", ""),
    ]
    lines = ["| | measured | goal |", "|---|---|---|"]
    lines += [f"| {what} | {value} | {goal} |" for what, value, goal in rows]
    return "\n".join(lines)
