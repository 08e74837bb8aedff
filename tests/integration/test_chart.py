"""The Helm chart on the local control plane: lint, server-side validation, install,
least privilege (the operator run under the chart's ServiceAccount), upgrade, uninstall."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from taskfleet import App
from testenv.cluster import Cluster
from testenv.images import build_like_image, read_dockerfile
from testenv.operator import OperatorProcess
from testenv.processes import ROOT
from testenv.redis_server import free_port
from testenv.resources import KWOK_TOLERATION
from testenv.waiting import wait_for

CHART = ROOT / "charts" / "taskfleet"
KWOK = ",".join(f"tolerations[0].{k}={v}" for k, v in KWOK_TOLERATION.items())


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(cluster.bin / "helm"), "--kubeconfig", str(cluster.kubeconfig),
                          *args], capture_output=True, text=True, env=cluster.env)
    if check and out.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)}:\n{out.stdout}\n{out.stderr}")
    return out


@pytest.mark.parametrize("values", ["", "clusterWide=false,redis.enabled=true,replicaCount=2,"
                                    "monitoring.grafanaDashboard.enabled=true"])
def test_lint_strict_and_server_side_validation(crds: Cluster, namespace: str,
                                                values: str) -> None:
    extra = ["--set", values] if values else []
    assert "0 chart(s) failed" in helm(crds, "lint", "--strict", str(CHART), *extra).stdout
    rendered = helm(crds, "template", "tf", str(CHART), "-n", namespace, "--kube-version",
                    "v1.34.4", *extra).stdout
    out = crds.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered,
                       namespace=namespace)
    assert "deployment.apps/tf-taskfleet created (server dry run)" in out.stdout


def test_values_schema_refuses_bad_values(cluster: Cluster) -> None:
    out = helm(cluster, "template", "tf", str(CHART), "--set", "replicaCount=0", check=False)
    assert out.returncode != 0 and "replicaCount" in out.stderr


@pytest.fixture(scope="session")
def operator_image_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator installed the way operator/Dockerfile installs it."""
    d = read_dockerfile(ROOT / "operator" / "Dockerfile")
    assert d.entrypoint == ["taskfleet", "operator"]
    return build_like_image(d, tmp_path_factory.mktemp("operator-image") / "venv")


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def token_kubeconfig(cluster: Cluster, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (TokenRequest API)."""
    token = cluster.kubectl("create", "token", sa, "--duration=1h",
                            namespace=namespace).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "c", "cluster": server["cluster"]}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "c", "user": "sa",
                                                "namespace": namespace}}]}))
    return path


@pytest.fixture
def release(crds: Cluster, namespace: str) -> Iterator[str]:
    # the aggregated ClusterRoles are one per cluster: test_chart_rbac.py installs them
    helm(crds, "install", "tf", str(CHART), "-n", namespace, "--set", "clusterWide=false",
         "--set", KWOK, "--set", "aggregatedClusterRoles.create=false", "--wait",
         "--timeout", "90s")
    yield "tf"
    helm(crds, "uninstall", "tf", "-n", namespace, check=False)


def test_install_runs_the_operator_with_least_privilege(crds: Cluster, namespace: str,
                                                        release: str, redis_url: str,
                                                        operator_image_bin: Path,
                                                        tmp_path: Path) -> None:
    pods = crds.list("pods", namespace, "app.kubernetes.io/component=operator")
    assert len(pods) == 1 and pods[0]["spec"]["nodeName"].startswith("kwok-node")
    assert all(c["status"] == "True" for c in pods[0]["status"]["conditions"]
               if c["type"] == "Ready")
    sa = pods[0]["spec"]["serviceAccountName"]
    assert sa == "tf-taskfleet"

    # kwok runs no containers: run the operator image's command here, as the chart's SA
    kubeconfig = token_kubeconfig(crds, namespace, sa, tmp_path / "sa.kubeconfig")
    op = OperatorProcess(crds, namespace, tmp_path / "sa-operator.log")
    # the chart's own arguments (its Lease name among them), but the liveness, metrics and
    # dashboard ports: this process shares the host's network with everything else
    dep = crds.get("deployment", "tf-taskfleet", namespace) or {}
    [container] = dep["spec"]["template"]["spec"]["containers"]
    ports = ("--liveness-port", "--metrics-port", "--dashboard-port")
    args = [a for a in container["args"] if not a.startswith(ports)]
    metrics_port, dashboard_port = free_port(), free_port()
    args += [f"--metrics-port={metrics_port}", f"--dashboard-port={dashboard_port}"]
    op.argv = [str(operator_image_bin / "taskfleet"), "operator", *args]  # the ENTRYPOINT
    op.env = {"PATH": f"{operator_image_bin}:/usr/bin:/bin", "KUBECONFIG": str(kubeconfig),
              "HOME": str(tmp_path)}
    op.start()
    try:
        crds.kubectl("create", "secret", "generic", "redis", f"--from-literal=url={redis_url}",
                     namespace=namespace)
        crds.kubectl("label", "secret", "redis", "taskfleet.dev/redis-credentials=true",
                     namespace=namespace)
        crds.apply(yaml.safe_dump_all([
            {"apiVersion": "taskfleet.dev/v1alpha1", "kind": "TaskQueue",
             "metadata": {"name": "jobs"},
             "spec": {"redis": {"urlFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}},
                      "schedules": [{"name": "tick", "cron": "@hourly", "task": "t"}]}},
            {"apiVersion": "taskfleet.dev/v1alpha1", "kind": "WorkerPool",
             "metadata": {"name": "jobs-pool"},
             "spec": {"queues": ["jobs"], "app": "jobs.tasks:app",
                      "autoscaling": {"maxReplicas": 3, "pollSeconds": 0.5}}}]),
            namespace=namespace)
        App(redis_url).send_many("jobs.work", [[i] for i in range(12)], queue="jobs")
        wait_for("the operator, under its ServiceAccount, scales the pool",
                 lambda: (crds.get("deployment", "jobs-pool", namespace) or {}).get(
                     "spec", {}).get("replicas") == 3, 60, describe=op.log)
        wp = crds.get("workerpool", "jobs-pool", namespace) or {}
        assert wp["status"]["desiredReplicas"] == 3
        tq = crds.get("taskqueue", "jobs", namespace) or {}
        assert tq["status"]["schedules"][0]["name"] == "tick"
        assert any(e["reason"] == "ScaledUp" for e in crds.list("events", namespace))
        # its dashboard and metrics, as installed by the image's pip (static files included)
        page = fetch(f"http://127.0.0.1:{dashboard_port}/")
        assert "<title>taskfleet</title>" in page
        overview = json.loads(fetch(f"http://127.0.0.1:{dashboard_port}/api/overview"))
        assert [p["name"] for p in overview["pools"]] == ["jobs-pool"]
        assert [q["label"] for q in overview["queues"]] == [f"{namespace}/jobs"]
        assert overview["actions"] is False
        metrics = fetch(f"http://127.0.0.1:{metrics_port}/metrics")
        pool = f'namespace="{namespace}",workerpool="jobs-pool"'
        assert f"taskfleet_pool_desired_replicas{{{pool}}} 3.0" in metrics
        assert "Forbidden" not in op.log() and "forbidden" not in op.log(), op.log()
    finally:
        op.stop()

    who = f"--as=system:serviceaccount:{namespace}:{sa}"
    def can(*args: str) -> str:
        return crds.kubectl("auth", "can-i", *args, who, namespace=namespace,
                            check=False).stdout.strip()
    assert can("patch", "deployments") == "yes"
    assert can("get", "secrets") == "yes"
    for verb, what in [("delete", "deployments"), ("list", "secrets"), ("delete", "pods"),
                       ("create", "pods"), ("update", "workerpools.taskfleet.dev"),
                       ("delete", "workerpools.taskfleet.dev"), ("create", "roles"),
                       ("patch", "leases/other-lease")]:
        assert can(verb, what) == "no", f"must not {verb} {what}"
    other = crds.kubectl("auth", "can-i", "get", "secrets", who, "-n", "default",
                         check=False).stdout.strip()
    assert other == "no", "namespaced install: nothing outside its namespace"
    assert crds.kubectl("auth", "can-i", "create", "clusterroles", who,
                        check=False).stdout.strip() == "no"


def test_upgrade_and_uninstall(crds: Cluster, namespace: str, release: str) -> None:
    helm(crds, "upgrade", release, str(CHART), "-n", namespace, "--reuse-values", "--set",
         "leaderLeaseSeconds=30", "--wait", "--timeout", "90s")
    dep = crds.get("deployment", "tf-taskfleet", namespace) or {}
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-lease-seconds=30" in args and f"--namespace={namespace}" in args
    status = json.loads(helm(crds, "status", release, "-n", namespace, "-o", "json").stdout)
    assert status["version"] == 2 and status["info"]["status"] == "deployed"
    notes = status["info"]["notes"]
    assert "kubectl apply -f examples/video-site/" in notes
    helm(crds, "uninstall", release, "-n", namespace, "--wait")
    assert crds.get("deployment", "tf-taskfleet", namespace) is None
    assert crds.get("serviceaccount", "tf-taskfleet", namespace) is None
    assert crds.get("crd", "workerpools.taskfleet.dev") is not None, "Helm keeps CRDs"
