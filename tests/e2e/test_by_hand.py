"""The README's by-hand steps on the local cluster, run as they stand: `make cluster-up`
(the images loaded onto its real node), `make example-up`, kubectl, an upload with curl,
`make example-down`. The cluster is the test's own, its KUBECONFIG and KWOK_WORKDIR in
a temporary directory (where a user's would be in their home), and goes at the end."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from testenv.node import NODE_NAME
from testenv.processes import ROOT, Finished, run_to_the_end
from testenv.skips import skip_for_opt_out
from testenv.waiting import wait_for

HEADING = "**The same by hand, on the local cluster.**"
NAMESPACE = "video-site"


def by_hand_lines() -> list[str]:
    """The README's command lines under HEADING (its first ```sh block)."""
    text = (ROOT / "README.md").read_text()
    assert HEADING in text, f"the README has no paragraph {HEADING}"
    block = text.split(HEADING, 1)[1].split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


class Shell:
    """Each README line in bash, from the repository, after the block's `export` lines."""

    def __init__(self, env: dict[str, str], exports: list[str]) -> None:
        self.env = env
        self.exports = exports
        self.transcript: list[str] = []

    def run(self, line: str, timeout: float = 900, record: bool = True) -> Finished:
        script = "\n".join(["set -euo pipefail", *self.exports, line])
        out = run_to_the_end(["bash", "-c", script], timeout, env=self.env)
        if record or out.returncode != 0:
            self.transcript.append(f"$ {line}\n{out.stdout[-2000:]}{out.stderr[-2000:]}")
        assert out.returncode == 0, f"`{line}` failed ({out.returncode}):\n" + \
            "\n".join(self.transcript[-3:])
        return out

    def json(self, *kubectl: str) -> dict[str, Any]:
        line = " ".join(["kubectl", *kubectl, "-o", "json"])
        found: dict[str, Any] = json.loads(self.run(line, 60, record=False).stdout)
        return found


def ready_on_the_node(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return pod["spec"].get("nodeName") == NODE_NAME and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def status(web: str, task_id: str) -> str:
    with urllib.request.urlopen(f"http://{web}/tasks/{task_id}", timeout=10) as reply:
        return str(json.loads(reply.read())["status"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


@pytest.mark.timeout(2400)
def test_the_readme_by_hand_steps_run_the_example_on_the_real_node(tmp_path: Path) -> None:
    skip_for_opt_out("TASKFLEET_REAL_NODE", "the real node, where the example's pods run,")
    lines = by_hand_lines()
    exports = [line for line in lines if line.startswith("export ")]
    commands = [line for line in lines if not line.startswith("export ")]
    assert commands[0].startswith("make cluster-up"), commands
    assert commands[-1].startswith("make example-down"), commands
    # A user's home, as far as the cluster goes: its kubeconfig, kwokctl's files, and
    # kubectl's discovery cache (kept per host and port, which an earlier cluster used).
    shell = Shell({"KUBECONFIG": str(tmp_path / "config"), "KWOK_WORKDIR": str(tmp_path / "kwok"),
                   "KUBECACHEDIR": str(tmp_path / "kube-cache")}, exports)
    redis_pidfile = tmp_path / "kwok" / "clusters" / "taskfleet" / NAMESPACE / "redis.pid"
    redis_pid = None
    try:
        outputs = {line: shell.run(line) for line in commands[:-1]}
        redis_pid = int(redis_pidfile.read_text())
        upload = json.loads(next(out.stdout for line, out in outputs.items()
                                 if line.startswith("curl ")))
        assert upload["message"] == "your video will be ready shortly", upload
        # Every pod of the site Ready on the real node, a transcoder among them.
        def site_ready() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = shell.json("get", "pods", "-n", NAMESPACE)["items"]
            transcoder = any(p["metadata"]["name"].startswith("transcoder-") for p in items)
            return items if transcoder and all(ready_on_the_node(p) for p in items) else []

        pods = wait_for("the site's pods Ready on the real node, a transcoder among them",
                        site_ready, 180, interval=1.0,
                        describe=lambda: "\n".join(shell.transcript[-2:]))
        names = sorted({p["metadata"]["name"].rsplit("-", 2)[0] for p in pods})
        assert names == ["default", "tf-taskfleet", "transcoder", "web"], names
        for pod in pods:
            assert pod["spec"]["hostNetwork"] is True, pod["metadata"]["name"]
        # The upload's transcodes (720p, then 1080p at 30 s a 1080p) done by the pool.
        web = shell.run("make -s example-web", 60).stdout.strip()
        wait_for("the upload's transcodes done", lambda: all(
            status(web, t) == "SUCCESS" for t in upload["tasks"]), 300, interval=2.0)
        shell.run(commands[-1], 600)  # make example-down
        gone = run_to_the_end(["bash", "-c", "\n".join([*exports, f"kubectl get namespace "
                                                        f"{NAMESPACE}"])], 60, env=shell.env)
        assert gone.returncode != 0 and "NotFound" in gone.stderr, gone.stdout
        assert not alive(redis_pid), "example-down stops the site's redis-server"
    finally:
        print("\n".join(shell.transcript))
        down = run_to_the_end(["make", "-s", "-C", str(ROOT), "cluster-down"], 300,
                              env=shell.env)
    assert down.returncode == 0, down.stderr
    assert redis_pid is None or not alive(redis_pid), "cluster-down stops it too"
    wait_for("nothing of the cluster running", lambda: not subprocess.run(
        ["pgrep", "-af", str(tmp_path)], capture_output=True, text=True).stdout, 30,
        describe=lambda: subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True,
                                        text=True).stdout)
