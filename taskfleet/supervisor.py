"""The processes pool: N single-task worker processes under one supervisor.

Each child is ``taskfleet worker --pool inline --concurrency 1`` with its own
Redis connection, so a task can be interrupted for its time limit and a
crashing task takes down only its own process. The supervisor forwards
SIGTERM (Kubernetes sends it to PID 1 only), restarts children that die
unexpectedly, and exits 0 once every child has drained. A child whose
supervisor dies (SIGKILL, the OOM killer) is told by the kernel and exits at
once, its tasks back in their queue (signals.exit_with_parent).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from .signals import SUPERVISOR_PID_ENV, take_held

log = logging.getLogger("taskfleet.worker")


class Supervisor:
    def __init__(self, child_argv: Sequence[str], processes: int) -> None:
        self.child_argv = list(child_argv)
        self.processes = processes
        self.children: list[subprocess.Popen[bytes]] = []
        self.draining = False

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, SUPERVISOR_PID_ENV: str(os.getpid())}
        return subprocess.Popen([sys.executable, "-m", "taskfleet", *self.child_argv], env=env)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self.draining = True
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._forward)
        signal.signal(signal.SIGINT, self._forward)
        if take_held():  # stopped while loading the app: nothing to start, nothing to drain
            return 0
        self.children = [self._spawn() for _ in range(self.processes)]
        restarts: list[float] = []
        failed: dict[int, int] = {}
        """Children that did not exit 0 while draining: their tasks run again elsewhere,
        and the exit code says so instead of hiding it."""
        while True:
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
                self.children[i] = self._spawn()
                alive = True
            if self.draining and not alive:
                return 1 if failed else 0
            time.sleep(0.2)
