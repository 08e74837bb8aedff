"""Act: the controller's writes to the Kubernetes API (the leader Lease is leader.py's)."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from .conditions import rfc3339
from .deployment import DELETION_COST
from .model import GROUP, VERSION

log = logging.getLogger("taskfleet.operator")

FIELD_MANAGER = "taskfleet-operator"


class Actions(Protocol):
    """The writes the controller and the schedule runner make; Actuator makes them."""

    def apply_deployment(self, manifest: dict[str, Any]) -> int | None:
        """Returns the Deployment's metadata.generation after the write."""

    def patch_status(self, plural: str, namespace: str, name: str,
                     status: dict[str, Any]) -> None: ...

    def list_pods(self, namespace: str, selector: str) -> list[Any]: ...

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None: ...

    def record_event(self, kind: str, namespace: str, name: str, uid: str, reason: str,
                     message: str, type_: str = "Normal") -> None: ...


class Actuator:
    def __init__(self, api_client: k8s.ApiClient) -> None:
        self.apps = k8s.AppsV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.custom = k8s.CustomObjectsApi(api_client)
        self.instance = os.environ.get("POD_NAME") or socket.gethostname()

    def apply_deployment(self, manifest: dict[str, Any]) -> int | None:
        """Server-side apply of the whole Deployment under one field manager; returns its
        generation, which tells the controller later whether somebody else changed it."""
        meta = manifest["metadata"]
        response: Any = self.apps.patch_namespaced_deployment(
            meta["name"], meta["namespace"], manifest, field_manager=FIELD_MANAGER, force=True,
            _content_type="application/apply-patch+yaml", _preload_content=False)
        try:
            # The plain JSON, not the client's models (see _drain).
            generation = json.loads(response.read())["metadata"].get("generation")
        finally:
            response.release_conn()
        return int(generation) if generation is not None else None

    def patch_status(self, plural: str, namespace: str, name: str,
                     status: dict[str, Any]) -> None:
        """Merge-patch the status subresource; a vanished object is not an error."""
        try:
            _drain(self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, {"status": status},
                _preload_content=False))
        except ApiException as exc:
            if exc.status != 404:
                raise

    def list_pods(self, namespace: str, selector: str) -> list[Any]:
        return list(self.core.list_namespaced_pod(namespace, label_selector=selector).items)

    def set_deletion_cost(self, namespace: str, pod: str, cost: int) -> None:
        try:
            _drain(self.core.patch_namespaced_pod(pod, namespace, {"metadata": {"annotations": {
                DELETION_COST: str(cost)}}}, _preload_content=False))
        except ApiException as exc:
            if exc.status != 404:
                raise

    def record_event(self, kind: str, namespace: str, name: str, uid: str, reason: str,
                     message: str, type_: str = "Normal") -> None:
        """A core/v1 Event on the object (best effort: an event is never worth a failure)."""
        now = rfc3339(time.time())
        body: Any = {
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "name": name,
                               "namespace": namespace, "uid": uid},
            "reason": reason, "message": message[:1024], "type": type_,
            "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
            "reportingInstance": self.instance, "firstTimestamp": now, "lastTimestamp": now,
            "count": 1,
        }
        try:
            _drain(self.core.create_namespaced_event(namespace, body, _preload_content=False))
        except ApiException as exc:
            log.warning("event %s on %s/%s not recorded: %s", reason, namespace, name,
                        exc.reason)


def _drain(response: Any) -> None:
    """Read and release a reply the operator does not use. Its writes ask for the raw reply
    (_preload_content=False): turning a Deployment into the client's models costs more CPU
    than the request, and with 10,000 pools that is most of a start-up. Errors still raise
    ApiException, with the body."""
    response.read()
    response.release_conn()


def transient(exc: ApiException) -> bool:
    """An API error worth retrying: an outage or a conflict, not a refused manifest. A pod
    template field of the wrong type comes back as a 500 from server-side apply."""
    if exc.status == 500 and "failed to create typed patch object" in (exc.body or ""):
        return False
    return exc.status is None or exc.status >= 500 or exc.status in (409, 429)


def api_message(exc: ApiException) -> str:
    """The message of an API error's Status, else its code and reason."""
    try:
        return str(json.loads(exc.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return f"{exc.status} {exc.reason}"
