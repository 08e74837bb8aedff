"""What each page section shows, as JSON-ready dicts, read from the sources."""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import keys
from .sources import DashboardSource, PoolView, QueueSource, distinct_clients

HISTORY_POINTS = 900
"""Replica samples kept per pool: 15 minutes at one a second."""
REASONS_KEPT = 10
MAX_RECORD_BYTES = 4 << 20
"""A dead letter or result over this (four times the default message limit: a record
carries its message escaped) is not decoded: the page says its size instead."""


def find_queue(source: DashboardSource, label: str) -> QueueSource | None:
    return next((q for q in source.queues() if q.label == label), None)


def dead_rows(queue: QueueSource, limit: int = 100,
              max_bytes: int = MAX_RECORD_BYTES) -> list[dict[str, Any]]:
    """The newest dead letters; a record over ``max_bytes`` or unreadable is a row saying
    so (its size or fault), never decoded whole nor a failure of the page."""
    rows = []
    for raw in queue.client.lrange(keys.QueueKeys(queue.queue).dead, 0, limit - 1):
        record = _record(raw, max_bytes)
        if "error" in record:
            rows.append({"id": None, "task": None, "reason": record["error"],
                         "failed_at": None})
            continue
        body = record.get("body")
        if isinstance(body, str) and len(body) <= max_bytes:
            try:
                body = json.loads(body)
            except (ValueError, RecursionError):
                body = None
        task = body.get("task") if isinstance(body, dict) else None
        rows.append({"id": _scalar(record.get("id")), "task": _scalar(task),
                     "reason": _scalar(record.get("reason")),
                     "failed_at": record.get("failed_at")
                     if isinstance(record.get("failed_at"), int | float) else None})
    return rows


def _scalar(value: Any) -> str | None:
    return value if isinstance(value, str) else None if value is None else str(value)[:200]


def _record(raw: bytes | str, max_bytes: int) -> dict[str, Any]:
    """A JSON object stored by taskfleet, or {"error": why it is not shown}."""
    size = len(raw)
    if size > max_bytes:
        return {"error": f"record of {size:,} bytes, over the dashboard's limit of "
                         f"{max_bytes:,}: not shown"}
    try:
        record = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return {"error": f"unreadable record: {str(exc)[:200]}"}
    if not isinstance(record, dict):
        return {"error": "unreadable record: not a JSON object"}
    return record


def task_view(queues: Sequence[QueueSource], task_id: str) -> dict[str, Any]:
    """A task's status and its result or error, from the first Redis that knows it."""
    for client in distinct_clients(queues):
        raw = client.lindex(keys.result_key(task_id), 0)
        if raw:
            return {**_record(raw, MAX_RECORD_BYTES), "id": task_id}
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
