"""Real ``celery worker`` and ``rq worker`` processes (the pinned Celery 5 and RQ from
pyproject's ``bench`` extra), named like the pods they stand for, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from testenv.processes import ROOT, LoggedProcess, terminate

BIN = Path(sys.executable).parent
CELERY_APP = "tests.integration.apps.celery_tasks:app"


class ForeignWorker(LoggedProcess):
    """One worker process of another task system, standing for a pod."""

    def stop(self) -> None:
        terminate(self.process, timeout=20)  # Celery's warm shutdown takes its time
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):  # children left behind
                os.killpg(self.process.pid, signal.SIGKILL)


def celery_worker(broker_url: str, pod: str, queues: Sequence[str], *, concurrency: int = 1,
                  log: Path | None = None) -> ForeignWorker:
    """``celery worker`` as a runtime celery pool's pod runs it (hostname celery@<pod>)."""
    return ForeignWorker([str(BIN / "celery"), "-A", CELERY_APP, "worker", "-Q",
                          ",".join(queues), "--concurrency", str(concurrency), "--pool",
                          "prefork", "--hostname", f"celery@{pod}", "--loglevel", "INFO"],
                         {"CELERY_BROKER_URL": broker_url}, log)


def rq_worker(broker_url: str, pod: str, queues: Sequence[str], *,
              log: Path | None = None) -> ForeignWorker:
    """``rq worker`` as a runtime rq pool's pod runs it (worker name = pod name)."""
    return ForeignWorker([str(BIN / "rq"), "worker", "--name", pod, *queues],
                         {"RQ_REDIS_URL": broker_url, "PYTHONPATH": str(ROOT)}, log)
