"""Signals a worker process must not miss: a stop that arrives while it starts or while
it exits, a stop that reaches a pool child twice, and the death of the supervisor of a
processes pool.

A stop is SIGTERM or SIGINT. Between a process's start and its first handler, and
again while Python shuts down (it puts the default action back for every signal it
handled), a stop would kill the process with -15 instead of draining. So:

- ``hold_stop_signals`` is the first thing the worker command does; stops that come
  before the worker (or the supervisor) takes over are held and replayed;
- the supervisor starts each child with the stops blocked (``blocked``); a blocked
  signal waits in the kernel, so one that comes while the child's interpreter starts
  is held by the child's ``hold_stop_signals`` instead of killing it;
- ``ignore_stop_signals`` once the work is done, for the last moments of the process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger("taskfleet.worker")

ORPHANED = signal.SIGUSR2
"""Sent by the kernel to a pool child when its supervisor dies (PR_SET_PDEATHSIG)."""
FORCE_STOP = signal.SIGUSR1
"""Return running tasks to their queues now and exit: what a pool's supervisor sends its
children on its second stop, and what a worker sends itself when its drain window is
over. A repeated SIGTERM cannot say it to a pool child, which may get every stop twice
(once from the process group, once from its supervisor)."""
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HELD_SIGNALS = (*STOP_SIGNALS, FORCE_STOP)
SUPERVISOR_PID_ENV = "TASKFLEET_SUPERVISOR_PID"
"""Set by the supervisor in its children's environment."""

_held: list[int] = []


def hold_stop_signals() -> None:
    """Keep SIGTERM, SIGINT and FORCE_STOP that arrive before the worker handles them.

    Importing and loading an app can take seconds; a pod deleted meanwhile would
    otherwise die by the signal (exit -15) instead of draining nothing and exiting
    0. The worker or supervisor replays what was held (take_held). The signals are
    unblocked last: a pool child starts with them blocked, and what came while its
    interpreter started is held now.
    """
    for sig in HELD_SIGNALS:
        signal.signal(sig, _hold)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_SIGNALS)


def _hold(signum: int, frame: FrameType | None) -> None:
    _held.append(signum)


def take_held() -> list[int]:
    taken = list(_held)
    _held.clear()
    return taken


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """Block the held signals in this thread meanwhile; a process started meanwhile
    starts with them blocked (the mask survives fork and exec)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_stop_signals() -> None:
    """The work is done and the process exits: a stop now has nothing left to stop.

    Without this, Python's shutdown restores the default action of every signal it
    handled, and a stop in those last milliseconds (a pool child's second copy of a
    stop, a supervisor's late forward) would end the process with -15.
    """
    for sig in (*HELD_SIGNALS, ORPHANED):
        signal.signal(sig, signal.SIG_IGN)


def exit_with_parent(parent_pid: int) -> None:
    """Ask the kernel for ORPHANED when the parent dies, so a pool child never outlives
    its supervisor (SIGKILL, OOM kill) to keep taking tasks with nobody to drain it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_pdeathsig = 1
    if libc.prctl(pr_set_pdeathsig, int(ORPHANED), 0, 0, 0) != 0:
        log.warning("cannot ask to be told of the supervisor's death (errno %d)",
                    ctypes.get_errno())
    if os.getppid() != parent_pid:  # it died before the request took effect
        os.kill(os.getpid(), ORPHANED)
