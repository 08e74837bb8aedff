"""The processes pool: N single-task worker processes under one supervisor.

Each child is ``taskfleet pool-child``: an ``inline`` worker of concurrency 1 with its
own Redis connection, its settings built once here and handed to it whole in its
environment (settings.PoolChildSettings; the broker URL never on a command line), so a
task can be interrupted for its time limit and a crashing task takes down only its own
process. The supervisor forwards stops
(Kubernetes sends SIGTERM to PID 1 only), restarts children that die
unexpectedly, and exits 0 once every child has drained. A child whose
supervisor dies (SIGKILL, the OOM killer) is told by the kernel and exits at
once, its tasks back in their queue (signals.exit_with_parent).

A stop may come at any moment, also while a child is still starting Python and
has no handler yet: children start with the stop signals blocked (they wait in
the kernel until the child holds them), and every child started is told of
every stop, even one that came while it was being started. The first stop asks
the children to drain (SIGTERM; a child that also got it from the process group
drains once); a second returns their running tasks at once (signals.FORCE_STOP).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from . import signals
from .cli import POOL_CHILD
from .settings import POOL_CHILD_ENV, PoolChildSettings
from .signals import SUPERVISOR_PID_ENV, take_held

log = logging.getLogger("taskfleet.worker")


class Supervisor:
    def __init__(self, child: PoolChildSettings, processes: int) -> None:
        self.child_env = {POOL_CHILD_ENV: child.encode()}
        self.processes = processes
        self.children: list[subprocess.Popen[bytes]] = []
        self.stops = 0
        """Stop signals received: 1 drains, 2 or more also return running tasks."""
        self.told: dict[int, int] = {}
        """Per child pid, the stops it was told of (at most 2)."""

    @property
    def draining(self) -> bool:
        return self.stops > 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, **self.child_env, SUPERVISOR_PID_ENV: str(os.getpid())}
        with signals.blocked():  # a stop before the child's handler waits for it
            return subprocess.Popen([sys.executable, "-m", "taskfleet", POOL_CHILD], env=env)

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stops += 1
        self._tell_children()

    def _tell_children(self) -> None:
        """Tell every live child of the stops it has not heard of yet. Called by the
        signal handler and again by the loop, for a child started while the handler
        ran; a child told twice of a drain drains once."""
        level = min(self.stops, 2)
        for child in list(self.children):
            if self.told.get(child.pid, 0) >= level or child.poll() is not None:
                continue
            self.told[child.pid] = level
            child.send_signal(signal.SIGTERM if level == 1 else signals.FORCE_STOP)

    def run(self) -> int:
        for sig in signals.STOP_SIGNALS:
            signal.signal(sig, self._on_stop)
        self.stops += len([s for s in take_held() if s in signals.STOP_SIGNALS])
        if self.draining:  # stopped while loading the app: nothing to start, nothing to drain
            return 0
        while len(self.children) < self.processes and not self.draining:
            self.children.append(self._spawn())
        restarts: list[float] = []
        failed: dict[int, int] = {}
        """Children that did not exit 0 while draining: their tasks run again elsewhere,
        and the exit code says so instead of hiding it."""
        while True:
            self._tell_children()
            alive = False
            for i, child in enumerate(self.children):
                code = child.poll()
                if code is None:
                    alive = True
                    continue
                if self.draining:
                    if code != 0 and child.pid not in failed:
                        failed[child.pid] = code
                        log.error("worker process %d exited with %s while draining", child.pid,
                                  code)
                    continue
                # An unexpected exit (a crash, the OOM killer): its task's lease
                # expires and the task runs again; the slot gets a new process.
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < 60] + [now]
                log.error("worker process %d exited with %s; starting another", child.pid, code)
                if len(restarts) > 5 * self.processes:
                    time.sleep(1.0)
                    if self.draining:
                        continue
                self.children[i] = self._spawn()  # told by the next pass if a stop came
                alive = True
            if self.draining and not alive:
                return 1 if failed else 0
            time.sleep(0.2)
