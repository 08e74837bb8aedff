"""`make example-up` / `make example-down`: the video site on the local cluster, by hand.

After `make cluster-up` (its real node has the images), this does what the README's
*On a real cluster* does, `helm install` of the chart and `kubectl apply` of this
directory, into the namespace video-site, with the local-only values and nothing else:

- a redis-server on 127.0.0.1 for the site instead of 00-redis.yaml (no image can be
  pulled here), named in the TaskQueues and the web tier;
- the operator, the pools' workers and the web tier on the real node: its toleration
  and nodeSelector, the host network (Redis and the API server are on loopback, and
  there is no kube-proxy), the API server at 127.0.0.1 instead of the `kubernetes`
  Service; the web tier is reached at 127.0.0.1:PORT, so its Service is left out;
- the images as loaded onto the node (localhost/..., imagePullPolicy: Never), no
  resource requests (a laptop has not the CPUs the pools ask for), one web replica
  (two would share the host's port).

    python examples/video-site/local.py up|down|web [--cluster NAME]

``web`` prints the web tier's address. The cluster is the one `make cluster-up` made
(KWOK_WORKDIR, default ~/.kwok); what ``up`` started beside it (the redis-server) and
chose (ports) is kept in its directory there, and ``down`` or `make cluster-down`
stops it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from testenv.cluster import Cluster
from testenv.images import EXAMPLE_IMAGE, OPERATOR_IMAGE, WORKER_IMAGE
from testenv.node import RealNode
from testenv.redis_server import free_port, port_is_free
from testenv.waiting import wait_for

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NAMESPACE = "video-site"
RELEASE = "tf"
CHART = ROOT / "charts" / "taskfleet"
MANIFESTS = ("10-queues.yaml", "20-pools.yaml", "30-web.yaml")
WEB_PORT = 8000
"""The web tier's port on the host, when it is free (else another)."""


class Fail(Exception):
    """What went wrong, and what to do about it: printed as one line."""


def kwok_workdir() -> Path:
    return Path(os.environ.get("KWOK_WORKDIR") or Path.home() / ".kwok")


def local_cluster(name: str) -> Cluster:
    """The cluster `make cluster-up` made, through kwokctl's own kubeconfig for it (one
    context: whatever the user's current context is, this talks to that cluster)."""
    directory = kwok_workdir() / "clusters" / name
    kubeconfig = directory / "kubeconfig.yaml"
    if not kubeconfig.exists():
        raise Fail(f"no local cluster '{name}' in {kwok_workdir()}: start it with "
                   "'make cluster-up'")
    cluster = Cluster(name=name, workdir=directory)  # never .down(): cluster-down does that
    cluster.kubeconfig = kubeconfig
    cluster.env.update(KWOK_WORKDIR=str(kwok_workdir()), KUBECONFIG=str(kubeconfig))
    return cluster


class State:
    """What ``up`` started and chose, in the cluster's directory."""

    def __init__(self, cluster: Cluster) -> None:
        self.dir = kwok_workdir() / "clusters" / cluster.name / NAMESPACE
        self.file = self.dir / "state.json"
        self.redis_pidfile = self.dir / "redis.pid"

    def load(self) -> dict[str, int]:
        if not self.file.exists():
            return {}
        chosen: dict[str, int] = json.loads(self.file.read_text())
        return chosen

    def save(self, values: dict[str, int]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.file.write_text(json.dumps(values))

    def redis_pid(self) -> int | None:
        try:
            pid = int(self.redis_pidfile.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid


def ports(state: State) -> dict[str, int]:
    """The ports of this site on the host: chosen once, kept for the next ``up``."""
    chosen = state.load()
    if not chosen:
        chosen = {"redis": free_port(), "web": WEB_PORT if port_is_free(WEB_PORT) else free_port(),
                  "liveness": free_port(), "metrics": free_port(), "dashboard": free_port()}
        state.save(chosen)
    return chosen


def start_redis(state: State, port: int) -> str:
    """A redis-server on 127.0.0.1 for the site (no persistence), left running."""
    url = f"redis://127.0.0.1:{port}/0"
    if state.redis_pid() is not None:
        return url
    state.dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                    "--daemonize", "yes", "--pidfile", str(state.redis_pidfile),
                    "--dir", str(state.dir), "--logfile", str(state.dir / "redis.log"),
                    "--save", "", "--appendonly", "no"], check=True, capture_output=True)
    wait_for("the site's redis-server", lambda: state.redis_pid() is not None, 10, 0.05)
    return url


def check_node(node: RealNode) -> None:
    if not node.status().running:
        raise Fail("the cluster's real node is not running (TASKFLEET_REAL_NODE=0?); the "
                   "example's pods run there: 'make cluster-up' starts it")
    missing = {OPERATOR_IMAGE, WORKER_IMAGE, EXAMPLE_IMAGE} - set(node.images())
    if missing:
        raise Fail(f"the real node lacks {', '.join(sorted(missing))}: 'make cluster-up' "
                   "builds the images and loads them there")


def chart_values(cluster: Cluster, node: RealNode, chosen: dict[str, int]) -> dict[str, Any]:
    return {
        "image": {"repository": OPERATOR_IMAGE.split(":")[0],
                  "tag": OPERATOR_IMAGE.split(":")[1], "pullPolicy": "Never"},
        "workerImage": {"repository": WORKER_IMAGE.split(":")[0],
                        "tag": WORKER_IMAGE.split(":")[1]},
        "clusterWide": False,
        "livenessPort": chosen["liveness"], "metricsPort": chosen["metrics"],
        "dashboard": {"port": chosen["dashboard"]},
        "nodeSelector": node.node_selector, "tolerations": [node.toleration],
        "localOnly": {"hostNetwork": True, "apiServerHost": "127.0.0.1",
                      "apiServerPort": str(cluster.apiserver_port)},
    }


def manifests(node: RealNode, redis_url: str, web_port: int) -> list[dict[str, Any]]:
    """This directory's queues, pools and web tier with the local-only values."""
    docs = [d for name in MANIFESTS for d in yaml.safe_load_all((HERE / name).read_text())
            if d and d["kind"] != "Service"]
    for d in docs:
        if d["kind"] == "TaskQueue":
            d["spec"]["redis"]["url"] = redis_url
        elif d["kind"] == "WorkerPool":
            node.place_pool(d["spec"])
            d["spec"]["image"] = EXAMPLE_IMAGE
        elif d["kind"] == "Deployment":  # the web tier
            d["spec"]["replicas"] = 1
            spec = d["spec"]["template"]["spec"]
            node.place(spec)
            for c in spec["containers"]:
                c["image"], c["imagePullPolicy"] = EXAMPLE_IMAGE, "Never"
                env = [e for e in c.get("env", []) if e["name"] not in
                       ("TASKFLEET_BROKER_URL", "HOST", "PORT")]
                c["env"] = [{"name": "TASKFLEET_BROKER_URL", "value": redis_url},
                            {"name": "HOST", "value": "127.0.0.1"},
                            {"name": "PORT", "value": str(web_port)}, *env]
                c["ports"] = [{"name": "http", "containerPort": web_port}]
    return docs


def helm(cluster: Cluster, *args: str) -> None:
    out = subprocess.run([str(cluster.bin / "helm"), "--kubeconfig", str(cluster.kubeconfig),
                          *args], capture_output=True, text=True, env=cluster.env)
    if out.returncode != 0:
        raise Fail(f"helm {args[0]} failed: {out.stderr.strip()}")


def ready(cluster: Cluster, kind: str, name: str) -> bool:
    found = cluster.get(kind, name, NAMESPACE) or {}
    return bool((found.get("status") or {}).get("readyReplicas"))


def up(cluster: Cluster) -> None:
    node = RealNode(cluster)
    check_node(node)
    state = State(cluster)
    chosen = ports(state)
    redis_url = start_redis(state, chosen["redis"])
    values = state.dir / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(cluster, node, chosen)))
    print(f"helm install {RELEASE} charts/taskfleet -n {NAMESPACE} (local values: "
          f"{values}) ...", flush=True)
    helm(cluster, "upgrade", "--install", RELEASE, str(CHART), "-n", NAMESPACE,
         "--create-namespace", "-f", str(values), "--wait", "--timeout", "180s")
    print(f"kubectl apply -n {NAMESPACE} of examples/video-site/ (local values) ...",
          flush=True)
    cluster.apply(yaml.safe_dump_all(manifests(node, redis_url, chosen["web"])),
                  namespace=NAMESPACE)
    wait_for("the web tier Ready", lambda: ready(cluster, "deployment", "web"), 180)
    wait_for("the default pool's worker Ready", lambda: ready(cluster, "deployment", "default"),
             180)
    print(f"""
the video site runs on {node.name}, in namespace {NAMESPACE}:
  web tier   http://127.0.0.1:{chosen['web']}  (curl -X POST "http://127.0.0.1:{chosen['web']}/upload?video=v1")
  dashboard  http://127.0.0.1:{chosen['dashboard']}/
  redis      {redis_url}
  kubectl get wp,pods -n {NAMESPACE} -o wide""", flush=True)


def down(cluster: Cluster | None, name: str) -> None:
    if cluster is not None and cluster.get("namespace", NAMESPACE) is not None:
        subprocess.run([str(cluster.bin / "helm"), "--kubeconfig", str(cluster.kubeconfig),
                        "uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "120s"],
                       capture_output=True, env=cluster.env)
        # Workers drain on the kubelet's SIGTERM; the namespace goes with every pod in it.
        cluster.kubectl("delete", "namespace", NAMESPACE, "--timeout=180s", check=False)
    state_dir = kwok_workdir() / "clusters" / name / NAMESPACE
    stop_redis(state_dir / "redis.pid")
    for f in ("state.json", "values.yaml", "redis.log", "redis.pid"):
        (state_dir / f).unlink(missing_ok=True)
    if state_dir.exists() and not any(state_dir.iterdir()):
        state_dir.rmdir()


def stop_redis(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("action", choices=["up", "down", "web"])
    parser.add_argument("--cluster", default="taskfleet",
                        help="the local cluster's name (make cluster-up: taskfleet)")
    args = parser.parse_args()
    try:
        if args.action == "down":
            try:
                cluster: Cluster | None = local_cluster(args.cluster)
            except Fail:
                cluster = None  # gone already: only what ran beside it is left to stop
            down(cluster, args.cluster)
            return 0
        cluster = local_cluster(args.cluster)
        if args.action == "web":
            chosen = State(cluster).load()
            if not chosen:
                raise Fail("the example is not up: 'make example-up' starts it")
            print(f"127.0.0.1:{chosen['web']}")
            return 0
        up(cluster)
    except Fail as exc:
        print(f"example: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
