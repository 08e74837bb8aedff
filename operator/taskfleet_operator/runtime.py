"""The operator's long-lived parts, built at startup and stopped at cleanup."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from .act import Actuator
from .controller import Controller
from .deployment import DEFAULT_IMAGE
from .leader import LeaseElector
from .metrics import OperatorMetrics
from .observe import RedisDirectory, RedisObserver, secret_reader
from .queue_settings import QueueSettingsWriter
from .registry import Registry
from .schedules import ScheduleRunner
from .wakeups import WakeListener

if TYPE_CHECKING:  # the dashboard (aiohttp) is an extra, imported only when served
    from taskfleet.dashboard import AccessSettings


def leader_lease_name(namespaces: str | Sequence[str] | None) -> str:
    """One Lease per watched scope: operators that watch different namespaces (or one the
    whole cluster) must not elect a single leader between them, or all but one scope
    would go unreconciled. Several namespaces: a digest of their sorted names."""
    if isinstance(namespaces, str):
        namespaces = [namespaces]
    names = sorted(set(namespaces or ()))
    if not names:
        return "taskfleet-operator"
    if len(names) == 1:
        return f"taskfleet-operator-ns-{names[0]}"
    digest = hashlib.sha256(",".join(names).encode()).hexdigest()[:16]
    return f"taskfleet-operator-nss-{digest}"


@dataclass
class OperatorConfig:
    namespaces: tuple[str, ...] = ()
    """Watch only these namespaces; empty: all namespaces."""
    worker_image: str = DEFAULT_IMAGE
    leader_lease_namespace: str = field(default_factory=lambda: os.environ.get(
        "POD_NAMESPACE", "default"))
    leader_lease_name: str = ""
    """Default: leader_lease_name(namespaces), one per watched scope."""
    leader_lease_seconds: float = 15.0
    identity: str = field(default_factory=lambda: os.environ.get(
        "TASKFLEET_OPERATOR_IDENTITY", f"{socket.gethostname()}-{os.getpid()}"))
    metrics_port: int | None = None
    """Serve Prometheus metrics on this port; None: not at all."""
    metrics_address: str = "0.0.0.0"
    dashboard_port: int | None = None
    """Serve the web dashboard on this port; None: not at all."""
    dashboard_access: AccessSettings | None = None
    """Its address, token, host names and actions (AccessSettings.from_environment checks
    the token rule); None: on loopback, read-only, no token (kubectl port-forward)."""


def api_client() -> k8s.ApiClient:
    """In-cluster credentials when running in a pod, else the current kubeconfig."""
    try:
        k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException:
        k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
    return k8s.ApiClient()


class OperatorRuntime:
    def __init__(self, config: OperatorConfig, registry: Registry) -> None:
        self.config = config
        self.registry = registry
        self.stop = threading.Event()
        client = api_client()
        self.directory = RedisDirectory(secret_reader(k8s.CoreV1Api(client)))
        self.elector = LeaseElector(client, config.leader_lease_namespace,
                                    config.leader_lease_name
                                    or leader_lease_name(config.namespaces),
                                    config.identity, config.leader_lease_seconds,
                                    on_change=(registry.wake_all, registry.wake))
        actuator = Actuator(client)
        metrics = OperatorMetrics(self.elector.is_leader)
        self.controller = Controller(
            registry, actuator, RedisObserver(self.directory),
            default_image=config.worker_image, is_leader=self.elector.is_leader,
            schedules=ScheduleRunner(actuator, self.directory, metrics),
            queue_settings=QueueSettingsWriter(self.directory), metrics=metrics)
        self.wakeups = WakeListener(self.directory, registry.queues_woken, registry.wake,
                                    registry.wake_all)
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self.config.metrics_port is not None:
            self.controller.metrics.serve(self.config.metrics_port, self.config.metrics_address)
        if self.config.dashboard_port is not None:
            from taskfleet.dashboard import AccessSettings

            from .dashboard import RegistrySource, WorkerHeartbeats, start_dashboard

            source = RegistrySource(self.registry, self.directory,
                                    lambda: self.controller.taskqueues.readings,
                                    self.elector.is_leader, WorkerHeartbeats(self.directory))
            access = self.config.dashboard_access or AccessSettings()
            self._threads += start_dashboard(source, self.config.dashboard_port, access,
                                             self.stop)
        for name, target in (("leader", self.elector.run), ("controller", self.controller.run),
                             ("wakeups", self.wakeups.run)):
            t = threading.Thread(target=target, args=(self.stop,), daemon=True,
                                 name=f"taskfleet-{name}")
            t.start()
            self._threads.append(t)

    def shutdown(self) -> None:
        self.stop.set()
        self.registry.wake.set()
        for t in self._threads:
            t.join(timeout=10)
        self.elector.release()
