"""The operator as a real process (``taskfleet operator``), for integration tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from taskfleet_operator.runtime import leader_lease_name
from testenv.cluster import Cluster
from testenv.processes import ROOT, terminate

IN_CLUSTER_ENV = ("KUBERNETES_SERVICE_", "KUBERNETES_PORT")
"""Prefixes of the variables a pod gets for the ``kubernetes`` Service. With
KUBERNETES_SERVICE_HOST/PORT set (and a service account token mounted) the client
prefers in-cluster credentials over any kubeconfig: a test runner in a pod would run
its operators as that pod's service account, against that pod's cluster."""


def operator_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for an operator started by a test: never the in-cluster variables, and a
    kubeconfig named explicitly (a missing one is an error here, not a fall back to
    ~/.kube/config or to a service account)."""
    kept = {k: v for k, v in env.items() if not k.startswith(IN_CLUSTER_ENV)}
    kubeconfig = kept.get("KUBECONFIG", "")
    if not kubeconfig or not Path(kubeconfig).is_file():
        raise ValueError(f"an operator needs the test's kubeconfig in KUBECONFIG, got "
                         f"{kubeconfig!r}")
    return kept


class OperatorProcess:
    LEADER_LEASE_SECONDS = 2.0
    """Short, so a standby takes over within seconds in failover tests."""

    def __init__(self, cluster: Cluster, namespace: str, log_path: Path,
                 lease_namespace: str | None = None, lease_seconds: float | None = None
                 ) -> None:
        self.lease_seconds = self.LEADER_LEASE_SECONDS if lease_seconds is None \
            else lease_seconds
        self.argv = [sys.executable, "-m", "taskfleet", "operator", "--namespace", namespace,
                     "--leader-lease-namespace", lease_namespace or namespace,
                     "--leader-lease-seconds", str(self.lease_seconds),
                     "--worker-image", "taskfleet/worker:test"]
        self.env = {**cluster.env, "KUBECONFIG": str(cluster.kubeconfig)}
        self.lease_name = leader_lease_name(namespace)
        """The Lease this operator competes for (in its namespace)."""
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = operator_env(self.env)  # also when a test replaced self.env
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, the Lease is not released."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        terminate(self.process)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""


def crds_applied(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    for crd in ("taskqueues.taskfleet.dev", "workerpools.taskfleet.dev"):
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=30s")


__all__ = ["OperatorProcess", "crds_applied", "operator_env"]


class DiscardedWrites:
    """The controller's actuator with every write dropped (for a controller run in
    process against real Redis, where only its readings matter): a Deployment applied
    reports ``replicas``."""

    def __init__(self, replicas: int | None = None) -> None:
        self.replicas = replicas

    def apply_deployment(self, manifest: dict[str, Any]) -> int | None:
        return self.replicas

    def patch_status(self, plural: str, namespace: str, name: str,
                     status: dict[str, Any]) -> None: ...

    def list_pods(self, namespace: str, selector: str) -> list[Any]:
        return []

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None: ...

    def record_event(self, kind: str, namespace: str, name: str, uid: str, reason: str,
                     message: str, type_: str = "Normal") -> None: ...
