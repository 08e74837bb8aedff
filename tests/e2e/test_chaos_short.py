"""The short chaos run (bench/chaos.py --short): 1,000 tasks through worker kills and
scale-downs, a Redis crash and restart, a Redis pause and a network partition, in about
a minute; what docs/guarantees-and-chaos.md promises is checked from its JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from testenv.netns import VethNamespace, netns_available
from testenv.processes import ROOT, run_to_the_end

NOTHING_LOST = ("worker_kills", "redis_restart_always", "redis_restart_everysec",
                "redis_pause", "partition")
"""Phases where docs/guarantees-and-chaos.md promises no loss. With appendfsync everysec
too: a SIGKILL of Redis leaves what it wrote in the kernel's page cache (only a machine
crash can cost the last second), so that phase loses nothing either. The control-plane
phase is not in the short run (that page says so); `make chaos` runs it."""


def run_short_chaos(tmp_path: Path, timeout: float = 240.0) -> dict[str, Any]:
    """Run it as a user would; on a timeout SIGTERM it, so its finally blocks stop every
    pod, server and namespace, before the test fails."""
    out = tmp_path / "chaos.json"
    run = run_to_the_end([sys.executable, str(ROOT / "bench" / "chaos.py"), "--short",
                          "--json", str(out), "--logs", str(tmp_path / "logs")], timeout)
    output = run.stdout + run.stderr
    assert out.exists(), f"no JSON written (exit {run.returncode}):\n{output[-4000:]}"
    results: dict[str, Any] = json.loads(out.read_text())
    results["output"] = output
    results["pid"] = run.pid
    return results


def processes_writing_to(directory: Path) -> list[str]:
    """Processes that still hold a file of ``directory`` open (the pods' logs)."""
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            targets = [os.readlink(fd) for fd in fd_dir.iterdir()]
        except OSError:
            continue
        if any(t.startswith(str(directory)) for t in targets):
            found.append(fd_dir.parent.name)
    return found


@pytest.mark.timeout(400)
def test_short_chaos_run_loses_nothing_it_promises(tmp_path: Path) -> None:
    results = run_short_chaos(tmp_path)
    phases, output = results["phases"], results["output"][-4000:]
    if netns_available() is None:
        assert "skipped" not in phases["partition"], phases["partition"]
    assert results["parameters"]["tasks"] >= 1000, results["parameters"]
    for name in NOTHING_LOST:
        phase = phases[name]
        assert "skipped" not in phase or name == "partition", f"{name}: {phase}"
        if "skipped" in phase:
            continue
        assert phase["drained"], f"{name}: the backlog did not drain\n{output}"
        assert phase["lost"] == 0, f"{name}: lost {phase['lost_indices']}\n{output}"
    for name, phase in phases.items():
        if "skipped" in phase or "lost" not in phase:
            continue
        codes = phase["sigterm_exit_codes"]
        assert codes and all(c == 0 for c in codes), f"{name}: SIGTERM exit codes {codes}"
        assert all(s["children_drained"] for s in phase["sigterms"]), phase["sigterms"]
        if "duplicate_bound" in phase:
            assert phase["duplicates"] <= phase["duplicate_bound"], \
                f"{name}: {phase['duplicates']} duplicates over the bound " \
                f"{phase['duplicate_bound']}"
    kills = phases["worker_kills"]
    assert kills["sigkills"] and len(kills["sigterm_exit_codes"]) > kills["pods"], \
        "the run killed and scaled down pods"
    if "skipped" not in phases["partition"]:
        assert phases["partition"]["cut_off_pod_resumed"], phases["partition"]
    assert results["promises"]["nothing_lost"] and results["promises"]["sigterm_exit_0"]

    # and nothing of the run outlives it: no pod, no namespace, no veth, no mount
    assert not processes_writing_to(tmp_path / "logs")
    namespace = f"tfchaos{results['pid']}"
    assert namespace not in Path("/proc/self/mountinfo").read_text()
    if netns_available() is None:
        assert not VethNamespace(namespace, slot=results["pid"]).exists()
