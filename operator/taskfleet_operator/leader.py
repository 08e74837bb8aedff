"""One active operator: a coordination.k8s.io Lease, as client-go's leader election.

Standby replicas watch and keep their caches warm but write nothing; when the
leader stops renewing, another takes the Lease after it expires.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

log = logging.getLogger("taskfleet.operator")

LEADING_FRACTION = 0.8
"""This operator acts as the leader for this fraction of the Lease's duration after its
last renewal, no longer: it stops before the Lease can expire and a standby take it, so
two operators never act at once (client-go stops at its renew deadline the same way)."""


def _now() -> datetime:
    return datetime.now(UTC)


class LeaseElector:
    def __init__(self, api_client: k8s.ApiClient, namespace: str, name: str, identity: str,
                 lease_seconds: float = 15.0, on_change: Sequence[threading.Event] = ()) -> None:
        self.api = k8s.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_seconds = lease_seconds
        self._renewed_at = 0.0
        self.on_change = tuple(on_change)
        """Set when leadership is gained or lost."""
        self.holder: str | None = None
        """Who holds the Lease, as last read (this operator or another)."""

    def is_leader(self) -> bool:
        return time.monotonic() - self._renewed_at < self.lease_seconds * LEADING_FRACTION

    def run(self, stop: threading.Event) -> None:
        was = False
        waiting_for: str | None = None
        while not stop.is_set():
            try:
                if self._try_acquire_or_renew():
                    self._renewed_at = time.monotonic()
            except Exception as exc:
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            now = self.is_leader()
            if not now and self.holder not in (None, self.identity, waiting_for):
                # Say whom we wait for, once per holder: an operator that never leads is
                # otherwise silent (a standby, or a second operator on the same Lease).
                waiting_for = self.holder
                log.info("standing by: lease %s/%s is held by %s", self.namespace, self.name,
                         self.holder)
            if now != was:
                log.info("%s leadership of %s/%s", "acquired" if now else "lost",
                         self.namespace, self.name)
                was = now
                for event in self.on_change:
                    event.set()
            stop.wait(self.lease_seconds / 3)

    def release(self) -> None:
        """Give the Lease up at a clean shutdown, so a standby takes over at once."""
        if not self.is_leader():
            return
        self._renewed_at = 0.0
        try:
            lease: Any = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                lease.spec.acquire_time = None
                self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            log.warning("lease release failed: %s", exc.reason)

    def _try_acquire_or_renew(self) -> bool:
        now = _now()
        try:
            lease: Any = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = k8s.V1Lease(
                metadata=k8s.V1ObjectMeta(name=self.name, namespace=self.namespace),
                spec=k8s.V1LeaseSpec(holder_identity=self.identity,
                                     lease_duration_seconds=int(max(1, self.lease_seconds)),
                                     acquire_time=now, renew_time=now, lease_transitions=0))
            try:
                self.api.create_namespaced_lease(self.namespace, body)
                self.holder = self.identity
                return True
            except ApiException as conflict:
                if conflict.status == 409:
                    return False
                raise
        spec = lease.spec
        holder = self.holder = spec.holder_identity
        renewed = spec.renew_time
        duration = spec.lease_duration_seconds or self.lease_seconds
        expired = renewed is None or (now - renewed).total_seconds() > duration
        if holder not in (None, self.identity) and not expired:
            return False
        if holder != self.identity:
            spec.acquire_time = now
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        spec.holder_identity = self.holder = self.identity
        spec.renew_time = now
        spec.lease_duration_seconds = int(max(1, self.lease_seconds))
        try:
            # resourceVersion in the body makes this a compare-and-swap
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True
