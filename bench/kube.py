"""What the benchmarks on the local cluster read of it: a Deployment's replicas as they
change, and the moment a namespace's objects stop changing."""

from __future__ import annotations

import time
from collections.abc import Callable

from testenv.cluster import Cluster
from testenv.waiting import wait_for


def spec_replicas(cluster: Cluster, ns: str, name: str) -> int:
    out = cluster.kubectl("get", "deployment", name, "-o", "jsonpath={.spec.replicas}",
                          namespace=ns, check=False)
    return int(out.stdout) if out.returncode == 0 and out.stdout else -1


def wait_replicas(cluster: Cluster, ns: str, name: str, pred: Callable[[int], bool],
                  timeout: float = 120) -> float:
    """When (``time.perf_counter``) the Deployment's spec.replicas first met ``pred``."""
    wait_for(f"Deployment {name}'s replicas", lambda: pred(spec_replicas(cluster, ns, name)),
             timeout, interval=0.01)
    return time.perf_counter()


def resource_versions(cluster: Cluster, ns: str) -> set[tuple[str, str]]:
    out = cluster.kubectl("get", "workerpools,taskqueues,deployments", "-o",
                          "jsonpath={range .items[*]}{.metadata.name}={.metadata.resourceVersion} "
                          "{end}", namespace=ns).stdout
    return {(name, version) for name, _, version in (i.partition("=") for i in out.split())}


def wait_quiet(cluster: Cluster, ns: str, quiet_for: float, limit: float) -> None:
    """Until no object in ``ns`` changes for ``quiet_for`` seconds (the operator's start
    and the controller-manager's work on the new Deployments are over), or ``limit``
    seconds have passed."""
    start = time.monotonic()
    quiet_since, last = time.monotonic(), resource_versions(cluster, ns)
    while time.monotonic() - quiet_since < quiet_for and time.monotonic() - start < limit:
        time.sleep(10 if quiet_for >= 20 else 3)  # each look lists every object
        now = resource_versions(cluster, ns)
        if now != last:
            quiet_since, last = time.monotonic(), now
