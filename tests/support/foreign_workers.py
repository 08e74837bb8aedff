"""Real ``celery worker`` and ``rq worker`` processes (the pinned Celery 5 and RQ from
pyproject's ``bench`` extra), named like the pods they stand for, always stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.support.processes import ROOT, terminate

BIN = Path(sys.executable).parent
CELERY_APP = "tests.integration.apps.celery_tasks:app"


class ForeignWorker:
    """One worker process of another task system; ``name`` is the pod it stands for."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path | None) -> None:
        self.argv = argv
        self.env = {**os.environ, **env}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ForeignWorker:
        out = open(self.log, "ab") if self.log else None  # noqa: SIM115 (the child keeps it)
        try:
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT if out else None,
                                            start_new_session=True)
        finally:
            if out is not None:
                out.close()
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        terminate(self.process, timeout=20)
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
