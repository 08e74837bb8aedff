"""Smoke tests proving the test environment is the real thing."""

from __future__ import annotations

import socket
from pathlib import Path

import redis
import yaml

from testenv.cluster import Cluster, names
from testenv.redis_server import RedisServer
from testenv.resources import tolerate_kwok
from testenv.waiting import wait_for

WIDGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.smoke.taskfleet.dev}
spec:
  group: smoke.taskfleet.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [size]
            properties:
              size: {type: integer, minimum: 1, maximum: 10}
"""


def test_crd_schema_is_enforced_by_the_api_server(cluster: Cluster, namespace: str) -> None:
    cluster.apply(WIDGET_CRD)
    cluster.kubectl("wait", "--for=condition=Established", "crd/widgets.smoke.taskfleet.dev",
                    "--timeout=30s")
    bad = cluster.apply("apiVersion: smoke.taskfleet.dev/v1\nkind: Widget\n"
                        "metadata: {name: big}\nspec: {size: 99}\n", namespace=namespace,
                        check=False)
    assert bad.returncode != 0
    assert "spec.size: Invalid value: 99: spec.size in body should be less than or equal to 10" \
        in bad.stderr
    ok = cluster.apply("apiVersion: smoke.taskfleet.dev/v1\nkind: Widget\n"
                       "metadata: {name: small}\nspec: {size: 3}\n", namespace=namespace)
    assert "widget.smoke.taskfleet.dev/small created" in ok.stdout


def test_deployment_gets_ready_pods_and_is_garbage_collected(cluster: Cluster,
                                                             namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "smoke"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "smoke"}},
                 "template": {"metadata": {"labels": {"app": "smoke"}},
                              "spec": tolerate_kwok({"containers": [
                                  {"name": "main", "image": "example.invalid/smoke:1"}]})}},
    }
    cluster.apply(yaml.safe_dump(deployment), namespace=namespace)

    def ready_replicas() -> int:
        d = cluster.get("deployment", "smoke", namespace)
        return int((d or {}).get("status", {}).get("readyReplicas", 0))

    wait_for("3 ready replicas", lambda: ready_replicas() == 3, 60,
             describe=lambda: cluster.kubectl("get", "pods", "-o", "wide",
                                              namespace=namespace).stdout)
    pods = cluster.list("pods", namespace, "app=smoke")
    assert {p["spec"]["nodeName"] for p in pods} <= {"kwok-node-0", "kwok-node-1"}
    assert all(p["status"]["phase"] == "Running" for p in pods)
    assert len(cluster.list("replicasets", namespace, "app=smoke")) == 1

    cluster.kubectl("delete", "deployment", "smoke", "--wait=false", namespace=namespace)
    wait_for("replicaset and pods garbage-collected",
             lambda: not cluster.list("replicasets", namespace, "app=smoke")
             and not cluster.list("pods", namespace, "app=smoke"), 60,
             describe=lambda: str(names(cluster.list("pods", namespace))))


def test_rbac_is_enforced(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", namespace=namespace)
    out = cluster.kubectl("auth", "can-i", "list", "pods",
                          f"--as=system:serviceaccount:{namespace}:nobody",
                          namespace=namespace, check=False)
    assert out.stdout.strip() == "no"


def test_cluster_listens_on_loopback_only(cluster: Cluster) -> None:
    conf = yaml.safe_load_all(
        (cluster.workdir / "kwok" / "clusters" / cluster.name / "kwok.yaml").read_text())
    ports = {p["port"] for doc in conf if doc and doc.get("kind") == "KwokctlConfiguration"
             for c in doc.get("components", []) for p in c.get("ports", [])}
    assert ports, "no component ports found"
    listening = _listening_addresses()
    for port in ports:
        assert listening.get(port) == {"127.0.0.1"}, f"port {port} listens on {listening.get(port)}"


def test_redis_round_trip(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.set("smoke", "ok")
    assert client.get("smoke") == b"ok"
    assert client.connection_pool.connection_kwargs["host"] == "127.0.0.1"
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=2):
        pass


def _listening_addresses() -> dict[int, set[str]]:
    """Port -> local addresses of TCP sockets in LISTEN state (from /proc/net/tcp{,6})."""
    out: dict[int, set[str]] = {}
    for path, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        if not Path(path).exists():
            continue
        for line in Path(path).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":
                continue
            addr_hex, port_hex = fields[1].split(":")
            port = int(port_hex, 16)
            if v6:
                addr = "::1" if addr_hex.endswith("01000000") and set(addr_hex[:24]) == {"0"} \
                    else ("::" if set(addr_hex) == {"0"} else addr_hex)
            else:
                addr = socket.inet_ntoa(bytes.fromhex(addr_hex)[::-1])
            out.setdefault(port, set()).add(addr)
    return out
