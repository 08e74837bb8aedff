"""`make cluster-up` / `make cluster-down`, as the README gives them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from testenv.cluster import binaries_dir
from testenv.processes import ROOT, run_to_the_end


@pytest.mark.timeout(1000)
def test_make_cluster_up_twice_then_down(tmp_path: Path) -> None:
    env = {**os.environ, "KUBECONFIG": str(tmp_path / "config"),
           "KWOK_WORKDIR": str(tmp_path / "kwok")}
    kubectl = [str(binaries_dir() / "kubectl"), "--context", "kwok-taskfleet"]
    try:
        for _ in range(2):  # starting twice is harmless
            up = run_to_the_end(["make", "-s", "-C", str(ROOT), "cluster-up"], 300, env=env)
            assert up.returncode == 0, up.stderr
            assert up.stdout.strip().endswith(str(tmp_path / "config"))
        nodes = subprocess.run([*kubectl, "get", "nodes", "-o", "name"], env=env,
                               capture_output=True, text=True, check=True).stdout.split()
        fake = ["node/kwok-node-0", "node/kwok-node-1", "node/kwok-node-2"]
        if os.environ.get("TASKFLEET_REAL_NODE") == "0":
            assert nodes == fake, "three fake nodes, the real one left out"
        else:
            assert nodes == [*fake, "node/real-node-0"], "three fake nodes and one real one"
    finally:
        down = run_to_the_end(["make", "-s", "-C", str(ROOT), "cluster-down"], 120, env=env)
    assert down.returncode == 0, down.stderr
    gone = subprocess.run([*kubectl, "get", "nodes", "--request-timeout=3s"], env=env,
                          capture_output=True, text=True)
    assert gone.returncode != 0
