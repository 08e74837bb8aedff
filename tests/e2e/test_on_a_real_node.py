"""A user's first hour, for real: the images built here, the chart installed, the example
applied, and workers running as containers on the cluster's real node (containerd and a
kubelet), scaled by the operator in its own container.

Local-only values, and nothing else, differ from *On a real cluster* in docs/kubernetes.md: pods
use the host's network (Redis and the API server are on loopback here; there is no
kube-proxy), the operator reaches the API server at 127.0.0.1, images come from the node's
containerd under their local names (localhost/..., imagePullPolicy: Never), and
everything is placed on the real node.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from taskfleet import App, live_workers, queue_stats
from testenv.cluster import Cluster
from testenv.images import EXAMPLE_IMAGE, OPERATOR_IMAGE, WORKER_IMAGE, oci_archives
from testenv.node import RealNode
from testenv.processes import ROOT
from testenv.redis_server import RedisServer, free_port
from testenv.resources import Pool, task_queue
from testenv.waiting import assert_stays, wait_for

EXAMPLE = ROOT / "examples" / "video-site"
CHART = ROOT / "charts" / "taskfleet"
SAMPLE = ROOT / "tests" / "integration" / "apps" / "sample.py"

pytestmark = pytest.mark.timeout(900)


@dataclass
class Site:
    """The chart installed in a namespace of its own, on the real node."""

    cluster: Cluster
    node: RealNode
    namespace: str
    redis: RedisServer
    liveness_port: int
    log: Path
    metrics_port: int = 0
    dashboard_port: int = 0

    def operator_pod(self) -> dict[str, Any] | None:
        pods = self.cluster.list("pods", self.namespace,
                                 "app.kubernetes.io/component=operator")
        return pods[0] if len(pods) == 1 else None

    def operator_log(self) -> str:
        out = self.cluster.kubectl("logs", "-l", "app.kubernetes.io/component=operator",
                                   "--tail=80", namespace=self.namespace, check=False)
        return out.stdout + out.stderr

    def pool(self, name: str) -> Pool:
        return Pool(self.cluster, self.namespace, name, self.operator_log)

    def place(self, pool_spec: dict[str, Any]) -> dict[str, Any]:
        return self.node.place_pool(pool_spec)


def helm(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([str(cluster.bin / "helm"), "--kubeconfig", str(cluster.kubeconfig),
                          *args], capture_output=True, text=True, env=cluster.env, timeout=300)
    assert out.returncode == 0, f"helm {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def node_images(real_node: RealNode) -> list[str]:
    """The three images, built from their Dockerfiles and loaded into the node's containerd."""
    loaded: list[str] = []
    for archive in oci_archives().values():
        loaded += real_node.load_image(archive)
    return loaded


@pytest.fixture(scope="module")
def site(crds: Cluster, real_node: RealNode, node_images: list[str],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    namespace = f"real-{os.getpid()}"
    crds.kubectl("create", "namespace", namespace)
    server = RedisServer().start()
    tmp = tmp_path_factory.mktemp("real-node")
    port = free_port()
    values = {
        "image": {"repository": OPERATOR_IMAGE.split(":")[0], "tag": "0.1.0",
                  "pullPolicy": "Never"},
        "workerImage": {"repository": WORKER_IMAGE.split(":")[0], "tag": "0.1.0"},
        "clusterWide": False, "leaderLeaseSeconds": 5, "livenessPort": port,
        "metricsPort": (metrics_port := free_port()),
        "dashboard": {"port": (dashboard_port := free_port())},
        "nodeSelector": real_node.node_selector, "tolerations": [real_node.toleration],
        "localOnly": {"hostNetwork": True, "apiServerHost": "127.0.0.1",
                      "apiServerPort": str(crds.apiserver_port)},
    }
    (tmp / "values.yaml").write_text(yaml.safe_dump(values))
    found = Site(crds, real_node, namespace, server, port, tmp / "operator.log", metrics_port,
                 dashboard_port)
    try:
        helm(crds, "install", "tf", str(CHART), "-n", namespace, "-f", str(tmp / "values.yaml"),
             "--wait", "--timeout", "120s")
        yield found
    finally:
        found.log.write_text(found.operator_log())
        subprocess.run([str(crds.bin / "helm"), "--kubeconfig", str(crds.kubeconfig),
                        "uninstall", "tf", "-n", namespace, "--wait"], env=crds.env,
                       capture_output=True, timeout=120)
        # Workers drain on SIGTERM; the namespace (and every container in it) goes.
        crds.kubectl("delete", "namespace", namespace, "--timeout=120s", check=False)
        server.close()


def test_the_chart_runs_the_operator_image_on_the_real_node(site: Site) -> None:
    pod = wait_for("the operator pod Ready", lambda: (p := site.operator_pod()) and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in p["status"].get("conditions", [])) and p, 60)
    assert pod["spec"]["nodeName"] == site.node.name
    [container] = pod["status"]["containerStatuses"]
    assert container["imageID"], "run from the image built here"
    assert container["restartCount"] == 0
    # its liveness endpoint answers as the kubelet's probe sees it (once kopf has started)
    wait_for("the liveness endpoint", lambda: answers(
        f"http://127.0.0.1:{site.liveness_port}/healthz"), 60, describe=site.operator_log)
    # its metrics and its dashboard, on the ports the chart gave them
    wait_for("the operator's metrics say it leads", lambda: "taskfleet_operator_leader 1.0" in
             fetch(f"http://127.0.0.1:{site.metrics_port}/metrics"), 60,
             describe=site.operator_log)
    assert "<title>taskfleet</title>" in fetch(f"http://127.0.0.1:{site.dashboard_port}/")
    lease = wait_for("the operator holds its Lease", lambda: (site.cluster.get(
        "lease", "tf-taskfleet-leader", site.namespace) or {}).get("spec", {}).get(
        "holderIdentity"), 30)
    assert lease == pod["metadata"]["name"]


def test_the_example_scales_real_worker_containers_out_and_back_to_zero(site: Site) -> None:
    client = redis.Redis.from_url(site.redis.url)
    client.flushall()
    docs = [d for name in ("10-queues.yaml", "20-pools.yaml", "30-web.yaml")
            for d in yaml.safe_load_all((EXAMPLE / name).read_text()) if d]
    web_port = free_port()
    for d in docs:
        if d["kind"] == "TaskQueue":
            d["spec"]["redis"]["url"] = site.redis.url
        elif d["kind"] == "WorkerPool":
            site.place(d["spec"])
            d["spec"]["image"] = EXAMPLE_IMAGE
            d["spec"]["env"] = [{"name": "TRANSCODE_SECONDS_PER_1080P", "value": "1"}]
            d["spec"]["autoscaling"].update(maxReplicas=min(d["spec"]["autoscaling"][
                "maxReplicas"], 4), scaleToZeroAfterSeconds=5, pollSeconds=1,
                scaleDown={"stabilizationSeconds": 2})
        elif d["kind"] == "Deployment":  # the web tier: one replica on the host's network
            spec = d["spec"]["template"]["spec"]
            d["spec"]["replicas"] = 1
            site.node.place(spec)
            [c] = spec["containers"]
            c["image"], c["imagePullPolicy"] = EXAMPLE_IMAGE, "Never"
            c["env"] = [{"name": "TASKFLEET_BROKER_URL", "value": site.redis.url},
                        {"name": "PORT", "value": str(web_port)}, *c["env"][1:]]
            c["ports"] = [{"name": "http", "containerPort": web_port}]
    site.cluster.apply(yaml.safe_dump_all(docs), namespace=site.namespace)
    transcoder = site.pool("transcoder")
    transcoder.wait_replicas(0, timeout=60)
    wait_for("the web tier Ready", lambda: (site.cluster.get(
        "deployment", "web", site.namespace) or {}).get("status", {}).get("readyReplicas"), 90)

    def post(path: str) -> dict[str, Any]:
        request = urllib.request.Request(f"http://127.0.0.1:{web_port}{path}", method="POST")
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 202
            body: dict[str, Any] = json.loads(reply.read())
            return body

    def status(task_id: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/tasks/{task_id}",
                                    timeout=10) as reply:
            return str(json.loads(reply.read())["status"])

    burst = time.monotonic()
    tasks = [t for i in range(10) for t in post(f"/upload?video=v{i}")["tasks"]]
    app = App(site.redis.url)
    wait_for("a task running in a new container",
             lambda: queue_stats(app.redis, ["transcode"])["transcode"].in_flight > 0, 120,
             interval=0.05, describe=transcoder.describe)
    first_task_seconds = time.monotonic() - burst
    pods_seen: set[str] = set()

    def all_done() -> bool:
        pods_seen.update(p["metadata"]["name"] for p in transcoder.pods())
        return all(status(t) == "SUCCESS" for t in tasks)

    wait_for("every transcode done", all_done, 180, interval=0.5, describe=transcoder.describe)
    assert len(pods_seen) >= 2, f"the pool scaled out: {pods_seen}"
    assert app.broker.dead_list("transcode") == []
    transcoder.wait_replicas(0, timeout=90)
    transcoder.wait("every worker container gone", lambda: not transcoder.pods(), 90)
    print(f"burst to first task in a new container: {first_task_seconds:.2f}s; "
          f"pods: {len(pods_seen)}")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return str(reply.read().decode())
    except OSError:
        return ""


def sample_pool(site: Site, name: str, queue: str, **spec: Any) -> Pool:
    """A pool of the generic worker image running tests/integration/apps/sample.py, given
    to it the documented way: a ConfigMap named in spec.code."""
    site.cluster.kubectl("create", "configmap", "sample-code", f"--from-file={SAMPLE}",
                         namespace=site.namespace, check=False)
    site.cluster.apply(yaml.safe_dump(task_queue(queue, site.redis.url)),
                       namespace=site.namespace)
    body = site.place({"queues": [queue], "app": "sample:app", "code": {"configMap":
                       "sample-code"}, **spec})
    site.cluster.apply(yaml.safe_dump({"apiVersion": "taskfleet.dev/v1alpha1",
                                       "kind": "WorkerPool", "metadata": {"name": name},
                                       "spec": body}), namespace=site.namespace)
    return site.pool(name)


def runs(client: redis.Redis, kind: str) -> list[str]:
    return [v.decode() for v in client.lrange(f"test:runs:{kind}", 0, -1)]


def container_state(site: Site, pod: str) -> dict[str, Any]:
    found = site.cluster.get("pod", pod, site.namespace) or {}
    statuses = found.get("status", {}).get("containerStatuses") or [{}]
    state: dict[str, Any] = statuses[0].get("state") or {}
    return state


def test_every_task_of_a_burst_runs_once_on_real_worker_containers(site: Site) -> None:
    client = redis.Redis.from_url(site.redis.url)
    client.flushall()
    pool = sample_pool(site, "jobs", "jobs", pool="threads", concurrency=2,
                       terminationGracePeriodSeconds=30,
                       autoscaling={"minReplicas": 0, "maxReplicas": 3, "targetPerReplica": 20,
                                    "scaleToZeroAfterSeconds": 2, "pollSeconds": 0.5,
                                    "scaleDown": {"stabilizationSeconds": 1}})
    pool.wait_replicas(0, timeout=60)
    app = App(site.redis.url)
    results = app.send_many("sample.sleep_record", [[str(i), 0.05] for i in range(300)],
                            queue="jobs")
    pods_seen: set[str] = set()
    for r in results:
        pods_seen.update(p["metadata"]["name"] for p in pool.pods())
        r.get(timeout=180)
    done = runs(client, "record")
    assert sorted(done, key=int) == [str(i) for i in range(300)], "each task done once"
    pool.wait_replicas(0, timeout=60)
    pool.wait("every worker container gone", lambda: not pool.pods(), 90)
    assert len(pods_seen) == 3, f"the pool went out to max: {pods_seen}"
    assert any(m.startswith("ready=") and "→ 3" in m for m in pool.scale_events())


def test_scale_down_keeps_the_busy_worker_and_a_deleted_one_drains(site: Site) -> None:
    client = redis.Redis.from_url(site.redis.url)
    client.flushall()
    pool = sample_pool(site, "mixed", "mixed", pool="threads", concurrency=1,
                       terminationGracePeriodSeconds=60,
                       autoscaling={"maxReplicas": 3, "targetPerReplica": 1,
                                    "scaleToZeroAfterSeconds": 600, "pollSeconds": 0.5,
                                    "scaleDown": {"stabilizationSeconds": 1}})
    app = App(site.redis.url)
    app.send_task("sample.sleep_record", ["long", 30.0], queue="mixed")
    for i in range(2):
        app.send_task("sample.sleep_record", [f"short{i}", 2.0], queue="mixed")
    pool.wait_replicas(3)
    pool.wait("three tasks started in three containers",
              lambda: client.llen("test:runs:started") == 3, 120)
    busy = wait_for("the long task's pod", lambda: [
        w.pod for w in live_workers(app.redis) if w.busy] if client.llen(
        "test:runs:record") == 2 else None, 30)
    assert len(busy) == 1
    pool.wait_replicas(1, timeout=60)
    pool.wait("the idle containers stopped by the kubelet", lambda: len(pool.pods()) == 1, 90)
    [survivor] = pool.pods()
    assert survivor["metadata"]["name"] == busy[0], "the busy worker was kept"
    assert survivor["metadata"]["annotations"][
        "controller.kubernetes.io/pod-deletion-cost"] == "100"

    # Now the user deletes it mid-task: SIGTERM from the kubelet, the task finishes
    # within the grace period, the container exits 0, and the task is not run again.
    name = busy[0]
    site.cluster.kubectl("patch", "pod", name, "--type=merge", "-p",
                         '{"metadata": {"finalizers": ["taskfleet.dev/test-hold"]}}',
                         namespace=site.namespace)
    try:
        site.cluster.kubectl("delete", "pod", name, "--wait=false", namespace=site.namespace)
        terminated = wait_for("the container stopped", lambda: container_state(
            site, name).get("terminated"), 60)
        assert terminated["exitCode"] == 0, terminated
    finally:
        site.cluster.kubectl("patch", "pod", name, "--type=merge", "-p",
                             '{"metadata": {"finalizers": null}}', namespace=site.namespace,
                             check=False)
    assert runs(client, "record").count("long") == 1, "finished within the grace period"
    assert_stays("the long task ran once", lambda: runs(client, "started").count("long") == 1,
                 5.0)


def test_a_killed_worker_container_is_restarted_and_its_task_runs_again(site: Site) -> None:
    client = redis.Redis.from_url(site.redis.url)
    client.flushall()
    pool = sample_pool(site, "fragile", "fragile", pool="threads", replicas=1)
    pool.wait("one worker container running", lambda: [
        p for p in pool.pods() if container_state(site, p["metadata"]["name"]).get(
            "running")], 90)
    app = App(site.redis.url)
    result = app.send_task("sample.sleep_record", ["job", 5.0], queue="fragile")
    wait_for("the task started", lambda: runs(client, "started") == ["job"], 60)
    [pod] = pool.pods()
    container_id = pod["status"]["containerStatuses"][0]["containerID"].split("//", 1)[1]
    subprocess.run(["ctr", "--address", site.node.containerd_socket, "-n", "k8s.io", "tasks",
                    "kill", "--signal", "SIGKILL", container_id], check=True,
                   capture_output=True)
    restarted = pool.wait("the kubelet restarted the container", lambda: (
        s := site.cluster.get("pod", pod["metadata"]["name"], site.namespace)) and
        s["status"]["containerStatuses"][0]["restartCount"] >= 1 and s, 60)
    last = restarted["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137, last
    # its lease (30 s) expires and the restarted worker runs it again: nothing lost
    assert result.get(timeout=90) == "job"
    assert runs(client, "started") == ["job", "job"]


def test_a_worker_cut_off_from_redis_is_restarted_by_its_liveness_probe(site: Site) -> None:
    cut_off = RedisServer().start()
    try:
        site.cluster.apply(yaml.safe_dump(task_queue("lonely", cut_off.url)),
                           namespace=site.namespace)
        body = site.place({"queues": ["lonely"], "app": "video.tasks:app",
                           "image": EXAMPLE_IMAGE, "pool": "threads", "replicas": 1,
                           "terminationGracePeriodSeconds": 5,
                           "healthCheck": {"maxAgeSeconds": 15, "initialDelaySeconds": 5,
                                           "periodSeconds": 3, "failureThreshold": 1}})
        site.cluster.apply(yaml.safe_dump({"apiVersion": "taskfleet.dev/v1alpha1",
                                           "kind": "WorkerPool",
                                           "metadata": {"name": "lonely"}, "spec": body}),
                           namespace=site.namespace)
        pool = site.pool("lonely")
        pool.wait("the worker heartbeats", lambda: live_workers(App(cut_off.url).redis), 90)
        [pod] = pool.pods()
        name = pod["metadata"]["name"]
        assert cut_off.process is not None
        os.kill(cut_off.process.pid, signal.SIGSTOP)  # Redis stops answering
        try:
            pool.wait("restarted by its liveness probe", lambda: (
                (site.cluster.get("pod", name, site.namespace) or {}).get("status", {})
                .get("containerStatuses") or [{}])[0].get("restartCount", 0) >= 1, 120)
        finally:
            os.kill(cut_off.process.pid, signal.SIGCONT)
        unhealthy = [e["message"] for e in site.cluster.list("events", site.namespace)
                     if e["reason"] == "Unhealthy" and e["involvedObject"]["name"] == name]
        assert any("no successful heartbeat" in m for m in unhealthy), unhealthy
        done = App(cut_off.url).send_task("mail.send_welcome", ["u1"], queue="lonely")
        assert done.get(timeout=90) == "welcome mail sent to u1", "back to work"
    finally:
        cut_off.close()


def test_a_pool_with_metrics_serves_them_on_its_named_port(site: Site) -> None:
    """spec.metrics on the generic worker image: a container port named metrics, and the
    tasks the worker ran counted there (the host network makes it reachable on loopback)."""
    client = redis.Redis.from_url(site.redis.url)
    client.flushall()
    port = free_port()
    pool = sample_pool(site, "counted", "counted", pool="processes", concurrency=2,
                       metrics={"enabled": True, "port": port},
                       autoscaling={"minReplicas": 1, "maxReplicas": 1, "pollSeconds": 0.5})
    pod = wait_for("a Ready worker pod", lambda: next(
        (p for p in pool.pods() if any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in p["status"].get("conditions", []))), None),
        120, describe=pool.describe)
    [container] = pod["spec"]["containers"]
    [declared] = container["ports"]  # (the host network adds hostPort)
    assert (declared["name"], declared["containerPort"]) == ("metrics", port)
    results = App(site.redis.url).send_many("sample.sleep_record",
                                            [[str(i), 0.01] for i in range(10)],
                                            queue="counted")
    assert [r.get(timeout=60) for r in results] == [str(i) for i in range(10)]

    def counted() -> bool:
        return any(ln.startswith("taskfleet_tasks_finished_total{") and
                   'task="sample.sleep_record"' in ln and 'outcome="succeeded"' in ln and
                   ln.endswith(" 10.0")
                   for ln in fetch(f"http://127.0.0.1:{port}/metrics").splitlines())

    wait_for("the ten tasks counted on the pod's metrics port", counted, 30,
             describe=lambda: fetch(f"http://127.0.0.1:{port}/metrics")[-2000:])
    site.cluster.kubectl("delete", "workerpool", "counted", namespace=site.namespace)
