"""kopf wiring: watches feed the registry; startup and cleanup run the controller.

Handlers hold no logic. Every write happens in the controller, on the Lease
holder only, so kopf runs standalone (no kopf peering needed).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import kopf

from .model import GROUP, VERSION
from .registry import Registry
from .runtime import OperatorConfig, OperatorRuntime

REGISTRY = Registry()
CONFIG = OperatorConfig()
_RUNTIME: list[OperatorRuntime] = []


def _plain(body: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(body, default=dict))
    return data


@kopf.on.startup()
def start(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.peering.standalone = True
    settings.posting.level = logging.WARNING  # our own scale events are enough
    settings.watching.server_timeout = 300
    runtime = OperatorRuntime(CONFIG, REGISTRY)
    runtime.start()
    _RUNTIME.append(runtime)


@kopf.on.cleanup()
def stop(**_: Any) -> None:
    while _RUNTIME:
        _RUNTIME.pop().shutdown()


@kopf.on.event(GROUP, VERSION, "taskqueues")
def taskqueue_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    REGISTRY.queue_event(event.get("type"), _plain(body))


@kopf.on.event(GROUP, VERSION, "workerpools")
def workerpool_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    REGISTRY.pool_event(event.get("type"), _plain(body))


@kopf.on.event("apps", "v1", "deployments",
               labels={"app.kubernetes.io/managed-by": "taskfleet-operator"})
def deployment_event(event: kopf.RawEvent, body: kopf.Body, **_: Any) -> None:
    REGISTRY.deployment_event(event.get("type"), _plain(body))
