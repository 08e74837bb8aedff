"""Worker processes started by tests, always stopped at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``taskfleet worker`` as a real process (``python -m taskfleet``)."""

    def __init__(self, broker_url: str, app: str, queues: Sequence[str], *,
                 concurrency: int = 1, pool: str = "threads", extra: Sequence[str] = (),
                 env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.argv = [sys.executable, "-m", "taskfleet", "--broker", broker_url, "worker",
                     "--app", app, "--queues", ",".join(queues), "--concurrency",
                     str(concurrency), "--pool", pool, *extra]
        self.env = {**os.environ, "TASKFLEET_BROKER_URL": broker_url, **(env or {})}
        self.log = log
        """Where its output goes (default: the test's own output)."""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
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

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill_group(self) -> None:
        """SIGKILL the worker and any children, as a node loss would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        terminate(self.process)


def terminate(process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """SIGTERM a process group's leader, then SIGKILL the group if it does not exit in time."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc), such as a pool's children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found
