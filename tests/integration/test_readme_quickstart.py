"""The README's Python quickstart, run as it stands against a real Redis: its tasks.py, its
worker line, its one-line producer (only the broker URL is the test's own)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Python quickstart"
README_URL = "redis://localhost:6379/0"


def quickstart() -> tuple[str, list[str]]:
    """The section's Python block (tasks.py) and the lines of the shell block after it."""
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"the README has no section {SECTION}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    python = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    shell = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert python and shell, "a Python block, then a shell block"
    lines = [line for line in shell.group(1).splitlines() if line.strip()]
    return python.group(1), lines


def test_the_quickstart_runs_as_written(tmp_path: Path, redis_url: str) -> None:
    code, lines = quickstart()
    assert code.startswith("# tasks.py\n"), "the block says which file it is"
    statements = [ln for ln in code.splitlines() if ln.strip() and not ln.startswith("#")]
    assert len(statements) + len(lines) <= 10, "a ten-line quickstart"
    export, worker, producer = lines
    assert export == f"export TASKFLEET_BROKER_URL={README_URL}"
    assert worker.endswith(" &") and worker.startswith("taskfleet worker ")
    (tmp_path / "tasks.py").write_text(code)
    env = {**os.environ, "TASKFLEET_BROKER_URL": redis_url,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    running = subprocess.Popen(["bash", "-c", f"exec {worker.removesuffix(' &')}"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        done = subprocess.run(["bash", "-c", producer], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "/media/v1/720p.mp4"
    finally:
        running.send_signal(signal.SIGTERM)
        out, _ = running.communicate(timeout=60)
    assert running.returncode == 0, out
