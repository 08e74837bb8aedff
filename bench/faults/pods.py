"""Worker pods: ``taskfleet worker --pool processes`` process groups, started, killed and
scaled down as a ReplicaSet and a kubelet would."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import redis

from bench.faults.ledger import Ledger
from bench.faults.plan import CONCURRENCY, LEASE_SECONDS, TASK_APP
from bench.peers.chaos_tasks import LEDGER_ENV
from taskfleet import keys, live_workers
from testenv.processes import ROOT, WorkerProcess, children_of
from testenv.waiting import wait_for


class Pod(WorkerProcess):
    """One worker pod: a supervisor and its two children in a process group of its own,
    its log in ``log_dir``."""

    def __init__(self, name: str, queue: str, broker_url: str, ledger_url: str,
                 log_dir: Path, wrap: Callable[[list[str]], list[str]] | None = None) -> None:
        """``wrap``: how to run its command line instead (in a network namespace)."""
        super().__init__(broker_url, TASK_APP, [queue], pool="processes",
                         concurrency=CONCURRENCY, options=["--log-level", "INFO"],
                         extra=["--task-lease-seconds", str(LEASE_SECONDS)],
                         env={LEDGER_ENV: ledger_url, "POD_NAME": name,
                              "PYTHONPATH": str(ROOT)},
                         log=log_dir / f"{name}.log")
        if wrap is not None:
            self.argv = wrap(self.argv)
        self.name = name
        self.terminated_at: float | None = None
        self.exited_at: float | None = None
        self.pids: set[int] = set()
        """Every child process seen: the ledger names executions by pid."""

    def children(self) -> list[int]:
        """The supervisor's worker processes now (and remembered in ``pids``)."""
        found = children_of(self.pid)
        self.pids.update(found)
        return found

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a node loss would. A group already gone is
        no error: the thread noting a SIGTERMed pod's exit may just have reaped it."""
        with contextlib.suppress(ProcessLookupError):
            self.kill_group()

    def terminate(self) -> None:
        """SIGTERM to the supervisor only, as a kubelet sends it to a container's PID 1;
        the supervisor forwards it to its children."""
        self.terminated_at = time.monotonic()
        self.signal(signal.SIGTERM)
        threading.Thread(target=self._note_exit, daemon=True).start()

    def _note_exit(self) -> None:
        assert self.process is not None
        self.process.wait()
        self.exited_at = time.monotonic()

    def exit_code(self, timeout: float) -> int | None:
        """The exit code after a SIGTERM; None (and the group SIGKILLed) when the drain
        did not end in time."""
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def serving(self) -> bool:
        """A worker process of the pod has logged that it serves (its supervisor holds the
        stop signals by then)."""
        return " serving " in self.output()

    def children_drained(self) -> bool:
        """Every worker process that started serving also logged its clean stop."""
        lines = self.output().splitlines()
        serving = sum(1 for line in lines if " serving " in line)
        stopped = sum(1 for line in lines if line.endswith(" stopped"))
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
        return [p for p in self.pods if p.running() and p.terminated_at is None]

    def wait_serving(self, client: redis.Redis, timeout: float = 60.0) -> None:
        """Until every live pod's processes send heartbeats (imports done, connected)."""
        names = {p.name for p in self.live}
        wait_for(f"{len(names) * CONCURRENCY} workers' heartbeats", lambda: sum(
            1 for w in live_workers(client) if w.pod in names) >= len(names) * CONCURRENCY,
            timeout, interval=0.1)
        for pod in self.live:
            pod.children()

    def scale_down(self, pod: Pod, reason: str) -> None:
        pod.children()
        pod.terminate()
        self.sigterms.append({"pod": pod.name, "reason": reason})

    def scale_to_zero(self, timeout: float = 60.0) -> None:
        """SIGTERM every live pod, each once it serves: a replacement started moments ago
        may still be starting Python, and a SIGTERM before an interpreter runs any code
        kills it (-15) whatever the worker does (the window docs/guarantees-and-chaos.md
        names)."""
        for pod in self.live:
            wait_for(f"{pod.name} serving before its SIGTERM", pod.serving, timeout,
                     describe=pod.output)
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


def heartbeat_busy(client: redis.Redis, pod: Pod) -> int:
    return sum(w.busy for w in live_workers(client) if w.pod == pod.name)


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
