"""The process and waiting helpers that tests and benchmarks share (testenv)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from testenv.processes import (
    WorkerProcess,
    children_of,
    cpu_seconds,
    processes_with,
    rss_mb,
)
from testenv.waiting import WaitTimedOut, wait_for


def test_a_process_is_found_by_an_argument_and_as_its_parent_s_child() -> None:
    marker = f"marker-{uuid.uuid4()}"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        found = wait_for("the child's command line", lambda: processes_with(marker), 10,
                         interval=0.01)  # until its exec: a fork's is its parent's
        assert [pid for pid, _ in found] == [child.pid]
        assert marker in found[0][1]
        assert child.pid in children_of(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert processes_with(marker) == []


def test_a_process_s_cpu_time_and_memory_come_from_proc() -> None:
    sum(range(200_000))  # some CPU time of its own
    assert cpu_seconds(os.getpid()) > 0
    assert 1 < rss_mb(os.getpid()) < 100_000
    with pytest.raises(OSError):
        cpu_seconds(2**22 + 1)  # above the kernel's pid_max: no such process


def test_a_wait_that_runs_out_of_time_is_a_failed_assertion_of_its_own_kind() -> None:
    with pytest.raises(WaitTimedOut, match="waiting for nothing; last value: 0"):
        wait_for("nothing", lambda: 0, timeout=0.05, interval=0.01)
    assert issubclass(WaitTimedOut, AssertionError)
    assert wait_for("something", lambda: 7, timeout=1) == 7


def test_a_worker_s_command_options_go_before_the_worker_s_own() -> None:
    argv = WorkerProcess("redis://127.0.0.1:1/0", "m:app", ["a", "b"], pool="processes",
                         options=["--log-level", "INFO"], extra=["--task-lease-seconds", "2"],
                         env={"POD_NAME": "p"}).argv
    assert argv[argv.index("--log-level"):argv.index("worker") + 1] == \
        ["--log-level", "INFO", "worker"]
    assert argv[argv.index("worker"):] == ["worker", "--app", "m:app", "--queues", "a,b",
                                           "--concurrency", "1", "--pool", "processes",
                                           "--task-lease-seconds", "2"]
