"""The worker and operator images, checked without a Docker engine."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskfleet import App
from tests.support.images import Dockerfile, build_like_image, read_dockerfile
from tests.support.processes import ROOT, wait_until

WORKER = ROOT / "worker_image" / "Dockerfile"
OPERATOR = ROOT / "operator" / "Dockerfile"


@pytest.mark.parametrize("path", [WORKER, OPERATOR], ids=["worker", "operator"])
def test_dockerfile_rules(path: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    out = subprocess.run([hadolint, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    d = read_dockerfile(path)
    assert len(d.stages) == 2, "a build stage and a slim final stage"
    for line in d.stages:
        image = line.split()[1]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", image), f"pinned base: {line}"
    assert d.final_user == "10001:10001", "runs as a fixed non-root UID"
    final_stage = path.read_text().split("\nFROM ")[-1]
    assert "pip install" not in final_stage and "apt-get" not in final_stage, \
        "no build tools or installs in the final stage"


@pytest.fixture(scope="session")
def worker_image_bin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Dockerfile, Path]]:
    d = read_dockerfile(WORKER)
    yield d, build_like_image(d, tmp_path_factory.mktemp("worker-image") / "venv")


def test_worker_image_entrypoint_runs_tasks_and_drains(worker_image_bin: tuple[Dockerfile, Path],
                                                       redis_url: str, tmp_path: Path) -> None:
    d, bin_dir = worker_image_bin
    assert d.entrypoint == ["taskfleet", "worker"]
    app_dir = tmp_path / "app"
    (app_dir / "shop").mkdir(parents=True)
    (app_dir / "shop" / "__init__.py").write_text("")
    (app_dir / "shop" / "tasks.py").write_text(
        "from taskfleet import App\napp = App()\n\n"
        "@app.task(name='shop.total')\ndef total(a: int, b: int) -> int:\n    return a + b\n")
    health = tmp_path / "health"
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "TASKFLEET_BROKER_URL": redis_url,
           "PYTHONPATH": str(app_dir), "POD_NAME": "worker-0"}
    entry = [str(bin_dir / d.entrypoint[0]), *d.entrypoint[1:]]
    proc = subprocess.Popen([*entry, "--app", "shop.tasks:app", "--queues", "default",
                             "--concurrency", "2", "--pool", "processes",
                             "--health-file", str(health)], env=env, cwd=tmp_path)
    try:
        result = App(redis_url).send_task("shop.total", [40, 2])
        assert result.get(timeout=30) == 42
        wait_until(health.exists, 20, "health file written")
        probe = subprocess.run([str(bin_dir / "taskfleet"), "health", "--file", str(health),
                                "--max-age", "60"], env=env)
        assert probe.returncode == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    stale = subprocess.run([str(bin_dir / "taskfleet"), "health", "--file", str(health),
                            "--max-age", "0"], env=env, capture_output=True, text=True)
    assert stale.returncode == 1 and "no successful heartbeat" in stale.stderr
