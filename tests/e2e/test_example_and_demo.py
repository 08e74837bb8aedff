"""The video-site example: its manifests, its web tier, and `make demo` itself."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from testenv.cluster import Cluster
from testenv.processes import ROOT, run_to_the_end
from testenv.skips import skip_for_opt_out

EXAMPLE = ROOT / "examples" / "video-site"


def test_kubectl_accepts_the_example(crds: Cluster, namespace: str) -> None:
    out = crds.kubectl("apply", "--dry-run=server", "-f", str(EXAMPLE), namespace=namespace)
    for thing in ("taskqueue.taskfleet.dev/transcode", "taskqueue.taskfleet.dev/reports",
                  "workerpool.taskfleet.dev/transcoder", "workerpool.taskfleet.dev/default",
                  "deployment.apps/web", "deployment.apps/redis"):
        assert f"{thing} created (server dry run)" in out.stdout, out.stdout


def test_web_tier_enqueues_by_name_without_the_transcoding_code(redis_url: str) -> None:
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from web import app as web; web.app.configure(sys.argv[2]);"
        "ids = web.enqueue_upload('v1');"
        "assert 'video' not in sys.modules and 'video.tasks' not in sys.modules, sys.modules;"
        "print(len(ids))"
    )
    out = subprocess.run([sys.executable, "-c", probe, str(EXAMPLE), redis_url],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2"


@pytest.mark.timeout(700)
def test_make_demo_runs_the_story_end_to_end(tmp_path: Path) -> None:
    skip_for_opt_out("TASKFLEET_REAL_NODE", "the real node, where the demo's workers run,")
    out = run_to_the_end([sys.executable, str(EXAMPLE / "demo.py"), "--uploads", "6",
                          "--seconds-per-1080p", "0.5", "--out", str(tmp_path / "demo")],
                         timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "tasks sent 18, done 18, lost 0" in out.stdout
    assert "dashboard: http://127.0.0.1:" in out.stdout, "where to open the dashboard"
    assert (tmp_path / "demo" / "taskfleet-demo.png").stat().st_size > 10_000
    peak = next(ln for ln in out.stdout.splitlines() if ln.startswith("peak replicas"))
    assert int(peak.split("transcoder ")[1].split(",")[0]) >= 2, peak
