"""The benchmarks' short forms: every peer of bench/throughput.py starts, runs the
shared task body to the end and is torn down; bench/pools.py measures each figure
with 100 pools. Figures are not judged here (no timing
assertions in tests); `make bench` produces the ones the README and docs/ quote."""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import pytest

from bench.throughput import SYSTEMS
from testenv.processes import run_to_the_end


@pytest.mark.timeout(1000)
def test_throughput_quick_runs_every_peer_to_completion(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    mark = f"throughput-{uuid.uuid4()}"
    run = run_to_the_end([sys.executable, "bench/throughput.py", "--quick", "--tasks", "100",
                          "--json", str(out)], timeout=900, env={MARK: mark})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert set(results["systems"]) == {cls.name for cls in SYSTEMS}
    for name, row in results["systems"].items():
        assert row["guarantee"] in ("at-least-once", "at-most-once"), name
        for width, figures in row["processes"].items():
            # A rate is only written once the counter saw every body run.
            assert figures["median"] > 0, f"{name} x{width}"
        assert row["enqueue_per_second"] > 0, name
    assert any(k.startswith("taskfleet_vs_fastest_at_least_once") for k in results["ratios"])
    assert processes_marked(mark) == [], "every worker the benchmark started is stopped"


@pytest.mark.timeout(1000)
def test_pools_quick_measures_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "pools.json"
    run = run_to_the_end([sys.executable, "bench/pools.py", "--quick", "--json", str(out)],
                         timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["cycle"]["queues"] == 100
    assert results["cycle"]["redis_ms_per_cycle"] > 0
    operator = results["operator"]
    assert operator["pools"] == 100 and operator["rss_mb"] > 0
    assert operator["reaction_among_all"]["samples"] == 2, "every burst was answered"
    assert operator["reaction_alone"]["samples"] == 2
    assert results["memory"]["registry_kb_per_pool"] > 0


MARK = "TASKFLEET_TEST_MARK"
"""An environment variable every process a benchmark starts inherits: its leftovers are
found by it, not mixed up with other tests' processes running in parallel."""


def processes_marked(mark: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            if f"{MARK}={mark}".encode() in environ:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace"))
        except OSError:
            continue
    return found
