"""What every benchmark does with its figures at the end, and the documentation's figures
made from them.

Each table the documentation quotes is a block between two markers, made here from one
JSON file in bench/results/, on the page PAGES names (README.md or a page of docs/);
each figure quoted in prose is a sentence made here too, with the page it is on.
tests/unit/test_readme_figures.py fails when a page and the JSON files differ.

    python -m bench.report            # print every block and sentence, with its page
    python -m bench.report --check    # exit 1 when a page differs from the JSON files
    python -m bench.report --write    # rewrite the pages' blocks from the JSON files
                                      # (sentences are printed for a hand edit)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NamedTuple

import yaml

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = "README.md"
BENCHMARKS = "docs/benchmarks.md"
GUARANTEES = "docs/guarantees-and-chaos.md"
REDIS_MODES = "docs/redis-modes.md"
CELERY_AND_RQ = "docs/celery-and-rq.md"
DEVELOPMENT = "docs/development.md"
TIMES = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"


class Prose(NamedTuple):
    """A sentence with a figure, and the page that quotes it."""

    page: str
    text: str


class LoadWatch:
    """The machine's 1-minute load average, sampled while a benchmark runs: the machine
    is shared, and a figure taken while other work ran says so in its JSON."""

    def __init__(self, every_seconds: float = 5.0) -> None:
        self.every_seconds = every_seconds
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def start(self) -> LoadWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> LoadWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _sample(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.every_seconds):
                return

    def summary(self) -> dict[str, Any]:
        ordered = sorted(self.samples) or [os.getloadavg()[0]]
        return {"cpus": os.cpu_count(),
                "load_average_median": round(statistics.median(ordered), 1),
                "load_average_max": round(ordered[-1], 1)}


def load_text(machine: dict[str, Any]) -> str:
    """The machine a run had, for a caption."""
    return (f"{machine['cpus']} cores, their 1-minute load average "
            f"{machine['load_average_median']:g} (median) and at most "
            f"{machine['load_average_max']:g} during the run")


def write_json(path: Path | None, results: dict[str, Any]) -> None:
    """Write the figures to ``path`` (when given) and say where."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {path}")


def _n(value: float) -> str:
    return f"{value:,.0f}"


def _s(value: float | None, digits: int = 2) -> str:
    """Seconds, or what a timed-out wait recorded."""
    return "not within the wait" if value is None else f"{value:.{digits}f} s"


def _span(values: Iterable[float], digits: int = 1, unit: str = " s") -> str:
    """``lo`` to ``hi`` with an en dash (or one value when they round the same)."""
    ordered = sorted(values)
    lo, hi = f"{ordered[0]:,.{digits}f}", f"{ordered[-1]:,.{digits}f}"
    return f"{lo}{unit}" if lo == hi else f"{lo}{DASH}{hi}{unit}"


# -- where each file comes from -----------------------------------------------------------

SOURCES: dict[str, tuple[str, str]] = {
    "throughput.json": ("bench", "bench/throughput.py"),
    "autoscale.json": ("bench", "bench/autoscale.py"),
    "pools.json": ("bench", "bench/pools.py"),
    "failover.json": ("bench", "bench/failover.py"),
    "cluster.json": ("bench", "bench/cluster.py"),
    "chaos.json": ("chaos", "bench/chaos.py"),
}
"""Every file in bench/results/: the make target that writes it and the script it runs."""


def source_line(name: str) -> str:
    target, script = SOURCES[name]
    return f"*`make {target}` wrote this (`{script}`, `bench/results/{name}`).*"


# -- throughput.json ----------------------------------------------------------------------


def throughput_table(results: dict[str, Any]) -> str:
    """The peer table of docs/benchmarks.md, from bench/throughput.py's JSON."""
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
    """The list of ratios under it, from the same JSON."""
    lines = ["| ratio (medians) | |", "|---|---|"]
    lines += [f"| {name} | {value:.2f}x |" for name, value in results["ratios"].items()]
    return "\n".join(lines)


def throughput_block(results: dict[str, Any]) -> str:
    return "\n\n".join([throughput_table(results), ratios_table(results),
                        source_line("throughput.json")])


def throughput_sentences(results: dict[str, Any]) -> list[Prose]:
    return [Prose(BENCHMARKS,
                  f"enqueues N tasks ({_n(results['tasks'])} here) and times until a shared "
                  f"counter says every body ran; the {results['rounds']} rounds are interleaved")]


# -- pools.json ---------------------------------------------------------------------------


def pools_table(results: dict[str, Any]) -> str:
    """The table of one operator managing many pools, from bench/pools.py's JSON."""
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


def pools_block(results: dict[str, Any]) -> str:
    return "\n\n".join([pools_table(results), source_line("pools.json")])


# -- autoscale.json -----------------------------------------------------------------------


def autoscale_table(results: dict[str, Any]) -> str:
    """The comparison with KEDA (the README's), from bench/autoscale.py's JSON."""
    p, keda = results["parameters"], results["keda_documented_defaults"]
    poll, sync = keda["activation_poll_seconds"], keda["hpa_sync_seconds"]
    zero, one = results["reaction_from_zero"], results["reaction_from_one"]
    first, c = results["from_zero_first_task_in_new_container"], results["cycle"]
    rows = [
        ("reaction to a burst on an idle pool (to the Deployment's new replica count)",
         f"up to {poll} s (KEDA poll) + {sync} s (HPA sync), by documented defaults",
         f"p95 **{zero['p95_s']:.2f} s** from zero, **{one['p95_s']:.2f} s** from one "
         f"({zero['samples']} bursts of {p['burst_tasks']} tasks each, default "
         f"{p['poll_seconds']:g} s poll)"),
        ("burst on a pool at zero to the first task done in a new container",
         f"{poll} s + {sync} s + pod start",
         f"p95 **{first['p95_s']:.2f} s**, median {first['median_s']:.2f} s "
         f"({first['samples']} bursts; real containers on the real node)"),
        ("counts running tasks", "no: a busy pool can go to zero (keda#356)",
         "ready + in flight, never zero while either is > 0"),
        ("which pods go on scale-down", "any, mid-task (keda#2900, #3674, #6719)",
         "idle first (pod-deletion-cost), busy ones drain"),
        ("Redis unreachable", "can collapse to zero (keda#1850)",
         "holds the count (or a fallback), MetricsAvailable=False"),
        (f"reading {_n(c['queues'])} queues", "one list read per trigger",
         f"one pipelined round trip: **{c['redis_ms_per_cycle']:g} ms** of Redis time"),
        ("lost tasks on worker kill", "possible between BRPOP and `unacked` (celery#7950)",
         "none: take and lease are one script"),
        ("cron exactly once", "Celery Beat: one process, duplicates with two",
         "the operator (or several `taskfleet beat`), exactly once per tick"),
    ]
    lines = ["| | KEDA (Redis scaler) + HPA + Celery | taskfleet |", "|---|---|---|"]
    lines += [f"| {what} | {keda_side} | {ours} |" for what, keda_side, ours in rows]
    return "\n".join(lines)


def autoscale_block(results: dict[str, Any]) -> str:
    caption = f"On {load_text(results['parameters']['machine'])}."
    return "\n\n".join([autoscale_table(results), caption, source_line("autoscale.json")])


def autoscale_sentences(results: dict[str, Any]) -> list[Prose]:
    p, keda = results["parameters"], results["keda_documented_defaults"]
    first, rc = results["from_zero_first_task_in_new_container"], \
        results["reaction_celery_burst_from_zero"]
    demo = (f"`make bench` times the same path, to the first task done in a new container, "
            f"on a {p['machine']['cpus']}-core machine: median {first['median_s']:.2f} s, p95 "
            f"{first['p95_s']:.2f} s over {first['samples']} bursts; "
            "`bench/results/autoscale.json`")
    celery = (f"Reaction: a burst of {p['burst_tasks']} tasks sent by a Celery client "
              f"(`send_task`, priorities 0-9) takes a `runtime: celery` pool's Deployment from "
              f"zero replicas to one in p95 **{rc['p95_s']:.2f} s** (median "
              f"{rc['median_s']:.2f} s, {rc['samples']} bursts, default "
              f"{p['poll_seconds']:g} s poll; `make bench`, `bench/results/autoscale.json`), "
              f"where KEDA's documented defaults allow up to "
              f"{keda['activation_poll_seconds']} s.")
    return [Prose(DEVELOPMENT, demo), Prose(CELERY_AND_RQ, celery)]


# -- chaos.json ---------------------------------------------------------------------------

CHAOS_PHASES = {
    "worker_kills": "worker pods killed",
    "redis_restart_always": "Redis crash, `appendfsync always`",
    "redis_restart_everysec": "Redis crash, `appendfsync everysec`",
    "redis_pause": "Redis paused",
    "partition": "network partition",
}


def _scale_downs(phase: dict[str, Any]) -> int:
    return sum(1 for s in phase["sigterms"] if s["reason"] != "end of phase")


def _chaos_fault(name: str, phase: dict[str, Any], lease: float) -> str:
    if name == "worker_kills":
        return (f"{len(phase['sigkills'])} pods SIGKILLed and {_scale_downs(phase)} SIGTERMed "
                f"(scale-down) at random while replacements start")
    if name.startswith("redis_restart"):
        return (f"redis-server SIGKILLed with {phase['in_flight_at_crash']} tasks in flight, "
                f"restarted on its append-only file: down {_s(phase['down_s'])}")
    if name == "redis_pause":
        return (f"redis-server stopped (SIGSTOP) {_s(phase['paused_s'])}, past the {lease:g} s "
                f"lease, {phase['in_flight_at_pause']} tasks in flight")
    if name == "partition":
        return (f"one pod's link down {_s(phase['link_down_s'])} (its own network namespace), "
                f"{phase['held_at_cut']['held']} tasks held")
    raise KeyError(name)


def _chaos_after(name: str, phase: dict[str, Any]) -> str:
    if name == "worker_kills":
        return f"backlog done {_s(phase['drain_after_last_fault_s'])} after the last fault"
    if name == "partition":
        return (f"the cut-off pod took a task {_s(phase['cut_off_pod_first_task_after_link_up_s'])}"
                " after the link came back")
    return "every pod took tasks again" if phase["pods_resumed"] else "a pod took no task again"


def _sigterm_codes(phases: dict[str, Any]) -> list[int]:
    return [c for p in phases.values() if isinstance(p, dict)
            for c in p.get("sigterm_exit_codes", [])]


def chaos_table(results: dict[str, Any]) -> str:
    """The table of faults, from bench/chaos.py's JSON."""
    params, phases = results["parameters"], results["phases"]
    lease = params["task_lease_seconds"]
    lines = ["| phase | fault | tasks | lost | duplicates (bound) | then |",
             "|---|---|---|---|---|---|"]
    for name, label in CHAOS_PHASES.items():
        phase = phases.get(name)
        if phase is None:
            continue
        if "skipped" in phase:
            lines.append(f"| {label} | skipped: {phase['skipped']} | | | | |")
            continue
        bound = phase.get("duplicate_bound")
        dup = f"{phase['duplicates']}" + ("" if bound is None else f" ({bound})")
        lines.append(f"| {label} | {_chaos_fault(name, phase, lease)} | {_n(phase['sent'])} | "
                     f"{phase['lost']} | {dup} | {_chaos_after(name, phase)} |")
    cp = phases.get("control_plane", {})
    if "skipped" in cp:
        lines.append(f"| control plane | skipped: {cp['skipped']} | | | | |")
    elif cp:
        a, b, s = cp["api_server_restart"], cp["operator_failover"], cp["schedule"]
        lines.append(
            f"| API server and etcd | both SIGKILLed during a burst, down {_s(a['api_down_s'])}"
            f" | | | | the Deployment at its target ({a['target']} replicas) "
            f"{_s(a['replicas_at_target_after_api_back_s'])} after the API server answered "
            f"again; {a['target']} pods Ready (on kwok's fake nodes) "
            f"{_s(a['ready_replicas_at_target_after_api_back_s'])} after |")
        lines.append(
            f"| operator failover | the active operator SIGKILLed mid scale-up (at "
            f"{b['replicas_when_killed']} of {b['target']} replicas), a standby running; "
            f"leader lease {cp['leader_lease_seconds']:g} s | | | | the standby had the "
            f"Deployment at {b['target']} {_s(b['replicas_at_target_after_kill_s'])} after the "
            f"kill, {b['target']} pods Ready {_s(b['ready_replicas_at_target_after_kill_s'])} "
            f"after |")
        sent = sum(s["tasks_per_tick"].values())
        late = max(s["sent_after_tick_s"].values(), default=0.0)
        once = "each tick sent once" if s["exactly_once"] else "NOT each tick sent once"
        lines.append(
            f"| schedule | an every-minute schedule through both faults | "
            f"{s['ticks_expected']} ticks | {s['ticks_expected'] - sent} | "
            f"{s['tasks'] - sent} | {once}, at most {_s(late, 1)} after its time |")
    codes = _sigterm_codes(phases)
    exits = ("every exit code 0" if all(c == 0 for c in codes)
             else f"exit codes {sorted(set(codes))}")
    caption = (
        f"{_n(params['tasks'])} tasks in all ({_n(params['worker_tasks'])} through the worker "
        f"kills, {_n(params['paced_tasks'])} sent at a steady pace through each Redis or "
        f"network fault), task leases of {lease:g} s, tasks of {params['task_ms'][0]}"
        f"{DASH}{params['task_ms'][1]} ms on pods of `taskfleet worker --pool "
        f"{params['pool']} --concurrency {params['concurrency_per_pod']}`, seed "
        f"{params['seed']}, {load_text(params['machine'])}; {len(codes)} SIGTERMs in all (the "
        f"scale-downs and the pods stopped at each phase's end), {exits}. The whole run took "
        f"{results['seconds']:.0f} s.")
    return "\n".join(lines) + "\n\n" + caption


def chaos_block(results: dict[str, Any]) -> str:
    return "\n\n".join([chaos_table(results), source_line("chaos.json")])


def chart_lease_seconds() -> float:
    """The Helm chart's default leader lease (``leaderLeaseSeconds``)."""
    values = yaml.safe_load((ROOT / "charts" / "taskfleet" / "values.yaml").read_text())
    return float(values["leaderLeaseSeconds"])


def chaos_sentences(results: dict[str, Any]) -> list[Prose]:
    params, phases = results["parameters"], results["phases"]
    ran = [p for name, p in phases.items() if name in CHAOS_PHASES and "skipped" not in p]
    lost = sum(p["lost"] for p in ran)
    duplicates = sum(p["duplicates"] for p in ran)
    bound = sum(p.get("duplicate_bound", 0) for p in ran)
    within = all(p.get("duplicates_within_bound", True) for p in ran)
    codes = _sigterm_codes(phases)
    cp = phases.get("control_plane", {})
    ticks = ("each cron tick sent once" if cp.get("schedule", {}).get("exactly_once")
             else "cron ticks not checked or not sent exactly once")
    sentences = [
        f"(`make chaos`, {_n(params['tasks'])} tasks, {params['task_lease_seconds']:g} s task "
        f"leases; each phase in [Faults, measured](#faults-measured))",
        f"**{lost} tasks lost**; {duplicates} duplicates, "
        + ("each inside the duplicate window above" if within else "NOT all inside the window")
        + f" (bound {bound}: the tasks the killed, paused or cut-off workers held); "
        + ("every SIGTERM exit code 0" if all(c == 0 for c in codes)
           else f"SIGTERM exit codes {sorted(set(codes))}")
        + f"; {ticks}.",
    ]
    if "leader_lease_seconds" in cp:
        lease, chart = cp["leader_lease_seconds"], chart_lease_seconds()
        on = ("the Helm chart's default leader lease" if lease == chart
              else f"a {lease:g} s leader lease (the Helm chart's default is {chart:g} s)")
        sentences.append(f"with two operators on {on} and a burst that takes a pool to "
                         f"{cp['api_server_restart']['target']} replicas")
    everysec = phases.get("redis_restart_everysec", {})
    if everysec.get("lost") == 0:
        sentences.append("A SIGKILL of Redis does not lose what it wrote under `everysec` "
                         "either (the kernel still has it)")
    return [Prose(GUARANTEES, s) for s in sentences]


# -- failover.json ------------------------------------------------------------------------


def failover_table(results: dict[str, Any]) -> str:
    """The Sentinel failover table, from bench/failover.py's JSON."""
    settings = list(results["runs"])
    base = settings[0]

    def row(label: str, cell: Callable[[str], str]) -> str:
        return f"| {label} | " + " | ".join(cell(s) for s in settings) + " |"

    def seconds(key: str) -> Callable[[str], str]:
        return lambda s: _span(r[key] for r in results["runs"][s])

    def rate(key: str) -> Callable[[str], str]:
        def cell(s: str) -> str:
            value = _n(results["cost"][s][key])
            if s == base:
                return value
            return f"{value} ({results['cost'][s][key] / results['cost'][base][key]:.2f}{TIMES})"
        return cell

    lines = ["| | " + " | ".join(settings) + " |", "|---" * (len(settings) + 1) + "|",
             row("acknowledged enqueues lost, each run",
                 lambda s: ", ".join(str(r["lost"]) for r in results["runs"][s])),
             row("kill to new master agreed", seconds("failover_seconds")),
             row("producer without a broker", seconds("producer_without_broker_seconds")),
             row("scheduler (`taskfleet beat`'s pass) without a broker",
                 seconds("beat_without_broker_seconds")),
             row("operator's queue reads without a broker",
                 seconds("operator_without_broker_seconds")),
             row("workers without a broker (longest gap between finished tasks)",
                 seconds("workers_without_broker_seconds")),
             row("single `send_task` calls/s, one producer", rate("enqueue_per_second")),
             row("batch enqueue (`delay_many`) tasks/s", rate("batch_enqueue_per_second")),
             row(f"no-op tasks/s, one worker, concurrency {results['parameters']['concurrency']}",
                 rate("worker_tasks_per_second"))]
    return "\n".join(lines)


def failover_block(results: dict[str, Any]) -> str:
    return "\n\n".join([failover_table(results), source_line("failover.json")])


def failover_sentences(results: dict[str, Any]) -> list[Prose]:
    p, runs = results["parameters"], [r for rs in results["runs"].values() for r in rs]
    ratio = results["cost_ratio"]
    extra = [r["workers_without_broker_seconds"] - r["failover_seconds"] for r in runs]
    others = ("producer_without_broker_seconds", "beat_without_broker_seconds",
              "operator_without_broker_seconds")
    # "as soon as": within one probe of the sentinels' agreement, in every run
    at_once = all(r[k] <= r["failover_seconds"] + 0.25 for r in runs for k in others)
    lost = sum(r["lost"] for r in results["runs"]["replica_acks=0"])
    unsafe = len(results["runs"]["replica_acks=0"])
    return [Prose(REDIS_MODES, s) for s in [
        f"{_n(p['tasks'])} tasks at {p['rate']:g}/s, {p['workers']} workers, the master "
        f"SIGKILLed after {_n(p['tasks'] * p['kill_at'])}; sentinels with "
        f"`down-after-milliseconds {p['down_after_ms']}`; {p['runs']} runs each; a scheduler "
        f"pass and the operator's queue read tried every {p['probe_ms']:g} ms",
        ("Everything but the workers is back as soon as the sentinels agree"
         if at_once else "Not everything but the workers is back when the sentinels agree")
        + f"; the workers' extra {_span(extra)} is their reconnect backoff",
        f"losses without the opt-in are rare here ({lost} acknowledged enqueue"
        f"{'' if lost == 1 else 's'} lost in the {unsafe} runs above)",
        f"A batch (`delay_many`) pays the `WAIT` once per call: "
        f"{ratio['batch_enqueue_per_second']:.2f}{TIMES} the tasks/s without it, where single "
        f"sends get {ratio['enqueue_per_second']:.2f}{TIMES}",
    ]]


# -- cluster.json -------------------------------------------------------------------------


def cluster_table(results: dict[str, Any]) -> str:
    """The Redis Cluster scale-out table, from bench/cluster.py's JSON."""
    p, s, c, ratios = (results["parameters"], results["single"], results["cluster"],
                       results["ratios"])
    masters = c["throughput"]["masters"]
    st, ct = s["throughput"], c["throughput"]
    lines = [f"| | one redis-server | Redis Cluster, {len(masters)} masters | cluster / one |",
             "|---|---|---|---|",
             f"| no-op tasks/s ({_n(st['tasks'])} tasks on {p['queues']} queues, "
             f"{p['workers']} workers serving {p['queues'] // p['workers']} queues each) | "
             f"{_n(st['tasks_per_second'])} | {_n(ct['tasks_per_second'])} | "
             f"**{ratios['cluster_vs_single_tasks_per_second']:.2f}{TIMES}** |",
             f"| one read of {_n(s['observe']['queues'])} queues (median of "
             f"{p['observe_passes']}) | {s['observe']['observe_wall_ms_median']:.0f} ms | "
             f"{c['observe']['observe_wall_ms_median']:.0f} ms | "
             f"**{ratios['cluster_vs_single_observe_ms']:.2f}{TIMES}** |",
             f"| Redis commands per master | {_n(st['masters'][0]['commands'])} | "
             f"{_span((m['commands'] for m in masters), 0, '')} | |",
             f"| queues per master | {p['queues']} | "
             f"{_span(c['queues_per_master'].values(), 0, '')} | |"]
    return "\n".join(lines)


def cluster_block(results: dict[str, Any]) -> str:
    return "\n\n".join([cluster_table(results), source_line("cluster.json")])


def cluster_sentences(results: dict[str, Any]) -> list[Prose]:
    p, masters = results["parameters"], results["cluster"]["throughput"]["masters"]
    return [Prose(REDIS_MODES,
                  f"What limits it here: {2 * len(masters)} redis-server processes, "
                  f"{p['workers']} workers and the producer on {p['machine_cpus']} cores")]


# -- the pages ----------------------------------------------------------------------------

BLOCKS: dict[str, Callable[[dict[str, Any]], str]] = {
    "throughput.json": throughput_block,
    "pools.json": pools_block,
    "autoscale.json": autoscale_block,
    "chaos.json": chaos_block,
    "failover.json": failover_block,
    "cluster.json": cluster_block,
}
"""The tables, one block per file."""

PAGES: dict[str, str] = {
    "throughput.json": BENCHMARKS,
    "pools.json": BENCHMARKS,
    "autoscale.json": README,
    "chaos.json": GUARANTEES,
    "failover.json": REDIS_MODES,
    "cluster.json": REDIS_MODES,
}
"""The page (relative to the repository) that holds each file's block, and no other does."""

SENTENCES: dict[str, Callable[[dict[str, Any]], list[Prose]]] = {
    "throughput.json": throughput_sentences,
    "autoscale.json": autoscale_sentences,
    "chaos.json": chaos_sentences,
    "failover.json": failover_sentences,
    "cluster.json": cluster_sentences,
}
"""The figures in prose, each compared with its page's text as one line."""


def page_names() -> list[str]:
    """README.md and every page of docs/, relative to the repository."""
    return [README, *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]


def read_pages() -> dict[str, str]:
    """Every page's text by its name."""
    return {name: (ROOT / name).read_text() for name in page_names()}


def begin_marker(name: str) -> str:
    return f"<!-- generated by bench/report.py from bench/results/{name}; do not edit -->"


END_MARKER = "<!-- end of generated block -->"


def load(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((RESULTS / name).read_text())
    return result


def marked_block(text: str, name: str) -> str | None:
    """The text between a file's markers on a page, None when they are missing."""
    pattern = re.escape(begin_marker(name)) + r"\n(?:(.*?)\n)??" + re.escape(END_MARKER)
    found = re.search(pattern, text, re.DOTALL)
    return None if found is None else found.group(1) or ""


def one_line(text: str) -> str:
    return " ".join(text.split())


def differences(pages: dict[str, str]) -> list[str]:
    """What the pages say that their JSON files do not (empty when they agree)."""
    out = []
    for name in SOURCES:
        try:
            results = load(name)
            block = BLOCKS[name](results) if name in BLOCKS else None
            sentences = SENTENCES[name](results) if name in SENTENCES else []
        except (OSError, ValueError, LookupError, TypeError) as exc:
            out.append(f"{name}: its figures cannot be read ({exc!r}); run `make "
                       f"{SOURCES[name][0]}` to write it again")
            continue
        if block is not None:
            home = PAGES[name]
            elsewhere = [p for p, text in pages.items()
                         if p != home and begin_marker(name) in text]
            if elsewhere:
                out.append(f"{name}: its block belongs on {home} only, not on "
                           f"{', '.join(elsewhere)}")
            if marked_block(pages.get(home, ""), name) != block:
                out.append(f"{name}: the block on {home} differs from what "
                           "`python -m bench.report` makes")
        out += [f"{name}: {s.page} lacks: {s.text}" for s in sentences
                if one_line(s.text) not in one_line(pages.get(s.page, ""))]
    return out


def rewritten(text: str, page: str) -> str:
    """The page with the blocks that belong on it made again from their JSON files."""
    for name, block in BLOCKS.items():
        if PAGES[name] != page:
            continue
        marked = f"{begin_marker(name)}\n{block(load(name))}\n{END_MARKER}"
        pattern = re.escape(begin_marker(name)) + r"\n(?:.*?\n)??" + re.escape(END_MARKER)
        text, count = re.subn(pattern, marked.replace("\\", "\\\\"), text, flags=re.DOTALL)
        if count != 1:
            raise SystemExit(f"{page}: {count} blocks marked for {name}; put one in by hand "
                             f"between '{begin_marker(name)}' and '{END_MARKER}'")
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true",
                        help="exit 1 when a page differs from bench/results/*.json")
    action.add_argument("--write", action="store_true",
                        help="rewrite the pages' generated blocks")
    args = parser.parse_args()
    if args.write:
        for page in sorted(set(PAGES.values())):
            path = ROOT / page
            path.write_text(rewritten(path.read_text(), page))
            print(f"rewrote the generated blocks of {page}")
    if args.check or args.write:
        problems = differences(read_pages())
        for problem in problems:
            print(problem)
        return 1 if problems else 0
    for name, block in BLOCKS.items():
        print(f"{PAGES[name]}:\n{begin_marker(name)}\n{block(load(name))}\n{END_MARKER}\n")
        for sentence in SENTENCES[name](load(name)) if name in SENTENCES else []:
            print(f"  prose on {sentence.page}: {sentence.text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
