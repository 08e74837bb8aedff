"""The chart's network side: NetworkPolicies for the operator pod and the bundled Redis,
the dashboard's address and token, and the bundled Redis's generated password (kept
across upgrades on the real API server, and required by a real redis-server run with
the configuration the chart writes)."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from testenv.cluster import Cluster
from testenv.redis_server import free_port
from testenv.waiting import wait_for
from tests.integration.test_chart import CHART, helm

OPERATOR = {"app.kubernetes.io/name": "taskfleet", "app.kubernetes.io/instance": "tf",
            "app.kubernetes.io/component": "operator"}


def render(cluster: Cluster, *values: str, check: bool = True
           ) -> list[dict[str, Any]] | subprocess.CompletedProcess[str]:
    args = [a for v in values for a in ("--set", v)]
    out = helm(cluster, "template", "tf", str(CHART), "-n", "ns1", "--kube-version", "v1.34.4",
               *args, check=check)
    if not check:
        return out
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(docs: Any, kind: str, name: str) -> dict[str, Any] | None:
    return next((d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name),
                None)


def operator_container(docs: Any) -> dict[str, Any]:
    dep = find(docs, "Deployment", "tf-taskfleet")
    assert dep is not None
    container: dict[str, Any] = dep["spec"]["template"]["spec"]["containers"][0]
    return container


def test_the_operator_pod_takes_ingress_only_from_what_the_values_allow(
        cluster: Cluster) -> None:
    docs = render(cluster)
    policy = find(docs, "NetworkPolicy", "tf-taskfleet")
    assert policy is not None, "the chart renders a NetworkPolicy for the operator pod"
    assert policy["spec"]["podSelector"] == {"matchLabels": OPERATOR}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert not policy["spec"].get("ingress"), "by default nothing in the cluster reaches it"
    # the dashboard on loopback, no token needed for it (kubectl port-forward)
    container = operator_container(docs)
    assert "--dashboard-address=127.0.0.1" in container["args"]
    assert "TASKFLEET_DASHBOARD_TOKEN" not in {e["name"] for e in container["env"]}

    prometheus = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mon"}}}
    web = {"podSelector": {"matchLabels": {"role": "ingress"}}}
    docs = render(cluster, "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels"
                           ".kubernetes\\.io/metadata\\.name=mon",
                  "networkPolicy.dashboardFrom[0].podSelector.matchLabels.role=ingress")
    policy = find(docs, "NetworkPolicy", "tf-taskfleet")
    assert policy is not None
    assert policy["spec"]["ingress"] == [
        {"ports": [{"port": "metrics", "protocol": "TCP"}], "from": [prometheus]}], \
        "no dashboard rule while the dashboard binds loopback"

    docs = render(cluster, "dashboard.address=0.0.0.0", "dashboard.tokenSecret.name=dash",
                  "dashboard.allowedHosts[0]=tf-taskfleet.ns1.svc",
                  "networkPolicy.dashboardFrom[0].podSelector.matchLabels.role=ingress")
    policy = find(docs, "NetworkPolicy", "tf-taskfleet")
    assert policy is not None
    assert policy["spec"]["ingress"] == [
        {"ports": [{"port": "dashboard", "protocol": "TCP"}], "from": [web]}]
    container = operator_container(docs)
    assert "--dashboard-address=0.0.0.0" in container["args"]
    assert "--dashboard-allowed-host=tf-taskfleet.ns1.svc" in container["args"]
    [token] = [e for e in container["env"] if e["name"] == "TASKFLEET_DASHBOARD_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "dash", "key": "token"}

    refused = render(cluster, "dashboard.address=0.0.0.0", check=False)
    assert isinstance(refused, subprocess.CompletedProcess) and refused.returncode != 0
    assert "dashboard.tokenSecret.name" in refused.stderr

    docs = render(cluster, "networkPolicy.enabled=false")
    assert not [d for d in docs if d["kind"] == "NetworkPolicy"]


def test_the_bundled_redis_has_a_password_a_new_image_and_a_network_policy(
        cluster: Cluster, tmp_path: Path) -> None:
    docs = render(cluster, "redis.enabled=true",
                  "redis.clientsFrom[0].podSelector.matchLabels.app=web")
    secret = find(docs, "Secret", "tf-taskfleet-redis")
    assert secret is not None
    assert secret["metadata"]["labels"]["taskfleet.dev/redis-credentials"] == "true", \
        "a TaskQueue's urlFrom may name it: the operator reads only labelled Secrets"
    data = secret["stringData"]
    password = data["password"]
    assert len(password) == 32 and password.isalnum()
    assert data["url"] == f"redis://:{password}@tf-taskfleet-redis.ns1.svc:6379/0"
    dep = find(docs, "Deployment", "tf-taskfleet-redis")
    assert dep is not None
    pod = dep["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "redis:7.2.16-alpine"
    assert container["command"] == ["redis-server", "/etc/taskfleet-redis/redis.conf"]
    assert password not in str(container), "the password stays out of the command line"
    assert pod["volumes"][0]["secret"]["secretName"] == "tf-taskfleet-redis"
    policy = find(docs, "NetworkPolicy", "tf-taskfleet-redis")
    assert policy is not None
    assert policy["spec"]["podSelector"] == {"matchLabels": {
        "app.kubernetes.io/instance": "tf", "app.kubernetes.io/component": "redis"}}
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": OPERATOR}},
        {"namespaceSelector": {}, "podSelector": {"matchLabels": {
            "app.kubernetes.io/name": "taskfleet-worker",
            "app.kubernetes.io/component": "worker"}}},
        {"podSelector": {"matchLabels": {"app": "web"}}}]
    # The configuration the chart writes, run by a real redis-server (on loopback): the
    # password is required, and the URL's password is the one.
    conf = tmp_path / "redis.conf"
    conf.write_text(data["redis.conf"])
    port = free_port()
    server = subprocess.Popen(["redis-server", str(conf), "--port", str(port), "--bind",
                               "127.0.0.1", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        anonymous = redis.Redis(port=port)
        wait_for("redis-server up", lambda: _answers(anonymous), timeout=15)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        url = data["url"].replace("tf-taskfleet-redis.ns1.svc", "127.0.0.1").replace(
            ":6379/", f":{port}/")
        assert redis.Redis.from_url(url).ping() is True
    finally:
        server.terminate()
        server.wait(15)


def _answers(client: redis.Redis) -> bool:
    try:
        client.ping()
    except redis.AuthenticationError:
        return True
    except redis.ConnectionError:
        return False
    return True


@pytest.fixture
def release(crds: Cluster, namespace: str) -> Iterator[str]:
    helm(crds, "install", "tf", str(CHART), "-n", namespace, "--set",
         "clusterWide=false,redis.enabled=true")
    try:
        yield "tf"
    finally:
        helm(crds, "uninstall", "tf", "-n", namespace, check=False)


def test_the_redis_password_is_kept_across_upgrades(crds: Cluster, namespace: str,
                                                     release: str) -> None:
    def password() -> str:
        out = crds.kubectl("get", "secret", "tf-taskfleet-redis", "-o",
                           "jsonpath={.data.password}", namespace=namespace)
        return base64.b64decode(out.stdout).decode()
    first = password()
    assert len(first) == 32
    helm(crds, "upgrade", release, str(CHART), "-n", namespace, "--reuse-values")
    assert password() == first, "an upgrade kept the generated password"
    url = crds.kubectl("get", "secret", "tf-taskfleet-redis", "-o", "jsonpath={.data.url}",
                       namespace=namespace).stdout
    assert f":{first}@" in base64.b64decode(url).decode()
    names = crds.kubectl("get", "networkpolicy", "-o", "name", namespace=namespace).stdout
    assert set(names.split()) == {"networkpolicy.networking.k8s.io/tf-taskfleet",
                                  "networkpolicy.networking.k8s.io/tf-taskfleet-redis"}
