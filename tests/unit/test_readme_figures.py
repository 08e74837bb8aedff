"""The README quotes the benchmarks' committed results, not figures typed by hand."""

from __future__ import annotations

import json

from bench.report import pools_table, ratios_table, throughput_table
from bench.throughput import OURS
from tests.support.processes import ROOT


def test_the_readme_quotes_the_throughput_results() -> None:
    results = json.loads((ROOT / "bench" / "results" / "throughput.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert throughput_table(results) in readme
    assert ratios_table(results) in readme
    for row in results["systems"].values():
        assert row["settings"] in readme, "each system's settings are given"


def test_the_readme_summary_of_the_throughput_results_holds() -> None:
    results = json.loads((ROOT / "bench" / "results" / "throughput.json").read_text())
    readme = " ".join((ROOT / "README.md").read_text().split())
    systems = results["systems"]
    peers = [name for name in systems if name not in OURS]

    def median(name: str, width: str) -> float:
        return float(systems[name]["processes"][width]["median"])

    def cpu(name: str, width: str) -> float:
        return float(systems[name]["processes"][width]["worker_cpu_us_per_task"])

    fastest = max(peers, key=lambda p: median(p, "1"))
    assert max(peers, key=lambda p: median(p, "2")) == fastest
    one = median("taskfleet", "1") / median(fastest, "1")
    two = median("taskfleet", "2") / median(fastest, "2")
    times = "\N{MULTIPLICATION SIGN}"
    assert (f"did {one:.1f}{times} the tasks/s of the fastest peer here ({fastest.capitalize()}, "
            f"also {systems[fastest]['guarantee']}) with one worker process and {two:.1f}{times} "
            "with two") in readme
    for width in ("1", "2"):
        assert cpu("taskfleet", width) < 0.5 * min(cpu(p, width) for p in peers), \
            "under half the CPU per task of any peer"


def test_the_readme_quotes_the_pools_results() -> None:
    results = json.loads((ROOT / "bench" / "results" / "pools.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert results["operator"]["pools"] == 10_000, "the committed run is the 10,000-pool one"
    assert pools_table(results) in readme


def test_the_readme_says_the_threads_pool_is_slower_for_short_tasks_and_it_is() -> None:
    results = json.loads((ROOT / "bench" / "results" / "throughput.json").read_text())
    readme = " ".join((ROOT / "README.md").read_text().split())
    rows = results["systems"]
    assert "Its threads pool, at Dramatiq's eight threads, is slower than the inline pool" \
        in readme
    for width in ("1", "2"):
        assert rows["taskfleet-threads"]["processes"][width]["median"] \
            < rows["taskfleet"]["processes"][width]["median"]
