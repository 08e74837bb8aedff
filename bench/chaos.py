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

Each phase's faults come from random.Random(f"{seed}:{phase}"), so a run can be
replayed (the interleaving with the workers, of course, differs).

    python bench/chaos.py [--json PATH] [--short] [--seed N] [--logs DIR]
                          [--no-control-plane] [--phases a,b]

A full run (`make chaos`, bench/results/chaos.json, which the README quotes) takes
about 5 minutes on 2 cores, 3 of them in the control-plane phase; --short about a
minute. The JSON keeps its "seconds".
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import os
import random
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import yaml

from bench.peers.chaos_tasks import LEDGER_ENV, last_key, runs_key
from bench.report import LoadWatch, chart_lease_seconds, write_json
from taskfleet import App, keys, live_workers, queue_stats
from taskfleet.broker import message_json
from taskfleet.connection import text
from taskfleet.message import Message
from tests.support.netns import VethNamespace, netns_available
from tests.support.processes import children_of
from tests.support.redis_server import RedisServer
from tests.support.waiting import sleep_until_second

ROOT = Path(__file__).resolve().parents[1]
TASK_APP = "bench.peers.chaos_tasks:app"
TASK = "chaos.step"
LEASE_SECONDS = 2.0
"""Short, so that redeliveries happen within the run."""
CONCURRENCY = 2
"""Processes per pod; each holds one task at a time (tasks of 10 ms and more are never
prefetched: the inline pool prefetches only while tasks average under 5 ms)."""
TASK_MS = (10, 50)
BURST_FRACTION = 0.4
"""Of a paced phase's tasks, sent at once before the rest are spread out."""
RESUME_SECONDS = 8.0
"""Longer sends in the partition phase: the cut-off pod must have work once it is back."""
DRAIN_TIMEOUT_SECONDS = 240.0


@dataclass(frozen=True)
class Plan:
    """The sizes of a run."""

    worker_tasks: int
    worker_pods: int
    fault_gap_seconds: tuple[float, float]
    max_faults: int
    paced_tasks: int
    """Tasks of each phase whose producer sends at a steady pace (restarts, pause, cut)."""
    paced_pods: int
    send_window_seconds: float
    control_plane: bool

    @property
    def total_tasks(self) -> int:
        return self.worker_tasks + 4 * self.paced_tasks


FULL = Plan(worker_tasks=6000, worker_pods=4, fault_gap_seconds=(0.5, 1.5), max_faults=40,
            paced_tasks=1000, paced_pods=3, send_window_seconds=12.0, control_plane=True)
SHORT = Plan(worker_tasks=500, worker_pods=3, fault_gap_seconds=(0.3, 0.8), max_faults=12,
             paced_tasks=125, paced_pods=3, send_window_seconds=8.0, control_plane=False)


# -- the ledger ---------------------------------------------------------------------------


class Ledger:
    """Reads what the tasks wrote (bench/peers/chaos_tasks.py)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, decode_responses=True)

    def executions(self, phase: str) -> list[tuple[int, int, float]]:
        """(task index, pid, unix time) of every execution."""
        out = []
        for name, value in self.client.hgetall(runs_key(phase)).items():
            pid, at = text(value).split(":")
            out.append((int(text(name).split(":")[0]), int(pid), float(at)))
        return out

    def runs(self, phase: str) -> Counter[int]:
        return Counter(index for index, _, _ in self.executions(phase))

    def executions_so_far(self, phase: str) -> int:
        return int(self.client.hlen(runs_key(phase)))

    def last_started(self, phase: str, pid: int) -> int | None:
        value = self.client.hget(last_key(phase), str(pid))
        return int(value) if value is not None else None


# -- worker pods --------------------------------------------------------------------------


class Pod:
    """One worker pod: ``taskfleet worker --pool processes`` as a process group of its own
    (a supervisor and its two children), with its log in ``log_dir``."""

    def __init__(self, name: str, queue: str, broker_url: str, ledger_url: str, log_dir: Path,
                 wrap: Callable[[list[str]], list[str]] | None = None) -> None:
        self.name = name
        argv = [sys.executable, "-m", "taskfleet", "--broker", broker_url, "--log-level", "INFO",
                "worker", "--app", TASK_APP, "--queues", queue, "--pool", "processes",
                "--concurrency", str(CONCURRENCY), "--task-lease-seconds", str(LEASE_SECONDS)]
        self.argv = wrap(argv) if wrap else argv
        self.env = {**os.environ, "TASKFLEET_BROKER_URL": broker_url, LEDGER_ENV: ledger_url,
                    "POD_NAME": name, "PYTHONPATH": str(ROOT)}
        self.log = log_dir / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.terminated_at: float | None = None
        self.exited_at: float | None = None
        self.pids: set[int] = set()
        """Every child process seen: the ledger names executions by pid."""

    def start(self) -> Pod:
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def children(self) -> list[int]:
        """The supervisor's worker processes now (and remembered in ``pids``)."""
        assert self.process is not None
        found = children_of(self.process.pid)
        self.pids.update(found)
        return found

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a node loss would."""
        if self.running:
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def terminate(self) -> None:
        """SIGTERM to the supervisor only, as a kubelet sends it to a container's PID 1;
        the supervisor forwards it to its children."""
        assert self.process is not None
        self.terminated_at = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        threading.Thread(target=self._note_exit, daemon=True).start()

    def _note_exit(self) -> None:
        assert self.process is not None
        self.process.wait()
        self.exited_at = time.monotonic()

    def exit_code(self, timeout: float) -> int | None:
        """The exit code after a SIGTERM; None (and the group SIGKILLed) when the drain
        did not end in time."""
        assert self.process is not None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def serving(self) -> bool:
        """A worker process of the pod has logged that it serves (its supervisor holds the
        stop signals by then)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return " serving " in text

    def children_drained(self) -> bool:
        """Every worker process that started serving also logged its clean stop."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        serving = sum(1 for line in text.splitlines() if " serving " in line)
        stopped = sum(1 for line in text.splitlines() if line.endswith(" stopped"))
        return serving == stopped


class Fleet:
    """The pods of one phase; each new pod gets the next number, as a ReplicaSet's would."""

    def __init__(self, phase: str, queue: str, broker_url: str, ledger_url: str,
                 log_dir: Path) -> None:
        self.phase = phase
        self.queue = queue
        self.broker_url = broker_url
        self.ledger_url = ledger_url
        self.log_dir = log_dir
        self.pods: list[Pod] = []
        self.sigterms: list[dict[str, Any]] = []

    def add(self, broker_url: str | None = None, ledger_url: str | None = None,
            wrap: Callable[[list[str]], list[str]] | None = None) -> Pod:
        pod = Pod(f"{self.phase}-pod-{len(self.pods) + 1:02d}", self.queue,
                  broker_url or self.broker_url, ledger_url or self.ledger_url, self.log_dir,
                  wrap).start()
        self.pods.append(pod)
        return pod

    @property
    def live(self) -> list[Pod]:
        return [p for p in self.pods if p.running and p.terminated_at is None]

    def wait_serving(self, client: redis.Redis, timeout: float = 60.0) -> None:
        """Until every live pod's processes send heartbeats (imports done, connected)."""
        names = {p.name for p in self.live}
        wait_until(f"{len(names) * CONCURRENCY} workers' heartbeats", lambda: sum(
            1 for w in live_workers(client) if w.pod in names) >= len(names) * CONCURRENCY,
            timeout)
        for pod in self.live:
            pod.children()

    def scale_down(self, pod: Pod, reason: str) -> None:
        pod.children()
        pod.terminate()
        self.sigterms.append({"pod": pod.name, "reason": reason})

    def scale_to_zero(self) -> None:
        for pod in self.live:
            self.scale_down(pod, "end of phase")

    def sigterm_outcomes(self) -> list[dict[str, Any]]:
        """Exit code, drain time and clean stops of every pod that got a SIGTERM."""
        by_name = {p.name: p for p in self.pods}
        out = []
        for entry in self.sigterms:
            pod = by_name[entry["pod"]]
            code = pod.exit_code(timeout=40.0)
            drain = (pod.exited_at - pod.terminated_at
                     if pod.exited_at is not None and pod.terminated_at is not None else None)
            out.append({**entry, "exit_code": code,
                        "drain_seconds": None if drain is None else round(drain, 2),
                        "children_drained": pod.children_drained()})
        return out

    def kill_all(self) -> None:
        """The last resort of a finally block: nothing outlives the run."""
        for pod in self.pods:
            pod.kill()

    def pids(self) -> dict[int, str]:
        return {pid: pod.name for pod in self.pods for pid in pod.pids}


# -- producing and counting ---------------------------------------------------------------


@dataclass
class Sent:
    """What a producer knows about its sends."""

    acknowledged: set[int] = field(default_factory=set)
    """Indices whose send Redis acknowledged."""
    failed_attempts: int = 0
    resent: set[int] = field(default_factory=set)
    """Indices sent again after a failed attempt (that attempt may have landed)."""
    not_sent: set[int] = field(default_factory=set)
    """Indices given up on: a failed send is not a lost task."""
    finished_at: float = 0.0


def task_arguments(phase: str, indices: Sequence[int], sleeps: Sequence[int]
                   ) -> list[tuple[str, int, int]]:
    return [(phase, i, sleeps[i]) for i in indices]


def send_paced(app: App, phase: str, queue: str, sleeps: Sequence[int], burst: int,
               window: float, sent: Sent, batch: int = 10) -> None:
    """Send ``burst`` tasks at once (a backlog, so every worker is busy when the fault
    hits), then the rest in small batches spread over ``window`` seconds, as a web tier
    would. A batch whose send fails on a connection error is sent again, as a real producer
    would, with new task ids: a producer cannot know whether the failed attempt landed."""
    n = len(sleeps)
    batches = [list(range(burst))] + [list(range(i, min(i + batch, n)))
                                      for i in range(burst, n, batch)]
    start = time.monotonic()
    give_up = start + window + 60.0
    for k, indices in enumerate(batches):
        delay = start + window * k / len(batches) - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        while True:
            try:
                app.send_many(TASK, task_arguments(phase, indices, sleeps), queue=queue)
                sent.acknowledged.update(indices)
                break
            except (redis.ConnectionError, redis.TimeoutError):
                sent.failed_attempts += 1
                if time.monotonic() > give_up:
                    sent.not_sent.update(indices)
                    break
                sent.resent.update(indices)
                time.sleep(0.2)
    sent.finished_at = time.monotonic()


def wait_until(what: str, probe: Callable[[], object], timeout: float,
               interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def queue_empty(client: redis.Redis, queue: str) -> bool:
    """Nothing ready, leased or delayed; False while the broker does not answer."""
    try:
        s = queue_stats(client, [queue])[queue]
    except redis.RedisError:
        return False
    return s.ready == 0 and s.in_flight == 0 and s.delayed == 0


def wait_drained(client: redis.Redis, queue: str, timeout: float = DRAIN_TIMEOUT_SECONDS
                 ) -> float | None:
    """When the backlog was gone (monotonic), or None if it was not within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if queue_empty(client, queue):
            return time.monotonic()
        time.sleep(0.05)
    return None


def in_flight(client: redis.Redis, queue: str) -> int:
    return queue_stats(client, [queue])[queue].in_flight


def dead_letters(client: redis.Redis, queue: str) -> int:
    return queue_stats(client, [queue])[queue].dead


def tally(runs: Counter[int], sent: Sent, tasks: int) -> dict[str, Any]:
    """Lost: acknowledged and never run. Duplicates: runs beyond the first."""
    lost = sorted(i for i in sent.acknowledged if runs[i] == 0)
    duplicates = sum(max(0, c - 1) for c in runs.values())
    resent_duplicates = sum(max(0, runs[i] - 1) for i in sent.resent)
    return {"tasks": tasks, "sent": len(sent.acknowledged), "not_sent": len(sent.not_sent),
            "failed_send_attempts": sent.failed_attempts,
            "runs": sum(runs.values()), "distinct_tasks_run": len(runs), "lost": len(lost),
            "lost_indices": lost[:50], "duplicates": duplicates,
            "duplicates_of_resent_tasks": resent_duplicates,
            "landed_despite_failed_send": sum(1 for i in sent.not_sent if runs[i] > 0)}


def task_unacknowledged(client: redis.Redis, queue: str, task_id: str) -> bool:
    """Still leased with its body stored: it will be delivered again."""
    qk = keys.QueueKeys(queue)
    pipe = client.pipeline(transaction=False)
    pipe.hexists(qk.messages, task_id)
    pipe.zscore(qk.leases, task_id)
    has_body, lease = pipe.execute()
    return bool(has_body) and lease is not None


def held_by(pod: Pod, children: Sequence[int], busy: int, ledger: Ledger, phase: str,
            client: redis.Redis, queue: str, ids: Sequence[str]) -> dict[str, Any]:
    """What a pod held when it was cut off or killed, read two ways, each a lower bound of
    the truth: its heartbeats' busy count just before, and its processes' last started
    tasks still leased just after. The larger is what may run again."""
    started = []
    for pid in children:
        index = ledger.last_started(phase, pid)
        if index is not None and index < len(ids) and \
                task_unacknowledged(client, queue, ids[index]):
            started.append(index)
    return {"pod": pod.name, "busy_by_heartbeat": busy, "started_unacknowledged": started,
            "held": max(busy, len(started))}


def heartbeat_busy(client: redis.Redis, pod: Pod) -> int:
    return sum(w.busy for w in live_workers(client) if w.pod == pod.name)


@contextlib.contextmanager
def servers(*made: RedisServer) -> Iterator[None]:
    try:
        yield
    finally:
        for server in made:
            server.close()


def random_sleeps(rng: random.Random, n: int) -> list[int]:
    return [rng.randint(*TASK_MS) for _ in range(n)]


# -- phase 1: worker pods killed and scaled down ----------------------------------------


def worker_faults(plan: Plan, rng: random.Random, logs: Path) -> dict[str, Any]:
    phase, queue = "worker_kills", "chaos-workers"
    broker, ledger_server = RedisServer().start(), RedisServer().start()
    with servers(broker, ledger_server):
        app, ledger = App(broker.url), Ledger(ledger_server.url)
        client = redis.Redis.from_url(broker.url, decode_responses=True)
        fleet = Fleet(phase, queue, broker.url, ledger_server.url, logs)
        try:
            for _ in range(plan.worker_pods):
                fleet.add()
            fleet.wait_serving(client)
            sleeps = random_sleeps(rng, plan.worker_tasks)
            started = time.monotonic()
            ids = [r.id for r in app.send_many(
                TASK, task_arguments(phase, range(plan.worker_tasks), sleeps), queue=queue)]
            sent = Sent(acknowledged=set(range(plan.worker_tasks)), finished_at=started)
            kills, last_fault = inject_pod_faults(plan, rng, fleet, ledger, client, ids, started)
            drained = wait_drained(client, queue)
            fleet.scale_to_zero()
            sigterms = fleet.sigterm_outcomes()
            runs = ledger.runs(phase)
            result = tally(runs, sent, plan.worker_tasks)
            bound = sum(k["held"] for k in kills)
            result.update({
                "pods": plan.worker_pods, "sigkills": kills,
                "sigterms": sigterms,
                "sigterm_exit_codes": [s["exit_code"] for s in sigterms],
                "duplicate_bound": bound,
                "duplicates_within_bound": result["duplicates"] <= bound,
                "dead_lettered": dead_letters(client, queue),
                "drained": drained is not None,
                "drain_after_last_fault_s": rounded(drained, last_fault),
                "seconds": round(time.monotonic() - started, 1)})
            return result
        finally:
            fleet.kill_all()


def inject_pod_faults(plan: Plan, rng: random.Random, fleet: Fleet, ledger: Ledger,
                      client: redis.Redis, ids: Sequence[str], started: float
                      ) -> tuple[list[dict[str, Any]], float]:
    """SIGKILL or SIGTERM a random pod at random intervals, a replacement started at once,
    until most of the burst has run; returns the kills and when the last fault hit."""
    kills: list[dict[str, Any]] = []
    faults = 0
    last_fault = started
    while faults < plan.max_faults and \
            ledger.executions_so_far(fleet.phase) < 0.85 * len(ids):
        time.sleep(rng.uniform(*plan.fault_gap_seconds))
        live = sorted(fleet.live, key=lambda p: p.name)
        victim = live[rng.randrange(len(live))]
        # A scale-down's SIGTERM goes to a pod that has started serving: one still starting
        # its interpreter has no handler yet (the README's first ~30 ms), and a container's
        # PID 1 would not even receive it; a SIGKILL may hit any pod.
        serving = [p for p in live if p.serving()]
        if rng.random() < 0.5 or not serving:
            busy = heartbeat_busy(client, victim)
            children = victim.children()
            victim.kill()
            held = held_by(victim, children, busy, ledger, fleet.phase, client, fleet.queue,
                           ids)
            held["at_s"] = round(time.monotonic() - started, 2)
            kills.append(held)
        else:
            victim = serving[rng.randrange(len(serving))]
            fleet.scale_down(victim, f"scale-down at {time.monotonic() - started:.2f}s")
        last_fault = time.monotonic()
        fleet.add()  # the replacement, as the ReplicaSet would start one
        faults += 1
    return kills, last_fault


def rounded(end: float | None, start: float) -> float | None:
    return None if end is None else round(end - start, 2)


# -- phases 2-4: the broker crashed, restarted and frozen ------------------------------------


@dataclass
class PacedRun:
    """A phase whose producer sends at a steady pace while its pods run and a fault hits."""

    phase: str
    plan: Plan
    rng: random.Random
    logs: Path
    broker: RedisServer
    ledger_server: RedisServer
    pods: int
    window_seconds: float
    queue: str = "chaos"
    sent: Sent = field(default_factory=Sent)
    started: float = 0.0

    def __post_init__(self) -> None:
        self.app = App(self.broker.url)
        self.client = redis.Redis.from_url(self.broker.url, decode_responses=True)
        self.ledger = Ledger(self.ledger_server.url)
        self.fleet = Fleet(self.phase, self.queue, self.broker.url, self.ledger_server.url,
                           self.logs)
        self.sleeps = random_sleeps(self.rng, self.plan.paced_tasks)
        burst = int(BURST_FRACTION * len(self.sleeps))
        self.producer = threading.Thread(target=send_paced, daemon=True, args=(
            self.app, self.phase, self.queue, self.sleeps, burst, self.window_seconds,
            self.sent))

    def start(self) -> None:
        for _ in range(self.pods):
            self.fleet.add()
        self.fleet.wait_serving(self.client)
        self.started = time.monotonic()
        self.producer.start()

    def when_busy(self, busy: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``busy`` holds (every worker has a task), so the fault finds tasks in
        flight; after ``timeout`` the fault goes ahead anyway, and the figures say so."""
        with contextlib.suppress(TimeoutError):
            wait_until("tasks in flight", busy, timeout, interval=0.01)

    def all_slots_busy(self) -> bool:
        return in_flight(self.client, self.queue) >= self.pods * CONCURRENCY

    def finish(self, fault_over: float) -> dict[str, Any]:
        """Producer done, backlog drained, pods scaled to zero: the figures."""
        self.producer.join()
        drained = wait_drained(self.client, self.queue)
        for pod in self.fleet.live:
            pod.children()
        executions = self.ledger.executions(self.phase)
        self.fleet.scale_to_zero()
        sigterms = self.fleet.sigterm_outcomes()
        active = pods_active_after(executions, self.fleet, fault_over)
        result = tally(Counter(i for i, _, _ in executions), self.sent, self.plan.paced_tasks)
        result.update({
            "pods": self.pods, "sigterms": sigterms,
            "sigterm_exit_codes": [s["exit_code"] for s in sigterms],
            "tasks_started_per_pod_after_the_fault": active,
            "pods_resumed": all(n > 0 for n in active.values()),
            "dead_lettered": dead_letters(self.client, self.queue),
            "drained": drained is not None,
            "drain_after_last_fault_s": rounded(drained, fault_over),
            "producer_done_after_fault_s": round(self.sent.finished_at - fault_over, 2),
            "drain_after_last_send_s": rounded(drained, self.sent.finished_at),
            "seconds": round(time.monotonic() - self.started, 1)})
        return result


def pods_active_after(executions: Sequence[tuple[int, int, float]], fleet: Fleet,
                      since_monotonic: float) -> dict[str, int]:
    """Tasks each pod started after a moment: a pod at 0 stopped taking work."""
    since = time.time() - (time.monotonic() - since_monotonic)
    owner = fleet.pids()
    counts = {pod.name: 0 for pod in fleet.pods}
    for _, pid, at in executions:
        if at >= since and pid in owner:
            counts[owner[pid]] += 1
    return counts


def redis_restart(plan: Plan, rng: random.Random, logs: Path, appendfsync: str
                  ) -> dict[str, Any]:
    broker = RedisServer(appendfsync=appendfsync).start()
    ledger_server = RedisServer().start()
    with servers(broker, ledger_server):
        run = PacedRun(f"redis_restart_{appendfsync}", plan, rng, logs, broker, ledger_server,
                       plan.paced_pods, plan.send_window_seconds)
        try:
            run.start()
            run.when_busy(run.all_slots_busy)
            before = in_flight(run.client, run.queue)
            broker.kill()
            crashed = time.monotonic()
            time.sleep(rng.uniform(0.5, 1.5))
            broker.start()  # same port, same directory: the append-only file is replayed
            back = time.monotonic()
            result = run.finish(back)
            result.update({"appendfsync": appendfsync, "in_flight_at_crash": before,
                           "down_s": round(back - crashed, 2)})
            return result
        finally:
            run.fleet.kill_all()


def redis_pause(plan: Plan, rng: random.Random, logs: Path) -> dict[str, Any]:
    broker, ledger_server = RedisServer().start(), RedisServer().start()
    with servers(broker, ledger_server):
        run = PacedRun("redis_pause", plan, rng, logs, broker, ledger_server, plan.paced_pods,
                       plan.send_window_seconds)
        try:
            run.start()
            run.when_busy(run.all_slots_busy)
            before = in_flight(run.client, run.queue)
            paused_for = LEASE_SECONDS + rng.uniform(1.0, 2.0)
            broker.pause()
            time.sleep(paused_for)
            broker.resume()
            back = time.monotonic()
            result = run.finish(back)
            slots = plan.paced_pods * CONCURRENCY
            result.update({"paused_s": round(paused_for, 2), "in_flight_at_pause": before,
                           "duplicate_bound": slots,
                           "duplicates_within_bound": result["duplicates"] <= slots})
            return result
        finally:
            run.fleet.kill_all()


# -- phase 5: one pod cut off by a network partition ----------------------------------------


def partition(plan: Plan, rng: random.Random, logs: Path) -> dict[str, Any]:
    why_not = netns_available()
    if why_not is not None:
        return {"skipped": why_not}
    ns = VethNamespace(f"tfchaos{os.getpid()}", slot=os.getpid())
    try:
        ns.create()
        binds = ["127.0.0.1", ns.host_address]
        broker, ledger_server = RedisServer(bind=binds).start(), RedisServer(bind=binds).start()
        with servers(broker, ledger_server):
            return cut_one_pod_off(plan, rng, logs, ns, broker, ledger_server)
    finally:
        ns.remove()


def cut_one_pod_off(plan: Plan, rng: random.Random, logs: Path, ns: VethNamespace,
                    broker: RedisServer, ledger_server: RedisServer) -> dict[str, Any]:
    # sends go on for a while after the link is back, so the cut-off pod can show it resumes
    run = PacedRun("partition", plan, rng, logs, broker, ledger_server, plan.paced_pods - 1,
                   plan.send_window_seconds + RESUME_SECONDS)
    try:
        island = run.fleet.add(broker_url=broker.url_at(ns.host_address),
                               ledger_url=ledger_server.url_at(ns.host_address), wrap=ns.argv)
        run.start()
        run.when_busy(lambda: heartbeat_busy(run.client, island) >= CONCURRENCY)
        busy = heartbeat_busy(run.client, island)
        children = island.children()
        ns.link_down()
        cut = time.monotonic()
        time.sleep(0.3)  # what was on its way through the link when it went down
        ids = task_ids(run.client, run.queue)
        held = held_by(island, children, busy, run.ledger, run.phase, run.client, run.queue,
                       ids)
        down_for = LEASE_SECONDS + rng.uniform(1.5, 2.5)
        time.sleep(max(0.0, cut + down_for - time.monotonic()))
        ns.link_up()
        up = time.monotonic()
        result = run.finish(up)
        executions = run.ledger.executions(run.phase)
        runs = Counter(i for i, _, _ in executions)
        resumed = first_run_after(executions, set(island.pids), up)
        result.update({
            "cut_off_pod": island.name, "link_down_s": round(up - cut, 2),
            "held_at_cut": held,
            "held_tasks_run_again": sum(1 for i in held["started_unacknowledged"]
                                        if runs[i] > 1),
            "duplicate_bound": held["held"],
            "duplicates_within_bound": result["duplicates"] <= held["held"],
            "cut_off_pod_resumed": resumed is not None,
            "cut_off_pod_first_task_after_link_up_s": resumed,
            "cut_off_pod_log_lines": notable_lines(island.log)})
        return result
    finally:
        run.fleet.kill_all()


def task_ids(client: redis.Redis, queue: str) -> list[str]:
    """Index -> task id of what is stored in a queue now (leased, ready or delayed)."""
    found: dict[int, str] = {}
    for task_id, body in client.hgetall(keys.QueueKeys(queue).messages).items():
        message = Message.decode(message_json(text(body)))
        found[int(message.args[1])] = text(task_id)
    size = max(found) + 1 if found else 0
    return [found.get(i, "") for i in range(size)]


def first_run_after(executions: Sequence[tuple[int, int, float]], pids: set[int],
                    since_monotonic: float) -> float | None:
    since = time.time() - (time.monotonic() - since_monotonic)
    later = [at for _, pid, at in executions if pid in pids and at >= since]
    return round(min(later) - since, 2) if later else None


def notable_lines(log: Path, limit: int = 12) -> list[str]:
    """The warnings and errors of a pod's log (its view of the fault)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    lines = [ln for ln in text.splitlines() if " WARNING " in ln or " ERROR " in ln]
    return lines[:limit // 2] + lines[-limit // 2:] if len(lines) > limit else lines


# -- phase 6: the control plane -----------------------------------------------------------


def control_plane(rng: random.Random, logs: Path) -> dict[str, Any]:
    from tests.support.cluster import Cluster
    from tests.support.operator import crds_applied

    broker = RedisServer().start()
    cluster = Cluster(name=f"tf-chaos-{os.getpid()}")
    cluster.env["TASKFLEET_REAL_NODE"] = "0"  # kwok's fake nodes are all this needs
    with servers(broker):
        try:
            cluster.up()
            crds_applied(cluster)
            return ControlPlaneChaos(cluster, broker.url, logs).run()
        finally:
            cluster.down()


class ControlPlaneChaos:
    """Faults of the control plane while pools scale on a burst and a schedule ticks."""

    NAMESPACE = "chaos"
    TARGET = 8
    BURST = 400
    """Tasks per burst: 400 ready at 50 per replica is the pools' maximum of 8."""

    def __init__(self, cluster: Any, redis_url: str, logs: Path) -> None:
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config

        from tests.support.operator import OperatorProcess

        self.cluster = cluster
        self.redis_url = redis_url
        self.app = App(redis_url)
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.apps = k8s.AppsV1Api(k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(cluster.kubeconfig), context=cluster.context))
        cluster.kubectl("create", "namespace", self.NAMESPACE)
        self.lease_seconds = chart_lease_seconds()
        self.operators = [OperatorProcess(cluster, self.NAMESPACE, logs / f"operator-{i}.log",
                                          lease_seconds=self.lease_seconds)
                          for i in (1, 2)]
        self.supervisor = ComponentSupervisor(cluster)

    def run(self) -> dict[str, Any]:
        try:
            for op in self.operators:
                op.start()
            started = time.time()
            self.apply_resources()
            first_tick = self.first_tick()
            result: dict[str, Any] = {"api_server_restart": self.restart_api_server(),
                                      "operator_failover": self.kill_active_operator()}
            # one more tick with everything back (after the one the standby sends right
            # after the failover), then count each tick's tasks
            sleep_until(next_tick_after(time.time() + 5) + 5)
            result["schedule"] = count_ticks(self.client, "ticks", "every-minute", first_tick,
                                             time.time())
            result["leader_lease_seconds"] = self.lease_seconds
            result["seconds"] = round(time.time() - started, 1)
            return result
        finally:
            self.supervisor.stop()
            for op in self.operators:
                op.stop()

    def apply_resources(self) -> None:
        from tests.support.resources import task_queue, worker_pool

        scaling = {"minReplicas": 0, "maxReplicas": self.TARGET, "targetPerReplica": 50,
                   "pollSeconds": 0.5, "scaleDown": {"stabilizationSeconds": 600}}
        # failover: two replicas per 2 s step, so the scale-up is still under way when the
        # active operator dies
        stepped = {**scaling, "scaleUp": {"maxStepReplicas": 2, "periodSeconds": 2}}
        self.cluster.apply(yaml.safe_dump_all([
            task_queue("ticks", self.redis_url, schedules=[
                {"name": "every-minute", "cron": "* * * * *", "task": "chaos.tick"}]),
            task_queue("apirestart", self.redis_url),
            task_queue("failover", self.redis_url),
            worker_pool("apirestart", ["apirestart"], scaling, app=TASK_APP),
            worker_pool("failover", ["failover"], stepped, app=TASK_APP),
        ]), namespace=self.NAMESPACE)
        for name in ("apirestart", "failover"):
            wait_until(f"Deployment {name} at 0", functools.partial(self.at_zero, name), 60,
                       interval=0.2)

    def first_tick(self) -> float:
        """The first tick of the schedule (the first minute after it was seen)."""
        found: list[float] = []

        def seen() -> bool:
            tq = self.cluster.get("taskqueue", "ticks", self.NAMESPACE) or {}
            for s in (tq.get("status") or {}).get("schedules", []):
                if s.get("name") == "every-minute" and s.get("nextScheduleTime"):
                    found.append(datetime.strptime(s["nextScheduleTime"], "%Y-%m-%dT%H:%M:%SZ")
                                 .replace(tzinfo=UTC).timestamp())
                    return True
            return False

        wait_until("the schedule in the TaskQueue's status", seen, 60, interval=0.5)
        return found[0]

    def at_zero(self, name: str) -> bool:
        return self.replicas(name) == (0, 0)

    def replicas(self, name: str) -> tuple[int, int] | None:
        """The Deployment's (spec.replicas, status.readyReplicas); None while unreadable."""
        try:
            d = self.apps.read_namespaced_deployment(name, self.NAMESPACE)
        except Exception:  # the API server is down, or the object not there yet
            return None
        ready = d.status.ready_replicas if d.status is not None else 0
        return int(d.spec.replicas or 0), int(ready or 0)

    def restart_api_server(self) -> dict[str, Any]:
        """Kill etcd and the API server across a minute's tick, send the burst while they
        are down, start them again; time the pool's way to its target from there."""
        sleep_until_second(50)
        killed = kill_components(self.cluster, ("kube-apiserver", "etcd"))
        down_at = time.monotonic()
        self.app.send_many(TASK, [("apirestart", i, 10) for i in range(self.BURST)],
                           queue="apirestart")
        sleep_until_second(2)  # the :00 tick falls in the outage
        self.supervisor.start()
        back = wait_api_ready(self.cluster)
        spec_at, ready_at = self.time_to_target("apirestart", back, timeout=180)
        return {"killed": killed, "api_down_s": round(back - down_at, 2),
                "replicas_at_target_after_api_back_s": spec_at,
                "ready_replicas_at_target_after_api_back_s": ready_at,
                "target": self.TARGET, "components_restarted": self.supervisor.restarted}

    def kill_active_operator(self) -> dict[str, Any]:
        """Start a scale-up just before a tick, kill the active operator once it is under
        way, and time the standby's way to the target."""
        sleep_until_second(55)
        self.app.send_many(TASK, [("failover", i, 10) for i in range(self.BURST)],
                           queue="failover")
        wait_until("the scale-up under way", lambda: (self.replicas("failover") or (0, 0))[0]
                   > 0, 30, interval=0.05)
        before = self.replicas("failover")
        active = self.active_operator()
        active.kill()
        killed_at = time.monotonic()
        spec_at, ready_at = self.time_to_target("failover", killed_at, timeout=120)
        standby = self.active_operator()
        return {"replicas_when_killed": before[0] if before else None,
                "replicas_at_target_after_kill_s": spec_at,
                "ready_replicas_at_target_after_kill_s": ready_at,
                "standby_took_over": standby is not active, "target": self.TARGET,
                "leader_lease_seconds": active.lease_seconds}

    def active_operator(self) -> Any:
        lease = self.cluster.get("lease", self.operators[0].lease_name, self.NAMESPACE) or {}
        holder = (lease.get("spec") or {}).get("holderIdentity", "")
        for op in self.operators:
            if op.process is not None and holder.endswith(f"-{op.process.pid}"):
                return op
        raise RuntimeError(f"no running operator holds the Lease (holder {holder!r})")

    def time_to_target(self, name: str, since: float, timeout: float
                       ) -> tuple[float | None, float | None]:
        """Seconds from ``since`` until spec.replicas, then readyReplicas, reach TARGET."""
        spec_at = ready_at = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and ready_at is None:
            seen = self.replicas(name)
            now = time.monotonic()
            if seen is not None and spec_at is None and seen[0] >= self.TARGET:
                spec_at = round(now - since, 2)
            if seen is not None and seen[1] >= self.TARGET:
                ready_at = round(now - since, 2)
            time.sleep(0.05)
        return spec_at, ready_at


class ComponentSupervisor:
    """Starts the control plane's missing processes again (``kwokctl start cluster`` starts
    only those not running), as a kubelet restarts static pods: the controller-manager and
    the scheduler exit some seconds into an outage, when they cannot renew their leader
    leases, so one restart of etcd and the API server is not the end of it."""

    COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                  "kwok-controller")

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.restarted: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._began = 0.0

    def start(self) -> None:
        self._began = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(180)

    def missing(self) -> list[str]:
        running = {Path(argv[0]).name for _, argv in processes_with(str(self.cluster.workdir))}
        return [c for c in self.COMPONENTS if c not in running]

    def _watch(self) -> None:
        while not self._stop.is_set():
            gone = self.missing()
            if gone:
                self.restarted.append({"components": gone,
                                       "at_s": round(time.monotonic() - self._began, 1)})
                subprocess.run([str(self.cluster.bin / "kwokctl"), "start", "cluster",
                                "--name", self.cluster.name], env=self.cluster.env,
                               capture_output=True, text=True)
            self._stop.wait(0.5)


def next_tick_after(moment: float) -> float:
    return (int(moment) // 60 + 1) * 60.0


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.time()))


def kill_components(cluster: Any, names: Sequence[str]) -> list[str]:
    """SIGKILL the cluster's processes of these binaries (found by their command line,
    which holds the cluster's work directory)."""
    killed = []
    for pid, argv in processes_with(str(cluster.workdir)):
        binary = Path(argv[0]).name
        if binary in names:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(binary)
    return sorted(killed)


def processes_with(text: str) -> list[tuple[int, list[str]]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv and argv[0] and any(text in a for a in argv):
            found.append((int(entry.name), argv))
    return found


def wait_api_ready(cluster: Any, timeout: float = 180.0) -> float:
    """When the API server's /readyz first answered 200 (monotonic)."""
    conf = yaml.safe_load(cluster.kubeconfig.read_text())
    server = next(c["cluster"]["server"] for c in conf["clusters"]
                  if c["name"] == cluster.context)
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # loopback, our own cluster: only "is it up?"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"{server}/readyz", timeout=1, context=insecure) as r:
            if r.status == 200:
                return time.monotonic()
        time.sleep(0.05)
    raise TimeoutError("the API server did not answer /readyz")


def count_ticks(client: redis.Redis, queue: str, schedule: str, first_tick: float,
                until: float) -> dict[str, Any]:
    """Tasks per tick: every tick from the first to ``until`` should have exactly one. The
    tick's claim names the task sent for it; a task of the queue matching no claim, or a
    tick with no task, would break "exactly once"."""
    qk = keys.QueueKeys(queue)
    claims = {int(k.rsplit(":", 1)[1]): v for k in client.scan_iter(
        match=f"{qk.tag}:tick:{schedule}:*") if (v := client.get(k)) is not None}
    tasks = {text(task_id): Message.decode(message_json(text(body)))
             for task_id, body in client.hgetall(qk.messages).items()}
    expected = [t for t in range(int(first_tick), int(until) + 1, 60)]
    per_tick = {minute(t): int(claims.get(t) in tasks) for t in expected}
    lateness = {minute(t): round(tasks[task_id].enqueued_at - t, 2)
                for t, task_id in sorted(claims.items()) if task_id in tasks}
    claimed_ids = set(claims.values())
    by_minute = Counter(minute(m.enqueued_at) for m in tasks.values())
    return {"ticks_expected": len(expected), "tasks_per_tick": per_tick,
            "sent_after_tick_s": lateness,
            "tasks_by_minute_sent": dict(sorted(by_minute.items())),
            "tasks": len(tasks), "tasks_matching_no_tick": len(set(tasks) - claimed_ids),
            "exactly_once": all(v == 1 for v in per_tick.values())
            and len(tasks) == len(expected)}


def minute(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%H:%M")


# -- the run ------------------------------------------------------------------------------


def promises(phases: dict[str, Any]) -> dict[str, bool]:
    """What the README promises, phase by phase (everysec's losses are Redis's to own)."""
    ran = {k: v for k, v in phases.items() if isinstance(v, dict) and "lost" in v}
    no_loss = ("worker_kills", "redis_restart_always", "redis_pause", "partition")
    codes = [c for v in ran.values() for c in v.get("sigterm_exit_codes", [])]
    out = {"nothing_lost": all(ran[k]["lost"] == 0 for k in no_loss if k in ran),
           "duplicates_within_bound": all(v.get("duplicates_within_bound", True)
                                          for v in ran.values()),
           "sigterm_exit_0": all(c == 0 for c in codes),
           "workers_resume_after_faults": all(v.get("pods_resumed", True)
                                              for v in ran.values())}
    cp = phases.get("control_plane")
    if isinstance(cp, dict) and "schedule" in cp:
        out["ticks_exactly_once"] = bool(cp["schedule"]["exactly_once"])
    return out


def print_table(results: dict[str, Any]) -> None:
    phases = results["phases"]
    print()
    print(f"{'phase':<26}{'sent':>6}{'runs':>7}{'lost':>6}{'dup':>5}{'bound':>7}"
          f"{'faults':>18}{'drain s':>9}")
    for name, r in phases.items():
        if name == "control_plane" or not isinstance(r, dict):
            continue
        if "skipped" in r:
            print(f"{name:<26}  skipped: {r['skipped']}")
            continue
        bound = r.get("duplicate_bound")
        print(f"{name:<26}{r['sent']:>6}{r['runs']:>7}{r['lost']:>6}{r['duplicates']:>5}"
              f"{'-' if bound is None else bound:>7}{fault_summary(name, r):>18}"
              f"{r['drain_after_last_fault_s'] or float('nan'):>9.2f}")
    cp = phases.get("control_plane")
    if isinstance(cp, dict) and "api_server_restart" in cp:
        a, b, s = cp["api_server_restart"], cp["operator_failover"], cp["schedule"]
        print()
        print(f"API server + etcd down {a['api_down_s']:.1f}s: Deployment at {a['target']} "
              f"{seconds(a['replicas_at_target_after_api_back_s'])} after the API was back, "
              f"{a['target']} ready {seconds(a['ready_replicas_at_target_after_api_back_s'])}")
        print(f"active operator killed at {b['replicas_when_killed']} replicas: the standby "
              f"had it at {b['target']} {seconds(b['replicas_at_target_after_kill_s'])} later, "
              f"{b['target']} ready {seconds(b['ready_replicas_at_target_after_kill_s'])}")
        print(f"schedule * * * * *: tasks per tick {s['tasks_per_tick']}, sent seconds after "
              f"the tick {s['sent_after_tick_s']}; exactly once: {s['exactly_once']}")
    elif cp is not None:
        print(f"\ncontrol plane: {cp}")
    print()
    for name, ok in results["promises"].items():
        print(f"{name:<30}{'yes' if ok else 'NO'}")


def seconds(value: float | None) -> str:
    return "never (timed out)" if value is None else f"{value:.2f}s"


def fault_summary(name: str, r: dict[str, Any]) -> str:
    if name == "worker_kills":
        terms = sum(1 for s in r["sigterms"] if s["reason"] != "end of phase")
        return f"{len(r['sigkills'])} KILL {terms} TERM"
    if name.startswith("redis_restart"):
        return f"crash {r['down_s']:.1f}s"
    if name == "redis_pause":
        return f"STOP {r['paused_s']:.1f}s"
    if name == "partition":
        return f"cut {r['link_down_s']:.1f}s"
    return ""


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


def summary_line(r: dict[str, Any]) -> str:
    if "lost" in r:
        return f"sent {r['sent']}, lost {r['lost']}, duplicates {r['duplicates']}"
    return ", ".join(f"{k}" for k in r)


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
