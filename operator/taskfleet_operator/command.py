"""``taskfleet operator``: the command this package adds to ``taskfleet`` (the
``taskfleet.commands`` entry point in pyproject.toml), so the runtime never imports the
operator.

Light to import: ``taskfleet --help`` loads it; kopf and the Kubernetes client are
imported when the operator runs.
"""

from __future__ import annotations

import argparse
import os
import re

from taskfleet.cli import bounded_number
from taskfleet.errors import ConfigError

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _namespaces(value: str) -> list[str]:
    """An argparse type: namespace names, comma-separated, each a DNS label."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    bad = [n for n in names if not _DNS_LABEL.match(n)]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"{value!r}: give namespace names (lowercase DNS labels), comma-separated")
    return names


class OperatorCommand:
    """Run the Kubernetes operator (needs taskfleet[operator])."""

    help = "run the Kubernetes operator (needs taskfleet[operator])"

    def add_arguments(self, o: argparse.ArgumentParser) -> None:
        port = bounded_number(int, 1, 65535)
        o.add_argument("--namespace", action="append", default=[], type=_namespaces,
                       help="watch these namespaces, comma-separated or repeated "
                            "(default: all)")
        o.add_argument("--worker-image", default=os.environ.get("TASKFLEET_WORKER_IMAGE"),
                       help="image of WorkerPools that name none")
        o.add_argument("--leader-lease-namespace",
                       default=os.environ.get("POD_NAMESPACE", "default"),
                       help="namespace of the Lease that elects the active operator")
        o.add_argument("--leader-lease-name", default="",
                       help="name of that Lease (default: taskfleet-operator for the whole "
                            "cluster, taskfleet-operator-ns-NAMESPACE with --namespace)")
        o.add_argument("--leader-lease-seconds", type=bounded_number(float, 1), default=15.0,
                       help="leader Lease duration; a standby takes over this long after a "
                            "crash")
        o.add_argument("--liveness-port", type=port, default=None)
        o.add_argument("--metrics-port", type=port, default=None,
                       help="serve Prometheus metrics of queues, pools and passes on this port")
        o.add_argument("--metrics-address", default="0.0.0.0",
                       help="address the metrics server binds (default all; 127.0.0.1 "
                            "locally)")
        o.add_argument("--dashboard-port", type=port, default=None,
                       help="serve the web dashboard on this port (reach it with kubectl "
                            "port-forward)")
        o.add_argument("--dashboard-address", default="127.0.0.1",
                       help="address the dashboard binds (default 127.0.0.1: reach it with "
                            "kubectl port-forward; any other needs "
                            "$TASKFLEET_DASHBOARD_TOKEN, which every read then needs)")
        o.add_argument("--dashboard-allowed-host", action="append", default=[],
                       dest="dashboard_allowed_hosts",
                       help="a host name the dashboard answers to besides 127.0.0.1, "
                            "localhost and ::1 (the Host header; repeat for more)")
        o.add_argument("--dashboard-actions", action="store_true",
                       help="allow requeue and purge of dead letters from the dashboard, "
                            "with the token in $TASKFLEET_DASHBOARD_TOKEN and a confirmation")

    def run(self, args: argparse.Namespace) -> int:
        access = None
        if args.dashboard_port is not None or args.dashboard_actions:
            try:
                from taskfleet.dashboard.server import AccessSettings
            except ImportError as exc:
                raise ConfigError(f"the dashboard needs aiohttp: pip install "
                                  f"'taskfleet[dashboard]' ({exc})") from exc
            try:  # the token rule, checked once, where the settings are built
                access = AccessSettings.from_environment(
                    args.dashboard_address, args.dashboard_actions,
                    args.dashboard_allowed_hosts)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        try:
            from .deployment import DEFAULT_IMAGE
            from .main import run
            from .runtime import OperatorConfig
        except ImportError as exc:
            raise ConfigError(f"the operator needs its extras: pip install "
                              f"'taskfleet[operator]' ({exc})") from exc
        config = OperatorConfig(namespaces=tuple(dict.fromkeys(
                                    n for names in args.namespace for n in names)),
                                leader_lease_namespace=args.leader_lease_namespace,
                                leader_lease_name=args.leader_lease_name,
                                leader_lease_seconds=args.leader_lease_seconds,
                                metrics_port=args.metrics_port,
                                metrics_address=args.metrics_address,
                                dashboard_port=args.dashboard_port, dashboard_access=access,
                                worker_image=args.worker_image or DEFAULT_IMAGE)
        return run(config, args.liveness_port)


command = OperatorCommand()
"""The ``operator`` entry point of the ``taskfleet.commands`` group."""
