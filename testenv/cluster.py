"""The local Kubernetes control plane for tests: started once, removed at the end."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from testenv.processes import ROOT

TESTENV = ROOT / "hack" / "testenv"


def binaries_dir() -> Path:
    """Directory of the pinned binaries (built once per machine, or $TASKFLEET_TESTENV_BIN)."""
    out = subprocess.run([str(TESTENV / "build.sh")], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"testenv build failed: {out.stderr.strip().splitlines()[-1:]}")
    return Path(out.stdout.strip().splitlines()[-1])


class Cluster:
    """A kwokctl cluster in its own work directory and kubeconfig."""

    def __init__(self, name: str | None = None, workdir: Path | None = None) -> None:
        """A new cluster's handle, or (``workdir``) one on a cluster another process made."""
        self.name = name or f"tf-test-{os.getpid()}"
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="taskfleet-kwok-"))
        self.kubeconfig = self.workdir / "kubeconfig"
        self.bin = binaries_dir()
        # kubectl's discovery cache is its own: it is kept per host and port, and a
        # later cluster on a reused port would answer from an earlier one's.
        self.env = {**os.environ, "KWOK_WORKDIR": str(self.workdir / "kwok"),
                    "KUBECONFIG": str(self.kubeconfig),
                    "KUBECACHEDIR": str(self.workdir / "kube-cache"),
                    "PATH": f"{self.bin}:{os.environ.get('PATH', '')}"}

    @property
    def context(self) -> str:
        return f"kwok-{self.name}"

    @property
    def apiserver_port(self) -> int:
        """The API server's port on 127.0.0.1, from the kubeconfig (where pods on the real
        node reach it: never through the Service IP, see testenv/node.py)."""
        conf = yaml.safe_load(self.kubeconfig.read_text())
        server: str = next(c["cluster"]["server"] for c in conf["clusters"]
                           if c["name"] == self.context)
        port = urlsplit(server).port
        assert port is not None, f"no port in the API server's URL {server}"
        return port

    def up(self) -> Cluster:
        out = subprocess.run([str(TESTENV / "cluster.sh"), "up", self.name], env=self.env,
                             capture_output=True, text=True)
        if out.returncode != 0:
            self.down()
            raise RuntimeError(f"cluster did not start:\n{out.stderr[-4000:]}")
        return self

    def down(self) -> None:
        subprocess.run([str(TESTENV / "cluster.sh"), "down", self.name], env=self.env,
                       capture_output=True, text=True)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                namespace: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster."""
        argv = [str(self.bin / "kubectl"), "--kubeconfig", str(self.kubeconfig)]
        if namespace:
            argv += ["--namespace", namespace]
        out = subprocess.run([*argv, *args], input=input, capture_output=True, text=True,
                             env=self.env)
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({out.returncode}):\n"
                                 f"{out.stderr}")
        return out

    def apply(self, manifest: str, namespace: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", input=manifest, namespace=namespace,
                            check=check)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        out = self.kubectl("get", kind, name, "-o", "json", namespace=namespace, check=False)
        if out.returncode != 0:
            if "NotFound" in out.stderr:
                return None
            raise AssertionError(f"kubectl get {kind} {name}: {out.stderr}")
        data: dict[str, Any] = json.loads(out.stdout)
        return data

    def list(self, kind: str, namespace: str | None = None,
             selector: str | None = None) -> list[dict[str, Any]]:
        args = ["get", kind, "-o", "json"]
        if selector:
            args += ["-l", selector]
        items: list[dict[str, Any]] = json.loads(
            self.kubectl(*args, namespace=namespace).stdout)["items"]
        return items


def shared_cluster(run_dir: Path) -> Cluster:
    """The run's one control plane: the first test process that asks starts it, the others
    attach to it (``run_dir`` holds its name and work directory). A failed start is
    recorded, so the other processes fail at once with its reason instead of retrying."""
    state, failed = run_dir / "cluster.json", run_dir / "cluster.failed"
    with open(run_dir / "cluster.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            raise RuntimeError(f"the run's cluster did not start:\n{failed.read_text()}")
        if state.exists():
            saved = json.loads(state.read_text())
            return Cluster(saved["name"], Path(saved["workdir"]))
        cluster = Cluster(f"tf-test-{os.getpid()}")
        try:
            cluster.up()
        except RuntimeError as exc:
            failed.write_text(str(exc))
            raise
        state.write_text(json.dumps({"name": cluster.name, "workdir": str(cluster.workdir)}))
        return cluster


def shared_cluster_down(run_dir: Path) -> None:
    """Remove the run's control plane, if one was started."""
    state = run_dir / "cluster.json"
    if state.exists():
        saved = json.loads(state.read_text())
        Cluster(saved["name"], Path(saved["workdir"])).down()


def names(items: Sequence[dict[str, Any]]) -> list[str]:
    return sorted(i["metadata"]["name"] for i in items)
