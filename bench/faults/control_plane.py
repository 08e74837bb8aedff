"""The control plane's faults, on the local cluster while pools scale on a burst and a
TaskQueue's schedule ticks: the API server and etcd killed and restarted during a burst,
then the active operator killed during a scale-up with a standby running. The two
operators run with the Helm chart's default leader lease (leaderLeaseSeconds), so the
standby's takeover is what an installation sees."""

from __future__ import annotations

import contextlib
import functools
import os
import random
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis
import yaml

from bench.faults.cron_ticks import count_ticks, first_tick_of, next_tick_after, sleep_until
from bench.faults.plan import TASK, TASK_APP
from bench.report import chart_lease_seconds
from taskfleet import App
from testenv.cluster import Cluster
from testenv.processes import processes_with
from testenv.redis_server import RedisServer
from testenv.waiting import sleep_until_second, wait_for

if TYPE_CHECKING:
    from testenv.operator import OperatorProcess


def control_plane(rng: random.Random, logs: Path) -> dict[str, Any]:
    # the operator's and the Kubernetes client's imports only for this phase
    from testenv.operator import crds_applied

    broker = RedisServer().start()
    cluster = Cluster(name=f"tf-chaos-{os.getpid()}")
    cluster.env["TASKFLEET_REAL_NODE"] = "0"  # kwok's fake nodes are all this needs
    with closing(broker):
        try:
            cluster.up()
            crds_applied(cluster)
            return ControlPlaneChaos(cluster, broker.url, logs).run()
        finally:
            cluster.down()


class ControlPlaneChaos:
    """Faults of the control plane while pools scale on a burst and a schedule ticks."""

    NAMESPACE = "chaos"
    TARGET = 8
    BURST = 400
    """Tasks per burst: 400 ready at 50 per replica is the pools' maximum of 8."""

    def __init__(self, cluster: Cluster, redis_url: str, logs: Path) -> None:
        from kubernetes import client as k8s
        from kubernetes import config as k8s_config

        from testenv.operator import OperatorProcess

        self.cluster = cluster
        self.redis_url = redis_url
        self.app = App(redis_url)
        self.client = redis.Redis.from_url(redis_url, decode_responses=True)
        self.apps = k8s.AppsV1Api(k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(cluster.kubeconfig), context=cluster.context))
        cluster.kubectl("create", "namespace", self.NAMESPACE)
        self.lease_seconds = chart_lease_seconds()
        self.operators = [OperatorProcess(cluster, self.NAMESPACE, logs / f"operator-{i}.log",
                                          lease_seconds=self.lease_seconds)
                          for i in (1, 2)]
        self.supervisor = ComponentSupervisor(cluster)

    def run(self) -> dict[str, Any]:
        try:
            for op in self.operators:
                op.start()
            started = time.time()
            self.apply_resources()
            first_tick = first_tick_of(self.cluster, self.NAMESPACE, "ticks", "every-minute")
            result: dict[str, Any] = {"api_server_restart": self.restart_api_server(),
                                      "operator_failover": self.kill_active_operator()}
            # one more tick with everything back (after the one the standby sends right
            # after the failover), then count each tick's tasks
            sleep_until(next_tick_after(time.time() + 5) + 5)
            result["schedule"] = count_ticks(self.client, "ticks", "every-minute", first_tick,
                                             time.time())
            result["leader_lease_seconds"] = self.lease_seconds
            result["seconds"] = round(time.time() - started, 1)
            return result
        finally:
            self.supervisor.stop()
            for op in self.operators:
                op.stop()

    def apply_resources(self) -> None:
        from testenv.resources import task_queue, worker_pool

        scaling = {"minReplicas": 0, "maxReplicas": self.TARGET, "targetPerReplica": 50,
                   "pollSeconds": 0.5, "scaleDown": {"stabilizationSeconds": 600}}
        # failover: two replicas per 2 s step, so the scale-up is still under way when the
        # active operator dies
        stepped = {**scaling, "scaleUp": {"maxStepReplicas": 2, "periodSeconds": 2}}
        self.cluster.apply(yaml.safe_dump_all([
            task_queue("ticks", self.redis_url, schedules=[
                {"name": "every-minute", "cron": "* * * * *", "task": "chaos.tick"}]),
            task_queue("apirestart", self.redis_url),
            task_queue("failover", self.redis_url),
            worker_pool("apirestart", ["apirestart"], scaling, app=TASK_APP),
            worker_pool("failover", ["failover"], stepped, app=TASK_APP),
        ]), namespace=self.NAMESPACE)
        for name in ("apirestart", "failover"):
            wait_for(f"Deployment {name} at 0", functools.partial(self.at_zero, name), 60,
                     interval=0.2)

    def at_zero(self, name: str) -> bool:
        return self.replicas(name) == (0, 0)

    def replicas(self, name: str) -> tuple[int, int] | None:
        """The Deployment's (spec.replicas, status.readyReplicas); None while unreadable."""
        try:
            d = self.apps.read_namespaced_deployment(name, self.NAMESPACE)
        except Exception:  # the API server is down, or the object not there yet
            return None
        ready = d.status.ready_replicas if d.status is not None else 0
        return int(d.spec.replicas or 0), int(ready or 0)

    def restart_api_server(self) -> dict[str, Any]:
        """Kill etcd and the API server across a minute's tick, send the burst while they
        are down, start them again; time the pool's way to its target from there."""
        sleep_until_second(50)
        killed = kill_components(self.cluster, ("kube-apiserver", "etcd"))
        down_at = time.monotonic()
        self.app.send_many(TASK, [("apirestart", i, 10) for i in range(self.BURST)],
                           queue="apirestart")
        sleep_until_second(2)  # the :00 tick falls in the outage
        self.supervisor.start()
        back = wait_api_ready(self.cluster)
        spec_at, ready_at = self.time_to_target("apirestart", back, timeout=180)
        return {"killed": killed, "api_down_s": round(back - down_at, 2),
                "replicas_at_target_after_api_back_s": spec_at,
                "ready_replicas_at_target_after_api_back_s": ready_at,
                "target": self.TARGET, "components_restarted": self.supervisor.restarted}

    def kill_active_operator(self) -> dict[str, Any]:
        """Start a scale-up just before a tick, kill the active operator once it is under
        way, and time the standby's way to the target."""
        sleep_until_second(55)
        self.app.send_many(TASK, [("failover", i, 10) for i in range(self.BURST)],
                           queue="failover")
        wait_for("the scale-up under way", lambda: (self.replicas("failover") or (0, 0))[0]
                 > 0, 30, interval=0.05)
        before = self.replicas("failover")
        active = self.active_operator()
        active.kill()
        killed_at = time.monotonic()
        spec_at, ready_at = self.time_to_target("failover", killed_at, timeout=120)
        standby = self.active_operator()
        return {"replicas_when_killed": before[0] if before else None,
                "replicas_at_target_after_kill_s": spec_at,
                "ready_replicas_at_target_after_kill_s": ready_at,
                "standby_took_over": standby is not active, "target": self.TARGET,
                "leader_lease_seconds": active.lease_seconds}

    def active_operator(self) -> OperatorProcess:
        lease = self.cluster.get("lease", self.operators[0].lease_name, self.NAMESPACE) or {}
        holder = (lease.get("spec") or {}).get("holderIdentity", "")
        for op in self.operators:
            if op.process is not None and holder.endswith(f"-{op.process.pid}"):
                return op
        raise RuntimeError(f"no running operator holds the Lease (holder {holder!r})")

    def time_to_target(self, name: str, since: float, timeout: float
                       ) -> tuple[float | None, float | None]:
        """Seconds from ``since`` until spec.replicas, then readyReplicas, reach TARGET."""
        spec_at = ready_at = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and ready_at is None:
            seen = self.replicas(name)
            now = time.monotonic()
            if seen is not None and spec_at is None and seen[0] >= self.TARGET:
                spec_at = round(now - since, 2)
            if seen is not None and seen[1] >= self.TARGET:
                ready_at = round(now - since, 2)
            time.sleep(0.05)
        return spec_at, ready_at


class ComponentSupervisor:
    """Starts the control plane's missing processes again (``kwokctl start cluster`` starts
    only those not running), as a kubelet restarts static pods: the controller-manager and
    the scheduler exit some seconds into an outage, when they cannot renew their leader
    leases, so one restart of etcd and the API server is not the end of it."""

    COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
                  "kwok-controller")

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.restarted: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._began = 0.0

    def start(self) -> None:
        self._began = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(180)

    def missing(self) -> list[str]:
        running = {Path(argv[0]).name for _, argv in processes_with(str(self.cluster.workdir))}
        return [c for c in self.COMPONENTS if c not in running]

    def _watch(self) -> None:
        while not self._stop.is_set():
            gone = self.missing()
            if gone:
                self.restarted.append({"components": gone,
                                       "at_s": round(time.monotonic() - self._began, 1)})
                subprocess.run([str(self.cluster.bin / "kwokctl"), "start", "cluster",
                                "--name", self.cluster.name], env=self.cluster.env,
                               capture_output=True, text=True)
            self._stop.wait(0.5)


def kill_components(cluster: Cluster, names: Sequence[str]) -> list[str]:
    """SIGKILL the cluster's processes of these binaries (found by their command line,
    which holds the cluster's work directory)."""
    killed = []
    for pid, argv in processes_with(str(cluster.workdir)):
        binary = Path(argv[0]).name
        if binary in names:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(binary)
    return sorted(killed)


def wait_api_ready(cluster: Cluster, timeout: float = 180.0) -> float:
    """When the API server's /readyz first answered 200 (monotonic)."""
    conf = yaml.safe_load(cluster.kubeconfig.read_text())
    server = next(c["cluster"]["server"] for c in conf["clusters"]
                  if c["name"] == cluster.context)
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # loopback, our own cluster: only "is it up?"

    def ready() -> bool:
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"{server}/readyz", timeout=1, context=insecure) as r:
            return bool(r.status == 200)
        return False

    wait_for("the API server's /readyz", ready, timeout, interval=0.05)
    return time.monotonic()
