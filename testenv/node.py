"""The real node of the local cluster: containerd and a kubelet beside kwok's fake nodes.

``hack/testenv/node.sh`` starts it with the cluster (``cluster.sh up``) as
``real-node-0``, labelled and tainted ``taskfleet.dev/real-node=true`` so that
only pods meant for it land there. ``RealNode.place(pod_spec)`` makes a pod
one of those: the toleration, a nodeSelector, the host network, and the API
server at 127.0.0.1. The last two are not optional: there is no kube-proxy,
and the ``kubernetes`` Service's ClusterIP leads off this machine, so no pod
may ever use it (node.sh blackholes the range as a safety net).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from testenv.cluster import TESTENV, Cluster

NODE_NAME = "real-node-0"
LABEL_KEY = "taskfleet.dev/real-node"
TAINT = {"key": LABEL_KEY, "value": "true", "effect": "NoSchedule"}
TOLERATION = {"key": LABEL_KEY, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
PAUSE_IMAGE = "localhost/taskfleet-testenv/pause:1"
"""Built here from hack/testenv/node/pause.go (FROM scratch, no shell). Also a tiny test
workload: prints its arguments, exits 0 on SIGTERM or SIGINT after saying which (on stdout
and in $PAUSE_SIGNAL_FILE); ``/pause echo WORDS`` prints WORDS and exits."""


@dataclass(frozen=True)
class NodeStatus:
    """What ``node.sh status`` reports: the node's processes, ports and places."""

    values: dict[str, str]

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    @property
    def running(self) -> bool:
        return "containerd_pid" in self.values and "kubelet_pid" in self.values

    @property
    def pids(self) -> list[int]:
        return [int(self.values[k]) for k in ("containerd_pid", "kubelet_pid")
                if k in self.values]


class RealNode:
    """The real node of ``cluster``: where it is, how to put a pod there, images for it."""

    name = NODE_NAME
    label = (LABEL_KEY, "true")
    taint = TAINT
    pause_image = PAUSE_IMAGE

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def _script(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(TESTENV / "node.sh"), *args], env=self.cluster.env,
                              capture_output=True, text=True, timeout=timeout)

    def status(self) -> NodeStatus:
        out = self._script("status", self.cluster.name)
        if out.returncode != 0:
            raise RuntimeError(f"node.sh status failed: {out.stderr.strip()}")
        pairs = (line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        return NodeStatus({k: v for k, v in pairs})

    @property
    def node_selector(self) -> dict[str, str]:
        return {LABEL_KEY: "true"}

    @property
    def toleration(self) -> dict[str, str]:
        return dict(TOLERATION)

    def api_env(self) -> list[dict[str, str]]:
        """The environment that points a pod's Kubernetes client at 127.0.0.1.

        The kubelet injects the ``kubernetes`` Service's address (KUBERNETES_SERVICE_HOST
        and the docker-links style KUBERNETES_PORT*) into every container; variables the
        pod declares win, so each is declared here with the loopback address (which the
        API server's certificate carries)."""
        port = str(self.cluster.apiserver_port)
        url = f"tcp://127.0.0.1:{port}"
        return [{"name": k, "value": v} for k, v in (
            ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
            ("KUBERNETES_SERVICE_PORT", port),
            ("KUBERNETES_SERVICE_PORT_HTTPS", port),
            ("KUBERNETES_PORT", url),
            ("KUBERNETES_PORT_443_TCP", url),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "127.0.0.1"),
            ("KUBERNETES_PORT_443_TCP_PORT", port),
        )]

    def place(self, pod_spec: dict[str, Any]) -> dict[str, Any]:
        """Make ``pod_spec`` (a Pod's spec or a pod template's) run on this node, safely:
        toleration and nodeSelector, the host network (loopback is where Redis and the API
        server are) and, in every container, the API server at 127.0.0.1."""
        pod_spec.setdefault("nodeSelector", {}).update(self.node_selector)
        pod_spec.setdefault("tolerations", []).append(self.toleration)
        pod_spec["hostNetwork"] = True
        # ClusterFirst would name a cluster DNS that does not exist; use the host's resolver.
        pod_spec.setdefault("dnsPolicy", "Default")
        overrides = self.api_env()
        names = {e["name"] for e in overrides}
        for container in [*pod_spec.get("initContainers", []), *pod_spec["containers"]]:
            kept = [e for e in container.get("env", []) if e["name"] not in names]
            container["env"] = [*kept, *overrides]
        return pod_spec

    def place_pool(self, pool_spec: dict[str, Any]) -> dict[str, Any]:
        """A WorkerPool's spec with the local-only values that put its workers here: the
        node's toleration and selector, the host network (through podTemplate), images
        from the node's containerd, and no resource requests (a laptop has not the CPUs a
        production pool asks for)."""
        template = pool_spec.setdefault("podTemplate", {}).setdefault("spec", {})
        template.update(hostNetwork=True, dnsPolicy="Default")
        pool_spec["nodeSelector"] = self.node_selector
        pool_spec["tolerations"] = [self.toleration]
        pool_spec["imagePullPolicy"] = "Never"
        pool_spec.pop("resources", None)
        return pool_spec

    def load_image(self, archive: Path) -> list[str]:
        """Import an OCI or docker archive (``podman save --format oci-archive``) into the
        node's containerd, where the kubelet finds it; returns the names imported. Pods use
        ``imagePullPolicy: Never`` or ``IfNotPresent``: no registry is reachable."""
        out = self._script("load-image", str(archive), self.cluster.name, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"loading {archive} into {self.name} failed:\n{out.stderr}")
        return re.findall(r"^unpacking (\S+) \(sha256:", out.stdout, re.MULTILINE)

    def images(self) -> list[str]:
        """Names of the images in the node's containerd (CRI's namespace)."""
        out = subprocess.run(["ctr", "--address", self.containerd_socket, "-n", "k8s.io",
                              "images", "ls", "-q"], capture_output=True, text=True, check=True)
        return [n for n in out.stdout.split() if not n.startswith("sha256:")]

    @property
    def containerd_socket(self) -> str:
        socket = self.status().get("containerd_socket")
        assert socket, "node.sh status names no containerd socket"
        return socket
