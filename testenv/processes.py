"""Worker processes started by tests, always stopped at the end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Self, TypeVar

ROOT = Path(__file__).resolve().parents[1]


class LoggedProcess:
    """A process a test starts in its own session, its output in ``log`` (default: the
    test's own output), always stopped at the end."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path | None) -> None:
        self.argv = argv
        self.env = {**os.environ, **env}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
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

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def kill_group(self) -> None:
        """SIGKILL the process and any children, as a node loss would."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        terminate(self.process)


Started = TypeVar("Started", bound=LoggedProcess)


def stopped_at_end() -> Iterator[list[Started]]:
    """A fixture's body: yields the list a test appends the processes it starts to, then
    stops every one of them, whatever the test did."""
    started: list[Started] = []
    yield started
    for process in started:
        process.stop()


class WorkerProcess(LoggedProcess):
    """``taskfleet worker`` as a real process (``python -m taskfleet``)."""

    def __init__(self, broker_url: str, app: str, queues: Sequence[str], *,
                 concurrency: int = 1, pool: str = "threads", extra: Sequence[str] = (),
                 env: dict[str, str] | None = None, log: Path | None = None,
                 options: Sequence[str] = ()) -> None:
        """``extra``: more of the worker's options; ``options``: the command's own, before
        ``worker`` (``--log-level``)."""
        super().__init__([sys.executable, "-m", "taskfleet", "--broker", broker_url, *options,
                          "worker", "--app", app, "--queues", ",".join(queues),
                          "--concurrency", str(concurrency), "--pool", pool, *extra],
                         {"TASKFLEET_BROKER_URL": broker_url, **(env or {})}, log)


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


def stop_all(processes: Iterable[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """SIGTERM every process first (servers shut down side by side), then wait for each,
    SIGKILL for one that takes longer than ``timeout``."""
    processes = list(processes)
    for p in processes:
        if p.poll() is None:
            p.terminate()
    for p in processes:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _processes(read: str) -> Iterator[tuple[int, bytes]]:
    """Every process's pid and its /proc file ``read``, of those still there to read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            content = (entry / read).read_bytes()
        except OSError:
            continue
        yield int(entry.name), content


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc), such as a pool's children."""
    return [child for child, stat in _processes("stat")
            if int(stat.rsplit(b")", 1)[1].split()[1]) == pid]


def processes_with(text: str) -> list[tuple[int, list[str]]]:
    """(pid, argv) of the processes with an argument that holds ``text`` (from /proc),
    such as a cluster's components, found by its work directory."""
    found = []
    for pid, cmdline in _processes("cmdline"):
        argv = cmdline.decode(errors="replace").split("\0")
        if argv and argv[0] and any(text in a for a in argv):
            found.append((pid, argv))
    return found


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used, user and system (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """A process's resident memory in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass(frozen=True)
class Finished:
    """A command run to its end by ``run_to_the_end``."""

    pid: int
    returncode: int
    stdout: str
    stderr: str


def run_to_the_end(argv: Sequence[str], timeout: float, *, grace: float = 60.0,
                   env: dict[str, str] | None = None) -> Finished:
    """Run a command as a user would (its own session, cwd the repository) and return its
    output. If it outlives ``timeout``, or the test is interrupted (pytest's timeout, a CI
    time limit), its whole group gets SIGTERM first, so that its own cleanup stops the
    servers it started, and SIGKILL only after ``grace``. A test that calls this must
    allow ``timeout + grace`` and more (``@pytest.mark.timeout``)."""
    process = subprocess.Popen(list(argv), cwd=ROOT, env={**os.environ, **(env or {})},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException as exc:
        stdout, stderr = _stop_group(process, grace)
        if isinstance(exc, subprocess.TimeoutExpired):
            raise AssertionError(f"{' '.join(argv)} took over {timeout:g} s:\n"
                                 f"{stdout[-3000:]}\n{stderr[-3000:]}") from None
        raise
    return Finished(process.pid, process.returncode, stdout, stderr)


def _stop_group(process: subprocess.Popen[str], grace: float) -> tuple[str, str]:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        return process.communicate()
