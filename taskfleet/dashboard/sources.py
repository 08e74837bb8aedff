"""Where the dashboard's figures come from: queues on Redis clients, and pools when a
Kubernetes API is at hand (the operator's watches), else none."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .. import keys
from ..connection import Client, text


@dataclass(frozen=True)
class QueueSource:
    """One queue as the dashboard names it, and the Redis it lives on."""

    label: str
    """How the page names it: the queue's name, or namespace/TaskQueue under the operator."""
    queue: str
    client: Client


@dataclass(frozen=True)
class PoolView:
    namespace: str
    name: str
    queues: list[str]
    desired: int | None
    replicas: int
    ready: int
    max_replicas: int | None
    last_scale_time: str | None
    last_scale_reason: str | None
    conditions: dict[str, str] = field(default_factory=dict)
    """Condition type -> status ("True"/"False")."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class DashboardSource(Protocol):
    def queues(self) -> Sequence[QueueSource]: ...

    def pools(self) -> Sequence[PoolView] | None:
        """None when no Kubernetes API is at hand."""

    @property
    def pools_unavailable(self) -> str:
        """Why pools() is None, for the page."""


class RedisSource:
    """One Redis: the queues named, or every queue found there (SCAN, as taskfleet inspect)."""

    pools_unavailable = ("pools are shown when the dashboard runs in the operator "
                         "(it needs the Kubernetes API); taskfleet dashboard reads Redis only")

    def __init__(self, client: Client, names: Sequence[str] = ()) -> None:
        self.client = client
        self.names = list(names)

    def queues(self) -> list[QueueSource]:
        names = self.names or sorted({
            keys.queue_of_key(text(k)) for pattern in keys.QUEUE_SCAN_PATTERNS
            for k in self.client.scan_iter(match=pattern, count=1000)})
        return [QueueSource(n, n, self.client) for n in names]

    def pools(self) -> None:
        return None
