"""The real node beside kwok's fake ones: a kubelet and containerd that really run pods.

Timings are printed (``pytest -s``): how long a pod takes to run, a delete to finish,
and a second cluster with its node to come up and go away.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from testenv.cluster import TESTENV, Cluster
from testenv.node import LABEL_KEY, TAINT, RealNode
from testenv.resources import tolerate_kwok
from testenv.skips import skip_for_opt_out
from testenv.waiting import wait_for


def shell_assignment(path: Path, name: str) -> str:
    """The value of ``name=...`` in a shell script or env file; "" when there is none."""
    if path.exists():
        for line in path.read_text().splitlines():
            if line.startswith(f"{name}="):
                return line.split("=", 1)[1].strip()
    return ""


def kube_version() -> str:
    version = shell_assignment(TESTENV / "versions.env", "KUBE_VERSION")
    assert version, "no KUBE_VERSION in hack/testenv/versions.env"
    return version


def python_image() -> str:
    """The Dockerfiles' Python base, made locally by hack/base-image.sh (its name is there)."""
    return shell_assignment(TESTENV.parent / "base-image.sh", "base")


def pod(node: RealNode, name: str, *args: str, image: str = "", command: list[str] | None = None,
        env: dict[str, str] | None = None, host_dir: Path | None = None,
        grace: int = 30) -> str:
    """A pod manifest for the real node (the pause image unless ``image``), with
    ``host_dir`` mounted at /out."""
    container: dict[str, Any] = {
        "name": "main", "image": image or node.pause_image, "imagePullPolicy": "Never",
        "args": list(args), "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
    if command:
        container["command"] = command
    spec: dict[str, Any] = {"containers": [container], "terminationGracePeriodSeconds": grace}
    if host_dir is not None:
        container["volumeMounts"] = [{"name": "out", "mountPath": "/out"}]
        spec["volumes"] = [{"name": "out", "hostPath": {"path": str(host_dir),
                                                         "type": "Directory"}}]
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                           "spec": node.place(spec)})


def run_pod(cluster: Cluster, namespace: str, manifest: str, name: str,
            timeout: float = 60) -> float:
    """Apply a pod and wait until it is Ready; returns the seconds that took."""
    start = time.monotonic()
    cluster.apply(manifest, namespace=namespace)
    out = cluster.kubectl("wait", "--for=condition=Ready", f"pod/{name}",
                          f"--timeout={timeout:.0f}s", namespace=namespace, check=False)
    if out.returncode != 0:
        described = cluster.kubectl("describe", "pod", name, namespace=namespace,
                                    check=False).stdout
        raise AssertionError(f"pod {name} not Ready: {out.stderr}\n{described}")
    return time.monotonic() - start


def test_node_is_ready_and_run_by_its_own_kubelet(cluster: Cluster,
                                                  real_node: RealNode) -> None:
    node = cluster.get("node", real_node.name)
    assert node is not None
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True", ready
    info = node["status"]["nodeInfo"]
    assert info["containerRuntimeVersion"].startswith("containerd://1.6"), info
    assert info["kubeletVersion"] == kube_version()
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"}]
    labels = node["metadata"]["labels"]
    assert labels[LABEL_KEY] == "true"
    assert labels["kubernetes.io/os"] == "linux"
    assert node["spec"]["taints"] == [TAINT]
    # Not kwok's: no kwok annotation, and the kubelet itself holds the node's Lease,
    # while kwok holds those of its fake nodes.
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
    lease = wait_for("the kubelet's Lease", lambda: cluster.get(
        "lease", real_node.name, "kube-node-lease"), 30)
    assert lease is not None and lease["spec"]["holderIdentity"] == real_node.name
    fake = cluster.get("lease", "kwok-node-0", "kube-node-lease")
    assert fake is not None and fake["spec"]["holderIdentity"] != real_node.name
    # ...because kwok is told to manage only the annotated nodes.
    pidfile = cluster.workdir / "kwok" / "clusters" / cluster.name / "pids" / "kwok-controller.pid"
    args = Path(f"/proc/{pidfile.read_text().strip()}/cmdline").read_bytes().split(b"\0")
    assert b"--manage-all-nodes=false" in args
    assert b"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake" in args


def test_the_node_serves_on_loopback_and_the_service_range_is_blackholed(
        cluster: Cluster, real_node: RealNode) -> None:
    status = real_node.status()
    listening = _listening(status.pids)
    assert listening, "neither the kubelet nor containerd listens"
    assert {addr for addr, _ in listening} == {"127.0.0.1"}, listening
    assert int(status.get("kubelet_port") or 0) in {port for _, port in listening}
    # The kubernetes Service's ClusterIP leads off this machine: its range is a
    # blackhole here (checked with the routing table only; no packet is sent).
    service = cluster.get("service", "kubernetes", "default")
    assert service is not None
    cluster_ip = ipaddress.ip_address(service["spec"]["clusterIP"])
    cidrs = (status.get("blackholes") or "").split(",")
    assert any(cluster_ip in ipaddress.ip_network(c) for c in cidrs), (cluster_ip, cidrs)
    for cidr in cidrs:
        route = subprocess.run(["ip", "route", "show", "exact", cidr, "type", "blackhole"],
                               capture_output=True, text=True, check=True).stdout
        assert route.strip(), f"no blackhole route for {cidr}"


def test_a_pod_runs_and_kubectl_reaches_it(cluster: Cluster, real_node: RealNode,
                                           namespace: str) -> None:
    seconds = run_pod(cluster, namespace, pod(real_node, "hello", "hello", "from", "a",
                                              "real", "kubelet"), "hello")
    print(f"\npod Ready on {real_node.name} in {seconds:.2f}s")
    p = cluster.get("pod", "hello", namespace)
    assert p is not None
    assert p["spec"]["nodeName"] == real_node.name
    assert p["status"]["phase"] == "Running"
    assert p["status"]["hostIP"] == p["status"]["podIP"] == "127.0.0.1"  # the host network
    env = {e["name"]: e["value"] for e in p["spec"]["containers"][0]["env"]}
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == str(cluster.apiserver_port)
    # logs and exec go API server -> kubelet on 127.0.0.1 -> containerd
    logs = wait_for("the container's first line", lambda: cluster.kubectl(
        "logs", "hello", namespace=namespace).stdout, 10)
    assert logs == "hello from a real kubelet\n"
    out = cluster.kubectl("exec", "hello", "--", "/pause", "echo", "exec", "reached", "it",
                          namespace=namespace)
    assert out.stdout == "exec reached it\n"


def test_a_graceful_delete_sends_sigterm(cluster: Cluster, real_node: RealNode,
                                         namespace: str, tmp_path: Path) -> None:
    tmp_path.chmod(0o777)  # the pause image runs as 65535
    run_pod(cluster, namespace, pod(real_node, "drain", env={"PAUSE_SIGNAL_FILE": "/out/signal"},
                                    host_dir=tmp_path, grace=30), "drain")
    start = time.monotonic()
    cluster.kubectl("delete", "pod", "drain", "--wait=true", "--timeout=60s",
                    namespace=namespace)
    seconds = time.monotonic() - start
    print(f"\ngraceful delete done in {seconds:.2f}s (grace period 30s)")
    assert (tmp_path / "signal").read_text() == "pause: got SIGTERM, exiting\n"
    # The container stopped on the signal, not at the end of the grace period.
    assert seconds < 15


def test_only_pods_meant_for_it_land_there(cluster: Cluster, real_node: RealNode,
                                           namespace: str) -> None:
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "fake"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "fake"}},
                 "template": {"metadata": {"labels": {"app": "fake"}},
                              "spec": tolerate_kwok({"containers": [
                                  {"name": "main", "image": "example.invalid/fake:1"}]})}},
    }
    cluster.apply(yaml.safe_dump(deployment), namespace=namespace)
    stray = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray"},
             "spec": {"containers": [{"name": "main", "image": real_node.pause_image}]}}
    cluster.apply(yaml.safe_dump(stray), namespace=namespace)

    def running() -> list[dict[str, Any]]:
        pods = cluster.list("pods", namespace, "app=fake")
        return pods if [p["status"].get("phase") for p in pods] == ["Running"] * 3 else []

    pods = wait_for("3 Running pods on the fake nodes", running, 60,
                    describe=lambda: cluster.kubectl("get", "pods", "-o", "wide",
                                                     namespace=namespace).stdout)
    assert {p["spec"]["nodeName"] for p in pods} <= {"kwok-node-0", "kwok-node-1"}

    # A pod without the real node's toleration is not scheduled there (nor on kwok's).
    def unschedulable() -> str:
        stray = cluster.get("pod", "stray", namespace) or {}
        return next((c["message"] for c in stray.get("status", {}).get("conditions", [])
                     if c.get("reason") == "Unschedulable"), "")

    message = wait_for("the stray pod reported unschedulable", unschedulable, 30)
    nodes = len(cluster.list("nodes"))
    assert f"0/{nodes} nodes are available: {nodes} node(s) had untolerated taint" in message
    assert not (cluster.get("pod", "stray", namespace) or {})["spec"].get("nodeName")


def _podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(TESTENV.parent / "containers.conf")}
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=True)


def test_an_image_saved_by_podman_runs_there(cluster: Cluster, real_node: RealNode,
                                             namespace: str, tmp_path: Path,
                                             images: None) -> None:
    """The way the project's images reach the node: podman save --format oci-archive,
    then RealNode.load_image."""
    name = f"localhost/taskfleet-test/echo:{os.getpid()}"
    archive = real_node.status().get("pause_archive")
    assert archive, "node.sh status names no pause archive"
    loaded = _podman("load", "-q", "-i", archive).stdout
    try:
        _podman("tag", real_node.pause_image, name)
        _podman("save", "--format", "oci-archive", "-o", str(tmp_path / "echo.tar"), name)
    finally:
        _podman("rmi", name, real_node.pause_image)
    assert real_node.pause_image in loaded
    assert real_node.load_image(tmp_path / "echo.tar") == [name]
    assert name in real_node.images()
    run_pod(cluster, namespace, pod(real_node, "echo", "loaded", "from", "podman", image=name),
            "echo")
    assert cluster.kubectl("logs", "echo", namespace=namespace).stdout == \
        "loaded from podman\n"


API_PROBE = """
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
ctx = ssl.create_default_context(cafile=sa + "ca.crt")
req = urllib.request.Request(f"https://{host}:{port}/version",
                             headers={"Authorization": "Bearer " + open(sa + "token").read()})
print(host, json.load(urllib.request.urlopen(req, context=ctx, timeout=10))["gitVersion"],
      flush=True)
"""


def test_a_pod_reaches_the_api_server_on_loopback(cluster: Cluster, real_node: RealNode,
                                                  namespace: str, tmp_path: Path,
                                                  images: None) -> None:
    """In-cluster config as a client library reads it (KUBERNETES_SERVICE_HOST/PORT, the
    service account's token and CA), pointed at 127.0.0.1 instead of the Service IP."""
    image = python_image()
    assert image, "hack/base-image.sh names no Python base image"
    assert subprocess.run(["podman", "image", "exists", image]).returncode == 0, \
        f"{image} is not in podman's storage after hack/images.sh"
    if image not in real_node.images():
        _podman("save", "--format", "oci-archive", "-o", str(tmp_path / "python.tar"), image)
        assert image in real_node.load_image(tmp_path / "python.tar")
    manifest = yaml.safe_load(pod(real_node, "probe", "-c", API_PROBE, image=image,
                                  command=["python3"]))
    manifest["spec"]["restartPolicy"] = "Never"
    cluster.apply(yaml.safe_dump(manifest), namespace=namespace)
    cluster.kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/probe",
                    "--timeout=60s", namespace=namespace)
    logs = cluster.kubectl("logs", "probe", namespace=namespace).stdout
    assert logs == f"127.0.0.1 {kube_version()}\n"


def test_a_second_cluster_and_its_node_leave_nothing_behind(real_node: RealNode) -> None:
    """Up twice (harmless), a pod, then down: no process, mount, cgroup or route is left,
    and the session's node, which shares the Service range's blackhole route, is untouched."""
    start = time.monotonic()
    other = Cluster(name=f"tf-node-{os.getpid()}").up()
    try:
        up_seconds = time.monotonic() - start
        node = RealNode(other)
        before = node.status()
        assert before.running
        other.up()  # already up: the same processes stay
        assert node.status().pids == before.pids
        other.kubectl("create", "namespace", "leftovers")
        run_pod(other, "leftovers", pod(node, "hello", "hi"), "hello")
        containerd = before.pids[0]
        node_dir, run_dir = before.get("dir"), before.get("run_dir")
        assert node_dir and run_dir
        ours = Path(f"/proc/{containerd}/mounts").read_text()
        assert f"overlay {node_dir}/containerd/" in ours  # the container's root, in its namespace
        assert f"{run_dir}/kubelet" in ours  # the kubelet's bind mount of its root dir
        host = Path("/proc/mounts").read_text()
        assert node_dir not in host and run_dir not in host  # ...never on the host
    finally:
        start = time.monotonic()
        other.down()
        down_seconds = time.monotonic() - start
    print(f"\nsecond cluster with its real node: up {up_seconds:.1f}s, down {down_seconds:.1f}s")

    for pid in before.pids:
        assert not Path(f"/proc/{pid}").exists(), f"pid {pid} still runs"
    namespace_id = before.get("mount_namespace")
    assert namespace_id
    left = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()
            and _readlink(p / "ns" / "mnt") == namespace_id]
    assert not left, f"processes left in the node's mount namespace: {left}"
    workdir = str(other.workdir)
    assert workdir not in Path("/proc/mounts").read_text()
    assert run_dir not in Path("/proc/mounts").read_text()
    assert not Path(run_dir).exists()
    assert not [p.name for p in Path("/proc").iterdir() if p.name.isdigit()
                and workdir in _cmdline(p)]
    cgroup_root = before.get("cgroup_root")
    assert cgroup_root
    assert not list(Path("/sys/fs/cgroup").glob(f"*{cgroup_root}"))
    # The session's node still runs, and the route it relies on is still there.
    assert real_node.status().running
    for cidr in (before.get("blackholes") or "").split(","):
        routes = subprocess.run(["ip", "route", "show", "exact", cidr, "type", "blackhole"],
                                capture_output=True, text=True, check=True).stdout
        assert routes.strip(), f"the blackhole route for {cidr} went with the second node"


def _listening(pids: list[int]) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets in LISTEN state that ``pids`` hold."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            target = _readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:["):-1])
    found: set[tuple[str, int]] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:
                continue
            addr_hex, port_hex = fields[1].split(":")
            raw = bytes.fromhex(addr_hex)  # 32-bit words in the host's (little-endian) order
            addr = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add((str(ipaddress.ip_address(addr)), int(port_hex, 16)))
    return found


def _readlink(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_a_missing_image_fails_at_once_and_no_pull_leaves_the_machine(
        cluster: Cluster, real_node: RealNode, namespace: str) -> None:
    """containerd sends every registry to a closed port on loopback (node.sh's catch-all
    registry host): a pull of an image the node lacks fails at once, and the only addresses
    it tried, as containerd's log shows them, are on loopback."""
    status = real_node.status()
    registry = urlsplit(status.get("registry") or "")
    assert registry.hostname == "127.0.0.1", status.values
    tag = f"missing-{os.getpid()}-{time.monotonic_ns()}"
    images = {
        "short": f"taskfleet-test/{tag}:1",  # a short name: the default registry's
        "named": f"example.invalid/taskfleet-test/{tag}:1",  # a registry named in it
    }
    spec = real_node.place({"containers": [
        {"name": name, "image": image, "imagePullPolicy": "Always"}
        for name, image in images.items()]})
    start = time.monotonic()
    cluster.apply(yaml.safe_dump({"apiVersion": "v1", "kind": "Pod",
                                  "metadata": {"name": "missing"}, "spec": spec}),
                  namespace=namespace)

    def pull_failed() -> dict[str, str]:
        p = cluster.get("pod", "missing", namespace) or {}
        reasons = {c["name"]: (c.get("state", {}).get("waiting") or {}).get("reason", "")
                   for c in p.get("status", {}).get("containerStatuses", [])}
        failed = {"ErrImagePull", "ImagePullBackOff"}
        return reasons if set(reasons) == set(images) and set(reasons.values()) <= failed \
            else {}

    reasons = wait_for("both pulls failed", pull_failed, 60, interval=0.1, describe=lambda:
                       cluster.kubectl("describe", "pod", "missing",
                                       namespace=namespace).stdout)
    seconds = time.monotonic() - start
    print(f"\nmissing images failed to pull in {seconds:.2f}s: {reasons}")
    assert seconds < 20, f"the pulls took {seconds:.1f}s to fail"

    node_dir = status.get("dir")
    assert node_dir
    log = Path(node_dir, "containerd.log").read_text(errors="replace")
    lines = [line for line in log.splitlines() if tag in line]
    assert lines, "containerd logged no pull of the missing images"
    urls = {m.group(1) for line in lines
            for m in re.finditer(r"https?://([^/\"\\\s]+)", line)}
    dialed = {m.group(1) for line in lines
              for m in re.finditer(r"dial tcp ([^\s\"\\]+):\d+", line)}
    assert urls, f"no request of containerd's is in its log: {lines[:3]}"
    assert urls <= {registry.netloc}, f"containerd tried more than the loopback host: {urls}"
    assert dialed <= {"127.0.0.1"}, f"containerd dialled {dialed}"
    for name, image in images.items():  # each image was tried, at the loopback host only
        assert any(f"/v2/taskfleet-test/{tag}/manifests/1" in line and
                   f"{registry.netloc}/v2/" in line for line in lines), (name, image, lines[:3])


TEST_SERVICE_CIDR = f"10.0.{200 + os.getpid() % 50}.0/24"
"""The Service range of the clusters of the route test: not the shared cluster's (nor,
by the test process's PID, that of the same test in another run), so that its route can
be seen to go when both of them stop."""
REGISTRY = Path("/run/taskfleet-testenv/blackholes")


def _blackholed(cidr: str) -> bool:
    return bool(subprocess.run(["ip", "route", "show", "exact", cidr, "type", "blackhole"],
                               capture_output=True, text=True, check=True).stdout.strip())


def _node_runs(cluster: Cluster) -> bool:
    """containerd or the kubelet of the cluster's node is alive (by its pidfile)."""
    node_dir = cluster.workdir / "kwok" / "clusters" / cluster.name / "node"
    for pidfile in (node_dir / "containerd.pid", node_dir / "kubelet.pid"):
        try:
            os.kill(int(pidfile.read_text().strip()), 0)
            return True
        except (OSError, ValueError):
            continue
    return False


def _node_sh(cluster: Cluster, action: str) -> subprocess.Popen[str]:
    return subprocess.Popen([str(TESTENV / "node.sh"), action, cluster.name], env=cluster.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finished(*runs: subprocess.Popen[str]) -> list[str]:
    """Waits for the runs to succeed; their standard errors."""
    errors = []
    for run in runs:
        _, err = run.communicate(timeout=180)
        assert run.returncode == 0, f"{run.args!r} failed:\n{err[-3000:]}"
        errors.append(err)
    return errors


def _waits_for_the_lock(run: subprocess.Popen[str]) -> bool:
    """``run`` (node.sh) has a child blocked in flock on the registry's lock."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == run.pid and argv[:1] == [b"flock"]:
            return True
    return False


class _RouteWatch:
    """Checks, every 20 ms in a thread, that the route exists whenever a node runs."""

    def __init__(self, clusters: list[Cluster], cidr: str) -> None:
        self.clusters, self.cidr = clusters, cidr
        self.missing: list[str] = []
        self.paused = threading.Event()
        self.stop = threading.Event()
        self.checks = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.02):
            if self.paused.is_set():
                continue
            running = [c.name for c in self.clusters if _node_runs(c)]
            if running and not _blackholed(self.cidr) and not self.paused.is_set():
                self.missing.append(f"{time.strftime('%H:%M:%S')}: {running} ran without "
                                    f"the route")
            self.checks += 1

    def __enter__(self) -> _RouteWatch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def test_two_nodes_starting_and_stopping_together_keep_the_route_while_either_runs() -> None:
    """The registry of node.sh's blackhole routes is read and changed under one lock: two
    clusters of one Service range, their nodes started and stopped together (one starting
    while the other stops), never run a node without the route, and the route goes with
    the last of them. An 'up' of a running node puts a deleted route back."""
    skip_for_opt_out("TASKFLEET_REAL_NODE", "the real node")
    cidr = TEST_SERVICE_CIDR
    assert not _blackholed(cidr) or any(
        cidr in f.read_text().split() for f in REGISTRY.glob("*") if f.is_file()), \
        f"a blackhole route for {cidr} that no node registered: left by an earlier run?"
    clusters = [Cluster(name=f"tf-route-{os.getpid()}-{i}") for i in range(2)]
    for c in clusters:
        c.env["TASKFLEET_SERVICE_CIDR"] = cidr
    a, b = clusters
    try:
        with _RouteWatch(clusters, cidr) as watch:
            start = time.monotonic()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(Cluster.up, clusters))
            print(f"\ntwo clusters with real nodes up together in "
                  f"{time.monotonic() - start:.1f}s")
            for c in clusters:
                status = RealNode(c).status()
                assert status.running and status.get("blackholes") == cidr, status.values
            assert _blackholed(cidr)

            # One node starts while the other stops, both ways round.
            _finished(_node_sh(b, "down"))
            assert _blackholed(cidr), "the route went while the other node runs"
            for starting, stopping in ((b, a), (a, b)):
                _finished(_node_sh(starting, "up"), _node_sh(stopping, "down"))
                assert _node_runs(starting) and not _node_runs(stopping)
                assert _blackholed(cidr)

            # A route deleted while a node (a's) runs comes back on its next 'up', which
            # takes the registry's lock first: held here, the 'up' waits and changes nothing.
            watch.paused.set()
            subprocess.run(["ip", "route", "del", "blackhole", cidr], check=True)
            REGISTRY.mkdir(parents=True, exist_ok=True)
            with open(REGISTRY.parent / "blackholes.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                again = _node_sh(a, "up")
                wait_for("node.sh up waiting for the registry's lock",
                         lambda: _waits_for_the_lock(again) or again.poll() is not None, 30)
                assert again.poll() is None, "node.sh up did not wait for the lock"
                assert not _blackholed(cidr)
            [said] = _finished(again)
            assert "is up already" in said, said
            assert _blackholed(cidr), "'up' of a running node did not restore its route"
            watch.paused.clear()

            _finished(_node_sh(b, "up"))  # both run, then both stop together
            start = time.monotonic()
            with ThreadPoolExecutor(2) as pool:
                list(pool.map(Cluster.down, clusters))
            print(f"both down together in {time.monotonic() - start:.1f}s")
        assert watch.checks > 100, watch.checks
        assert not watch.missing, watch.missing
        assert not any(_node_runs(c) for c in clusters)
        assert not _blackholed(cidr), "the route outlived both nodes"
    finally:
        for c in clusters:
            c.down()
