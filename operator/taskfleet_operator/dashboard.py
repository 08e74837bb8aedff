"""The web dashboard as the operator serves it: every TaskQueue it watches (on their own
Redis servers) and every WorkerPool, from the watches' registry (no extra API reads)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from taskfleet.dashboard import ActionSettings, PoolView, QueueSource, build_app
from taskfleet.dashboard.server import AccessSettings, serve_in_thread

from .observe import RedisDirectory
from .registry import Registry


class RegistrySource:
    pools_unavailable = ""

    def __init__(self, registry: Registry, directory: RedisDirectory) -> None:
        self.registry = registry
        self.directory = directory

    def queues(self) -> list[QueueSource]:
        out = []
        for (namespace, name), tq in sorted(self.registry.peek().queues.items()):
            try:
                client = self.directory.client(namespace, tq.redis)
            except Exception:  # a Secret not readable yet: the queue shows up once it is
                continue
            out.append(QueueSource(f"{namespace}/{name}", tq.queue_name, client))
        return out

    def pools(self) -> Sequence[PoolView]:
        snap = self.registry.peek()
        views = []
        for key, pool in snap.pools.items():
            dep = snap.deployments.get(key)
            status = pool.status
            desired = status.get("desiredReplicas")
            views.append(PoolView(
                namespace=pool.namespace, name=pool.name, queues=pool.queues,
                desired=int(desired) if isinstance(desired, int) else None,
                replicas=dep.replicas if dep else 0, ready=dep.ready_replicas if dep else 0,
                max_replicas=pool.policy.max_replicas if pool.policy.enabled else None,
                last_scale_time=status.get("lastScaleTime"),
                last_scale_reason=status.get("lastScaleReason"),
                conditions={str(c.get("type")): str(c.get("status"))
                            for c in status.get("conditions") or []}))
        return views


def start_dashboard(registry: Registry, directory: RedisDirectory, address: str, port: int,
                    actions: ActionSettings, access: AccessSettings,
                    stop: threading.Event) -> threading.Thread:
    app = build_app(RegistrySource(registry, directory), actions, access)
    return serve_in_thread(app, address, port, stop)
