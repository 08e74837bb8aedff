"""kopf wiring: the watches feed the registry; startup starts OperatorRuntime
(runtime.py: controller, Lease, wake-ups, metrics, dashboard) and cleanup stops it.

Handlers hold no logic, and share state through kopf's ``memo``: main.run puts
``memo.registry`` and ``memo.config`` there, startup adds ``memo.runtime``. What the
operator writes to the watched objects, their Deployments, Pods and Events it writes
in the controller's passes, which run only on the holder of a coordination.k8s.io
Lease (leader.py). The Lease replaces kopf's peering because peering pauses only
kopf's own handlers, not work started in the background (kopf discussion #1003),
while the Lease gates the controller thread itself; kopf therefore runs standalone.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import kopf

from .model import GROUP, VERSION
from .runtime import OperatorRuntime


def _plain(event: kopf.RawEvent) -> dict[str, Any]:
    """The object as the API server sent it: a plain dict already, which the registry reads
    and never changes (a copy of each of 30,000 objects was a tenth of a start-up)."""
    return cast(dict[str, Any], event["object"])


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base: kopf uses it for on.create/update/delete and daemons, and this operator
    has only event handlers. kopf's own would deep-copy every object on every event."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING  # our own scale events are enough
    settings.watching.server_timeout = 300
    settings.persistence.diffbase_storage = NoDiffBase()
    memo.runtime = OperatorRuntime(memo.config, memo.registry)
    memo.runtime.start()


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    runtime: OperatorRuntime | None = memo.get("runtime")
    if runtime is not None:
        runtime.shutdown()


@kopf.on.event(GROUP, VERSION, "taskqueues")
def taskqueue_watch(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.registry.queue_changed(event.get("type"), _plain(event))


@kopf.on.event(GROUP, VERSION, "workerpools")
def workerpool_watch(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.registry.pool_changed(event.get("type"), _plain(event))


@kopf.on.event("apps", "v1", "deployments",
               labels={"app.kubernetes.io/managed-by": "taskfleet-operator"})
def deployment_watch(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.registry.deployment_changed(event.get("type"), _plain(event))
