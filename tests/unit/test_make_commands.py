"""What docs/development.md says the make targets run (``make -n``: the
commands, none of them executed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def commands(*args: str) -> list[str]:
    out = subprocess.run(["make", "-n", "-C", str(ROOT), "--no-print-directory", *args],
                         capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.splitlines()


def test_make_test_installs_its_debian_packages_then_runs_in_parallel() -> None:
    lines = commands("test")
    pytest_line = next(i for i, ln in enumerate(lines) if " -m pytest " in ln)
    assert "hack/debian.sh all" in lines[:pytest_line]
    assert "hack/setup.sh" in lines[:pytest_line]
    assert lines[pytest_line].endswith(
        "tests/unit tests/integration tests/e2e -p no:cacheprovider -n 4 --dist loadfile "
        "--durations=20")
    assert " -n 7 " in next(ln for ln in commands("test", "TEST_PROCESSES=7")
                            if " -m pytest " in ln)


def test_deps_upgrade_rewrites_the_lock_then_lints_and_runs_the_unit_tests() -> None:
    lines = commands("deps-upgrade")
    assert lines[0] == "hack/lock.sh --upgrade"
    assert any(ln.endswith("mypy") for ln in lines)
    assert any(ln.endswith("-m pytest tests/unit") for ln in lines)


def test_make_lock_keeps_versions_and_test_lowest_runs_the_lower_bounds() -> None:
    assert commands("lock") == ["hack/lock.sh"]
    assert commands("test-lowest")[-1] == "hack/lowest.sh"
