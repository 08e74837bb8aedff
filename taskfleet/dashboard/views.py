"""What each page section shows, as JSON-ready dicts, read from the sources."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import keys
from ..broker import Broker
from ..errors import RecordError
from ..records import DEAD_PAGE_SIZE, MAX_RECORD_BYTES, ResultRecord, UnreadableRecord
from .sources import DashboardSource, PoolView, QueueSource, distinct_clients

HISTORY_POINTS = 900
"""Replica samples kept per pool: 15 minutes at one a second."""
REASONS_KEPT = 10


def find_queue(source: DashboardSource, label: str) -> QueueSource | None:
    return next((q for q in source.queues() if q.label == label), None)


def dead_rows(queue: QueueSource, limit: int = DEAD_PAGE_SIZE) -> list[dict[str, Any]]:
    """The newest dead letters; a record over MAX_RECORD_BYTES or unreadable is a row
    saying so (its size or fault), never decoded whole nor a failure of the page."""
    rows: list[dict[str, Any]] = []
    for record in Broker(queue.client).dead_list(queue.queue, limit):
        if isinstance(record, UnreadableRecord):
            rows.append({"id": None, "task": None, "reason": record.reason, "failed_at": None})
        else:
            rows.append({"id": record.id, "task": record.task_name(), "reason": record.reason,
                         "failed_at": record.failed_at})
    return rows


def task_view(queues: Sequence[QueueSource], task_id: str) -> dict[str, Any]:
    """A task's status and its result or error, from the first Redis that knows it."""
    for client in distinct_clients(queues):
        raw = client.lindex(keys.result_key(task_id), 0)
        if raw:
            try:
                return {**ResultRecord.decode(raw, MAX_RECORD_BYTES).as_dict(), "id": task_id}
            except RecordError as exc:
                return {"id": task_id, "error": str(exc)}
        state = client.get(keys.state_key(task_id))
        if state:
            return {"id": task_id, "status": state.decode() if isinstance(state, bytes)
                    else str(state)}
    return {"id": task_id, "status": "PENDING",
            "note": "no record: not run yet, an unknown id, or its result expired"}


@dataclass
class PoolHistory:
    """Replicas over time and the last scale reasons, kept by the server between requests."""

    points: dict[str, deque[tuple[float, int | None, int]]] = field(default_factory=dict)
    reasons: dict[str, deque[tuple[str, str]]] = field(default_factory=dict)
    last_sample: float = 0.0

    def record(self, pools: Sequence[PoolView], now: float) -> None:
        sample = now - self.last_sample >= 1.0
        if sample:
            self.last_sample = now
        for p in pools:
            if sample:
                self.points.setdefault(p.key, deque(maxlen=HISTORY_POINTS)).append(
                    (now, p.desired, p.ready))
            if p.last_scale_time and p.last_scale_reason:
                seen = self.reasons.setdefault(p.key, deque(maxlen=REASONS_KEPT))
                entry = (p.last_scale_time, p.last_scale_reason)
                if not seen or seen[-1] != entry:
                    seen.append(entry)
        for key in set(self.points) - {p.key for p in pools}:
            del self.points[key]
            self.reasons.pop(key, None)

    def rows(self, pools: Sequence[PoolView]) -> list[dict[str, Any]]:
        return [{"key": p.key, "namespace": p.namespace, "name": p.name, "queues": p.queues,
                 "desired": p.desired, "replicas": p.replicas, "ready": p.ready,
                 "max_replicas": p.max_replicas, "conditions": p.conditions,
                 "history": [[round(t, 1), d, r] for t, d, r in self.points.get(p.key, ())],
                 "reasons": [{"time": t, "reason": r}
                             for t, r in reversed(self.reasons.get(p.key, ()))]}
                for p in sorted(pools, key=lambda p: p.key)]


def overview(source: DashboardSource, history: PoolHistory,
             now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    pools = source.pools()
    out: dict[str, Any] = {"time": now, "queues": source.queue_rows(),
                           "workers": source.worker_rows(now)}
    if pools is None:
        out["pools"] = None
        out["pools_unavailable"] = source.pools_unavailable
    else:
        history.record(pools, now)
        out["pools"] = history.rows(pools)
    return out
