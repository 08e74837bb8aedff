"""Operators started by the tests use the test's kubeconfig, never in-cluster credentials.

A test runner that sat in a pod would have ``KUBERNETES_SERVICE_HOST/PORT`` in its
environment and a service account token mounted; the Kubernetes client prefers those to
any kubeconfig, so its operators would act as that pod's service account, on that pod's
cluster. ``testenv/operator.py`` drops the variables and names the kubeconfig.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from testenv.cluster import Cluster
from testenv.operator import OperatorProcess, operator_env
from testenv.resources import FAST_SCALING, task_queue, worker_pool
from testenv.waiting import wait_for

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

IN_A_POD = f"""
set -e
mount -t tmpfs -o size=1m,mode=0755 tmpfs /run
mkdir -p {SERVICE_ACCOUNT_DIR}
cp "$1"/token "$1"/ca.crt "$1"/namespace {SERVICE_ACCOUNT_DIR}/
shift
exec "$@"
"""
"""Run the command in a mount namespace of its own (gone with it) where a service account
token is mounted as in a pod: a tmpfs over /run (/var/run's target) holds it."""


def test_an_operator_of_the_tests_ignores_the_in_cluster_credentials_of_a_pod(
        crds: Cluster, namespace: str, redis_url: str, tmp_path: Path) -> None:
    # A service account with no rights at all: were the operator to prefer it, it could
    # not even list its TaskQueues, and no Deployment would appear.
    crds.kubectl("create", "serviceaccount", "runner", namespace=namespace)
    token = crds.kubectl("create", "token", "runner", namespace=namespace).stdout.strip()
    mounted = tmp_path / "serviceaccount"
    mounted.mkdir()
    (mounted / "token").write_text(token)
    ca = crds.workdir / "kwok" / "clusters" / crds.name / "pki" / "ca.crt"
    (mounted / "ca.crt").write_bytes(ca.read_bytes())
    (mounted / "namespace").write_text(namespace)

    # The runner's environment as in a pod: the Service variables point at this API
    # server (on loopback; its certificate names 127.0.0.1), so the token would work.
    port = str(crds.apiserver_port)
    runner = copy.copy(crds)
    runner.env = {**crds.env, "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                  "KUBERNETES_SERVICE_PORT": port, "KUBERNETES_SERVICE_PORT_HTTPS": port,
                  "KUBERNETES_PORT": f"tcp://127.0.0.1:{port}"}
    op = OperatorProcess(runner, namespace, tmp_path / "operator.log")
    op.argv = ["unshare", "--mount", "--propagation", "private", "--",
               "sh", "-c", IN_A_POD, "sh", str(mounted), *op.argv]
    op.start()
    try:
        assert op.process is not None
        pid = op.process.pid
        # The setup is what it claims: the operator's process sees the token where the
        # client looks for it...
        # (/var/run is a link to /run, which /proc/PID/root would resolve in ours)
        seen = Path(f"/proc/{pid}/root/run/secrets/kubernetes.io/serviceaccount/token")
        wait_for("the token mounted in the operator's namespace",
                 lambda: seen.exists() and seen.read_text() == token, 10)
        # ...and never the Service variables, but the test's kubeconfig.
        environ = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes()
                       .decode().split("\0") if "=" in e)
        assert not [k for k in environ if k.startswith("KUBERNETES_")], environ
        assert environ["KUBECONFIG"] == str(crds.kubeconfig)

        crds.apply(yaml.safe_dump_all([
            task_queue("creds", redis_url),
            worker_pool("creds-pool", ["creds"], {"minReplicas": 1, "maxReplicas": 1,
                                                  **FAST_SCALING})]), namespace=namespace)
        deployment = wait_for(
            "the operator's Deployment (it acts with the test's kubeconfig)",
            lambda: crds.get("deployment", "creds-pool", namespace), 60,
            describe=op.log)
        assert deployment is not None and deployment["spec"]["replicas"] == 1
    finally:
        op.stop()
        print(f"--- operator log ---\n{op.log()}")
    assert "Forbidden" not in op.log() and "system:serviceaccount" not in op.log()


def test_an_operator_without_the_tests_kubeconfig_does_not_start(tmp_path: Path) -> None:
    """No fall back to ~/.kube/config or to whatever credentials the runner has."""
    with pytest.raises(ValueError, match="needs the test's kubeconfig"):
        operator_env({"PATH": "/usr/bin", "KUBERNETES_SERVICE_HOST": "127.0.0.1"})
    with pytest.raises(ValueError, match="needs the test's kubeconfig"):
        operator_env({"KUBECONFIG": str(tmp_path / "missing")})
    (tmp_path / "kubeconfig").write_text("")
    env = operator_env({"KUBECONFIG": str(tmp_path / "kubeconfig"), "PATH": "/usr/bin",
                        "KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443",
                        "KUBERNETES_PORT_443_TCP": "tcp://10.0.0.1:443"})
    assert env == {"KUBECONFIG": str(tmp_path / "kubeconfig"), "PATH": "/usr/bin"}
