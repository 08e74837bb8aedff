"""The stop signals of a worker process, without Redis: held from the first milliseconds
of the worker command, held across a pool child's start, ignored once the work is done.
(tests/integration/test_stop_at_any_moment.py stops real workers at every moment.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from taskfleet import signals
from testenv.processes import ROOT


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_worker_command_holds_stop_signals_before_importing_redis_or_the_app() -> None:
    # Everything before the hold is time in which SIGTERM kills the process (-15).
    code = """
import sys
import taskfleet.signals as signals
hold = signals.hold_stop_signals
def spy():
    hold()
    print(sorted(m for m in ("redis", "taskfleet.app", "taskfleet.worker") if m in sys.modules))
    raise SystemExit(0)
signals.hold_stop_signals = spy
sys.argv = ["taskfleet", "--broker", "redis://127.0.0.1:1/0", "worker", "--app", "x:app"]
from taskfleet.cli import main
main()
"""
    done = subprocess.run(python(code), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout


def test_a_stop_sent_while_a_child_starts_python_waits_for_its_hold() -> None:
    # What the supervisor does for each child: started with the stop signals blocked, a
    # SIGTERM sent before the child has any handler is held by it, not its death.
    code = """
import time

import pytest
time.sleep(0.5)  # the interpreter's start and imports, long
from taskfleet import signals
signals.hold_stop_signals()
print(signals.take_held())
"""
    with signals.blocked():
        child = subprocess.Popen(python(code), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child.send_signal(signal.SIGTERM)
    child.send_signal(signals.FORCE_STOP)
    out, _ = child.communicate(timeout=60)
    assert child.returncode == 0, f"exit code {child.returncode}"
    assert sorted(int(s) for s in out.strip("[]\n").split(",")) == sorted(
        [signal.SIGTERM, signals.FORCE_STOP])


def test_blocked_restores_the_signal_mask() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    with signals.blocked():
        assert set(signals.HELD_SIGNALS) <= signal.pthread_sigmask(signal.SIG_BLOCK, [])
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def test_a_worker_that_is_done_outlives_a_late_stop() -> None:
    # Python's shutdown puts back the default action of the signals it handled; a stop
    # in the last milliseconds would end a drained worker with -15 instead of 0.
    code = """
import os, signal, time
from taskfleet import signals
signals.hold_stop_signals()
signals.ignore_stop_signals()
os.kill(os.getpid(), signal.SIGTERM)
os.kill(os.getpid(), signal.SIGINT)
time.sleep(0.1)
"""
    started = time.monotonic()
    done = subprocess.run(python(code), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr)
    assert time.monotonic() - started < 30


LOCKS_OF_THE_LOOP = {
    "the keeper's wake-up event": "worker._beat_now._cond",
    "the notices queue": "worker.notices.mutex",
    "the worker's own lock": "worker._lock",
}


@pytest.mark.parametrize("signals_sent", [["SIGTERM"], ["SIGTERM", "FORCE_STOP"],
                                          ["SIGTERM", "SIGTERM"]])
@pytest.mark.parametrize("lock", sorted(LOCKS_OF_THE_LOOP))
def test_a_stop_that_lands_while_the_loop_holds_a_lock_does_not_deadlock_the_worker(
        lock: str, signals_sent: list[str]) -> None:
    # A handler runs in the main thread between two of its bytecodes, also while that
    # thread is inside Event.set or a queue's get: a handler that takes the same lock
    # waits for itself forever (a pool child stopped twice within milliseconds hung so,
    # its task leased until the lease expired). SIGALRM's default action ends a hung
    # child with -14.
    by_name = {"SIGTERM": int(signal.SIGTERM), "FORCE_STOP": int(signals.FORCE_STOP)}
    code = f"""
import os, signal
from taskfleet import App, signals
from taskfleet.worker import Worker, WorkerSettings
worker = Worker(App("redis://127.0.0.1:1/0"), WorkerSettings(queues=["q"], pool="inline"))
read_end, worker._signal_pipe = os.pipe()
signal.signal(signal.SIGTERM, worker._on_signal)
signal.signal(signals.FORCE_STOP, worker._on_force_stop)
signal.alarm(10)
with {LOCKS_OF_THE_LOOP[lock]}:
    for name in {signals_sent!r}:
        os.kill(os.getpid(), {by_name}[name])
        sum(range(1000))  # bytecodes: the handler runs here, with the lock held
signal.alarm(0)
print(worker.draining, worker.forced, list(os.read(read_end, 64)))
"""
    done = subprocess.run(python(code), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"exit code {done.returncode} (-14: deadlocked)\n{done.stderr}"
    forced = len(signals_sent) == 2  # a second SIGTERM of an unsupervised worker forces too
    events = [1, by_name[signals_sent[0]]] + ([2, by_name[signals_sent[1]]] if forced else [])
    assert done.stdout.split(" ", 2) == ["True", str(forced), f"{events}\n"], done.stdout
