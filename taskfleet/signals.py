"""Signals a worker process must not miss: a stop that arrives while it starts, and
the death of the supervisor of a processes pool."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
from types import FrameType

log = logging.getLogger("taskfleet.worker")

ORPHANED = signal.SIGUSR2
"""Sent by the kernel to a pool child when its supervisor dies (PR_SET_PDEATHSIG)."""
SUPERVISOR_PID_ENV = "TASKFLEET_SUPERVISOR_PID"
"""Set by the supervisor in its children's environment."""

_held: list[int] = []


def hold_stop_signals() -> None:
    """Keep SIGTERM and SIGINT that arrive before the worker handles them.

    Importing and loading an app can take seconds; a pod deleted meanwhile would
    otherwise die by the signal (exit -15) instead of draining nothing and exiting
    0. The worker or supervisor replays what was held (take_held).
    """
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _hold)


def _hold(signum: int, frame: FrameType | None) -> None:
    _held.append(signum)


def take_held() -> list[int]:
    taken = list(_held)
    _held.clear()
    return taken


def exit_with_parent(parent_pid: int) -> None:
    """Ask the kernel for ORPHANED when the parent dies, so a pool child never outlives
    its supervisor (SIGKILL, OOM kill) to keep taking tasks with nobody to drain it."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_pdeathsig = 1
    if libc.prctl(pr_set_pdeathsig, int(ORPHANED), 0, 0, 0) != 0:
        log.warning("cannot ask to be told of the supervisor's death (errno %d)",
                    ctypes.get_errno())
    if os.getppid() != parent_pid:  # it died before the request took effect
        os.kill(os.getpid(), ORPHANED)
