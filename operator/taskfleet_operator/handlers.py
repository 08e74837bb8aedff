"""kopf wiring: watches feed the registry; startup and cleanup run the controller.

Handlers hold no logic, and share state through kopf's ``memo`` (set up by
main.run: ``memo.registry``, ``memo.config``, then ``memo.runtime``). Every
write happens in the controller, on the holder of a coordination.k8s.io Lease
only. The Lease replaces kopf's peering because peering pauses only kopf's own
handlers, not work started in the background (kopf discussion #1003), while
the Lease gates the controller thread itself; kopf therefore runs standalone.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import kopf

from .model import GROUP, VERSION
from .runtime import OperatorRuntime


def _plain(body: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(body, default=dict))
    return data


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING  # our own scale events are enough
    settings.watching.server_timeout = 300
    memo.runtime = OperatorRuntime(memo.config, memo.registry)
    memo.runtime.start()


@kopf.on.cleanup()
def stop(memo: kopf.Memo, **_: Any) -> None:
    runtime: OperatorRuntime | None = memo.get("runtime")
    if runtime is not None:
        runtime.shutdown()


@kopf.on.event(GROUP, VERSION, "taskqueues")
def taskqueue_watch(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.registry.queue_changed(event.get("type"), _plain(body))


@kopf.on.event(GROUP, VERSION, "workerpools")
def workerpool_watch(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.registry.pool_changed(event.get("type"), _plain(body))


@kopf.on.event("apps", "v1", "deployments",
               labels={"app.kubernetes.io/managed-by": "taskfleet-operator"})
def deployment_watch(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.registry.deployment_changed(event.get("type"), _plain(body))
