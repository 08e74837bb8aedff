"""The README and docs/ quote the benchmarks' committed results, not figures typed by hand:
each table on the page bench/report.py names for it, each sentence on its own page."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench.chaos import SHORT
from bench.report import (
    BENCHMARKS,
    BLOCKS,
    CELERY_AND_RQ,
    GUARANTEES,
    PAGES,
    RESULTS,
    SENTENCES,
    SOURCES,
    begin_marker,
    differences,
    load,
    marked_block,
    one_line,
    pools_table,
    ratios_table,
    read_pages,
    source_line,
    throughput_table,
)
from bench.throughput import OURS
from testenv.processes import ROOT


def page(name: str) -> str:
    """One page's text: README.md or docs/NAME.md."""
    return (ROOT / name).read_text()


def test_the_pages_are_the_readme_and_every_page_of_docs() -> None:
    pages = read_pages()
    assert "README.md" in pages
    assert {p for p in pages if p != "README.md"} == \
        {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert set(PAGES.values()) <= set(pages), "every table's page exists"


def test_the_benchmarks_page_quotes_the_throughput_results() -> None:
    results = json.loads((ROOT / "bench" / "results" / "throughput.json").read_text())
    assert PAGES["throughput.json"] == BENCHMARKS
    text = page(BENCHMARKS)
    assert throughput_table(results) in text
    assert ratios_table(results) in text
    for row in results["systems"].values():
        assert row["settings"] in text, "each system's settings are given"


def test_the_benchmarks_page_summary_of_the_throughput_results_holds() -> None:
    results = json.loads((ROOT / "bench" / "results" / "throughput.json").read_text())
    text = one_line(page(BENCHMARKS))
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
            "with two") in text
    for width in ("1", "2"):
        assert cpu("taskfleet", width) < 0.5 * min(cpu(p, width) for p in peers), \
            "under half the CPU per task of any peer"


def test_the_benchmarks_page_quotes_the_pools_results() -> None:
    results = json.loads((ROOT / "bench" / "results" / "pools.json").read_text())
    assert results["operator"]["pools"] == 10_000, "the committed run is the 10,000-pool one"
    assert pools_table(results) in page(PAGES["pools.json"])


def test_the_benchmarks_page_says_the_threads_pool_is_slower_for_short_tasks_and_it_is(
) -> None:
    results = json.loads((ROOT / "bench" / "results" / "throughput.json").read_text())
    text = one_line(page(BENCHMARKS))
    rows = results["systems"]
    assert "Its threads pool, at Dramatiq's eight threads, is slower than the inline pool" \
        in text
    for width in ("1", "2"):
        assert rows["taskfleet-threads"]["processes"][width]["median"] \
            < rows["taskfleet"]["processes"][width]["median"]


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_each_table_on_its_page_is_the_one_its_json_makes(name: str) -> None:
    pages = read_pages()
    home = PAGES[name]
    assert {p: t.count(begin_marker(name)) for p, t in pages.items() if begin_marker(name) in t} \
        == {home: 1}, f"one block for {name}, on {home}"
    block = marked_block(pages[home], name)
    assert block is not None, f"{home} has no block marked for {name}"
    assert block == BLOCKS[name](load(name)), \
        f"{home} differs from bench/results/{name}: run `python -m bench.report --write`"
    assert block.endswith(source_line(name)), "each table says which make target wrote it"


@pytest.mark.parametrize("name", sorted(SENTENCES))
def test_each_figure_in_the_prose_is_its_json_figure_on_its_page(name: str) -> None:
    pages = read_pages()
    for sentence in SENTENCES[name](load(name)):
        assert sentence.page in pages, f"{sentence.page} exists"
        assert one_line(sentence.text) in one_line(pages[sentence.page]), \
            f"{sentence.page}, from bench/results/{name}"


def test_the_report_finds_no_difference() -> None:
    assert differences(read_pages()) == []


def test_the_report_sees_a_table_on_the_wrong_page_and_a_missing_sentence() -> None:
    pages = read_pages()
    name = "pools.json"
    home, elsewhere = PAGES[name], "README.md"
    block = f"{begin_marker(name)}\n{BLOCKS[name](load(name))}\n<!-- end of generated block -->"
    moved = dict(pages)
    moved[home] = moved[home].replace(block, "")
    moved[elsewhere] += "\n" + block + "\n"
    found = differences(moved)
    assert any(f"belongs on {home} only" in d for d in found), found
    assert any(f"block on {home} differs" in d for d in found), found
    sentence = SENTENCES["chaos.json"](load("chaos.json"))[0]
    cut = dict(pages)
    cut[sentence.page] = one_line(cut[sentence.page]).replace(one_line(sentence.text), "")
    assert any(f"{sentence.page} lacks" in d for d in differences(cut))


def test_the_pages_quote_only_result_files_a_make_target_writes() -> None:
    text = "\n".join(read_pages().values())
    quoted = set(re.findall(r"bench/results/([\w.-]+\.json)", text))
    on_disk = {p.name for p in RESULTS.glob("*.json")}
    assert quoted <= on_disk, "every quoted file is committed"
    assert on_disk == set(SOURCES), "every committed file has its make target in bench/report.py"
    assert set(BLOCKS) <= quoted


def make_recipe(target: str) -> str:
    """The recipe lines of one Makefile target."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{target}:", line))
    recipe = []
    for line in lines[start + 1:]:
        if not line.startswith("\t"):
            break
        recipe.append(line)
    return "\n".join(recipe)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_the_make_target_a_page_names_writes_the_file(name: str) -> None:
    target, script = SOURCES[name]
    assert re.search(rf"{re.escape(script)} .*--json bench/results/{re.escape(name)}\b",
                     make_recipe(target)), f"`make {target}` runs {script} into {name}"


def absolute_paths(value: Any) -> list[str]:
    """Strings (keys or values) in a JSON document that name a file by an absolute path."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in absolute_paths(k) + absolute_paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in absolute_paths(v)]
    if isinstance(value, str):
        return re.findall(r"(?<![\w.])(?:~|[A-Za-z]:)?[/\\][\w.-]+(?:[/\\][\w.-]*)+", value)
    return []


@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.name)
def test_no_result_file_holds_a_machine_path(path: Path) -> None:
    assert absolute_paths(json.loads(path.read_text())) == []


def test_the_path_check_sees_machine_paths() -> None:
    assert absolute_paths({"logs": "/tmp/taskfleet-chaos-4ji2py4z"}) == \
        ["/tmp/taskfleet-chaos-4ji2py4z"]
    assert absolute_paths(["at /root/.cache/x", {"/home/a/b": 1}]) == \
        ["/root/.cache/x", "/home/a/b"]
    assert absolute_paths({"ratio": "1/2", "rate": "tasks/s", "down": "0.5/1"}) == []


def test_the_guarantees_page_says_what_the_short_chaos_run_is() -> None:
    assert f"A short form ({SHORT.total_tasks:,} tasks) runs in `make test`" \
        in one_line(page(GUARANTEES))


def test_a_celery_burst_is_slower_than_a_native_one_as_the_celery_page_says() -> None:
    results = load("autoscale.json")
    assert "It is slower than a burst on a native queue because Celery clients do not wake " \
           "the operator" in one_line(page(CELERY_AND_RQ))
    assert results["reaction_celery_burst_from_zero"]["p95_s"] \
        > results["reaction_from_zero"]["p95_s"]
