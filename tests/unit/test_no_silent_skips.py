"""A skipped test fails the run unless an opt-out (tests/conftest.py OPT_OUTS) asked for
it: checked on small pytest runs that load the project's conftest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(tmp_path: Path, source: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(source)
    clean = {k: v for k, v in os.environ.items() if k not in ("TASKFLEET_REAL_NODE",)}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.conftest",
                           "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
                           str(tmp_path / "test_sample.py")],
                          cwd=ROOT, env={**clean, **env}, capture_output=True, text=True,
                          timeout=120)


def test_a_skip_fails_the_run(tmp_path: Path) -> None:
    out = run_pytest(tmp_path, "import pytest\n\ndef test_x():\n    pytest.skip('no podman')\n")
    assert out.returncode == 1, out.stdout
    assert "skipped, and no opt-out asked for it: no podman" in out.stdout
    assert "1 failed" in out.stdout


def test_a_skipif_decided_at_collection_fails_the_run(tmp_path: Path) -> None:
    out = run_pytest(tmp_path, "import pytest\n\n@pytest.mark.skipif(True, reason='absent')\n"
                               "def test_x():\n    pass\n")
    assert out.returncode == 1 and "1 error" in out.stdout, out.stdout
    assert "skipped, and no opt-out asked for it: absent" in out.stdout


def test_a_module_skipped_at_import_fails_the_run(tmp_path: Path) -> None:
    out = run_pytest(tmp_path, "import pytest\n\npytest.importorskip('no_such_module_here')\n\n"
                               "def test_x():\n    pass\n")
    assert out.returncode != 0, out.stdout
    assert "skipped, and no opt-out asked for it" in out.stdout


def test_an_opt_out_skips_only_when_asked(tmp_path: Path) -> None:
    source = ("from testenv.skips import skip_for_opt_out\n\ndef test_x():\n"
              "    skip_for_opt_out('TASKFLEET_REAL_NODE', 'the real node')\n")
    asked = run_pytest(tmp_path, source, TASKFLEET_REAL_NODE="0")
    assert asked.returncode == 0 and "1 skipped" in asked.stdout, asked.stdout
    not_asked = run_pytest(tmp_path, source)
    assert not_asked.returncode == 0 and "1 passed" in not_asked.stdout, not_asked.stdout
    # The reason alone is not enough: the variable must be set.
    forged = run_pytest(tmp_path, "import pytest\n\ndef test_x():\n"
                                  "    pytest.skip('off (TASKFLEET_REAL_NODE=0)')\n")
    assert forged.returncode == 1 and "1 failed" in forged.stdout, forged.stdout
