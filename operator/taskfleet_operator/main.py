"""``taskfleet operator``: run the operator against the current kubeconfig."""

from __future__ import annotations

import logging

import kopf

from . import handlers  # noqa: F401  (registers the kopf handlers)
from .registry import Registry
from .runtime import OperatorConfig


def run(config: OperatorConfig, liveness_port: int | None = None) -> int:
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    namespaces = list(config.namespaces)
    kopf.run(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{liveness_port}/healthz" if liveness_port else None,
        memo=kopf.Memo(config=config, registry=Registry()),
    )
    return 0
