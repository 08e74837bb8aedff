"""SIGTERM at any moment of a worker's life ends in exit code 0 with nothing lost.

Each test starts real workers again and again against a real redis-server and stops
each one once, at a different moment: while its app is still importing (an import of
0.25 s, as a large code base's), right after a processes pool's children exist and
are still starting Python, while tasks run, and while it drains (a second signal).
The signal goes to the top process only, as a kubelet sends it to a container's PID 1,
or to the whole process group, as a terminal's Ctrl-C or ``kill -- -PGID`` sends it.

After every stop: exit code 0; no process of the worker left; nothing leased, dead or
delayed; every task that started also finished (one SIGTERM drains, it does not
interrupt); no task ran twice; the rest are back in the queue. A last worker then runs
what was returned, so every task sent ran exactly once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from taskfleet import App, queue_stats
from testenv.processes import WorkerProcess, children_of
from testenv.waiting import wait_for
from tests.integration.apps.stops import DONE, STARTED

APP = "tests.integration.apps.stops:app"
QUEUE = "stops"
IMPORT_SECONDS = 0.25
TASK_SECONDS = 0.03
READY = 30
"""Tasks waiting when each worker starts: some run before the signal, the rest wait."""


@dataclass(frozen=True)
class Moment:
    """When the signal goes out: ``delay`` seconds after ``anchor`` is seen."""

    anchor: str
    """'catching': the top process has a SIGTERM handler (its first moment as taskfleet);
    'children': the pool's children exist (they are still starting Python);
    'running': a task of this start has begun."""
    delay: float
    group: bool = False
    """To the whole process group instead of the top process only."""
    again_after: float | None = None
    """A second signal this long after the first (while it drains)."""

    def __str__(self) -> str:
        again = f", again after {self.again_after:g}s" if self.again_after is not None else ""
        to = "the group" if self.group else "the top process"
        return f"SIGTERM to {to} {self.delay:g}s after {self.anchor}{again}"


def moments(pool: str, group: bool) -> list[Moment]:
    found = [Moment("catching", d, group) for d in
             (0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3)]
    if pool == "processes":
        found += [Moment("children", d, group) for d in (0, 0.01, 0.03, 0.06, 0.1, 0.15, 0.25)]
    found += [Moment("running", d, group) for d in (0, 0.05, 0.15)]
    found += [Moment("running", 0.02, group, again_after=a) for a in (0, 0.01, 0.05, 0.2)]
    return found


def catches_sigterm(pid: int) -> bool:
    """The kernel's word that the process has a handler for SIGTERM."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return False


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (zombies not counted)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def left_behind(pgid: int) -> list[int]:
    """Processes of the group still alive 5 s after its leader exited (then SIGKILLed)."""
    if poll(lambda: not group_members(pgid), 5):
        return []
    left = group_members(pgid)
    os.killpg(pgid, signal.SIGKILL)
    return left


def poll(probe: Callable[[], object], timeout: float) -> bool:
    """Poll every millisecond, without the sleep of wait_for's default interval."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.001)
    return False


class Ledger:
    """What was sent, what started and what finished, from Redis."""

    def __init__(self, app: App, client: redis.Redis) -> None:
        self.app = app
        self.client = client
        self.sent: list[str] = []
        self.forced: set[str] = set()
        """Tasks a second signal returned while they ran: at-least-once lets them run
        again (a threads pool's body may still finish as the process exits)."""

    def top_up(self) -> None:
        missing = READY - queue_stats(self.app.redis, [QUEUE])[QUEUE].ready
        keys = [f"t{len(self.sent) + i}" for i in range(missing)]
        for key in keys:
            self.app.send_task("stops.work", [key, TASK_SECONDS], queue=QUEUE)
        self.sent += keys

    def started(self) -> set[str]:
        return {str(k) for k in self.client.smembers(STARTED)}

    def done(self) -> list[str]:
        return [str(k) for k in self.client.lrange(DONE, 0, -1)]

    def twice(self) -> set[str]:
        done = self.done()
        return {k for k in done if done.count(k) > 1} - self.forced

    def problems(self, drained: bool) -> list[str]:
        """What is wrong with the queue and the ledger now that no worker runs."""
        found = []
        stats = queue_stats(self.app.redis, [QUEUE])[QUEUE]
        if (stats.in_flight, stats.dead, stats.delayed) != (0, 0, 0):
            found.append(f"left leased {stats.in_flight}, dead {stats.dead}, delayed "
                         f"{stats.delayed}")
        done = set(self.done())
        unfinished = self.started() - done
        if not drained:
            self.forced |= unfinished | {k for k in self.done() if self.done().count(k) > 1}
        if self.twice():
            found.append(f"ran twice: {sorted(self.twice())}")
        if drained and unfinished:
            found.append(f"started but interrupted instead of drained: {sorted(unfinished)}")
        back = len(self.sent) - len(done)
        if stats.ready < back or (drained and stats.ready != back):
            found.append(f"lost: {len(self.sent)} sent, {len(done)} done, {stats.ready} "
                         "back in the queue")
        return found


@pytest.fixture
def ledger(redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[Ledger]:
    monkeypatch.setenv("TASKFLEET_BROKER_URL", redis_url)
    yield Ledger(App(redis_url), redis_client)


def start_worker(redis_url: str, pool: str, log: Path) -> WorkerProcess:
    concurrency = 1 if pool == "inline" else 2
    return WorkerProcess(redis_url, APP, [QUEUE], pool=pool, concurrency=concurrency,
                         extra=["--drain-timeout", "30"], log=log,
                         env={"STOPS_IMPORT_SECONDS": str(IMPORT_SECONDS)}).start()


def stop_at(w: WorkerProcess, moment: Moment, pool: str, ledger: Ledger) -> str | None:
    """Send the signal(s) at ``moment``; None, or what kept it from that moment."""
    started_before = len(ledger.started())
    anchors: dict[str, Callable[[], object]] = {
        "catching": lambda: catches_sigterm(w.pid),
        "children": lambda: len(children_of(w.pid)) == 2,
        "running": lambda: len(ledger.started()) > started_before,
    }
    if not poll(anchors[moment.anchor], 30) or not w.running():
        return f"never saw {moment.anchor} (exit code {w.process and w.process.poll()})"
    time.sleep(moment.delay)

    def send() -> None:
        if moment.group:
            os.killpg(w.pid, signal.SIGTERM)
        else:
            w.signal(signal.SIGTERM)

    send()
    if moment.again_after is not None:
        time.sleep(moment.again_after)
        if w.running():
            send()
    return None


def stop_at_every_moment(redis_url: str, ledger: Ledger, workers: list[WorkerProcess],
                         tmp_path: Path, pool: str, group: bool) -> None:
    failures = []
    every = moments(pool, group)
    for n, moment in enumerate(every):
        ledger.top_up()
        w = start_worker(redis_url, pool, tmp_path / f"worker-{n}.log")
        workers.append(w)
        missed = stop_at(w, moment, pool, ledger)
        try:
            code: int | None = w.wait(60)
        except Exception:
            code = None
        left = left_behind(w.pid)
        problems = ([missed] if missed else []) + ([] if code == 0 else [f"exit code {code}"])
        problems += [f"processes left: {left}"] if left else []
        problems += ledger.problems(drained=moment.again_after is None)
        if problems:
            tail = "\n    ".join(w.output().splitlines()[-6:])
            failures.append(f"{moment}: {'; '.join(problems)}\n    {tail}")
    # What the stops returned is still runnable: a last worker runs all of it, once each.
    final = start_worker(redis_url, pool, tmp_path / "worker-final.log")
    workers.append(final)
    wait_for("every task sent done", lambda: len(set(ledger.done())) == len(ledger.sent), 60,
             describe=lambda: f"{len(set(ledger.done()))} of {len(ledger.sent)} done")
    final.signal(signal.SIGTERM)
    assert final.wait(30) == 0
    assert sorted(set(ledger.done())) == sorted(ledger.sent), "every task ran"
    assert not ledger.twice(), "only a task returned while it ran may run twice"
    assert not failures, f"{len(failures)} of {len(every)} stops went wrong:\n" + \
        "\n".join(failures)


@pytest.mark.parametrize("group", [False, True], ids=["to-pid-1", "to-the-group"])
def test_processes_pool_sigterm_at_any_moment_exits_0_and_loses_nothing(
        redis_url: str, ledger: Ledger, workers: list[WorkerProcess], tmp_path: Path,
        group: bool) -> None:
    stop_at_every_moment(redis_url, ledger, workers, tmp_path, "processes", group)


@pytest.mark.parametrize("pool", ["threads", "inline"])
def test_single_process_pools_sigterm_at_any_moment_exit_0_and_lose_nothing(
        redis_url: str, ledger: Ledger, workers: list[WorkerProcess], tmp_path: Path,
        pool: str) -> None:
    stop_at_every_moment(redis_url, ledger, workers, tmp_path, pool, False)
