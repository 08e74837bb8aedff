"""Kubernetes-style status conditions (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(conditions: list[dict[str, Any]], type_: str, ok: bool, reason: str,
                  message: str, now: float, generation: int) -> list[dict[str, Any]]:
    """Conditions with ``type_`` set; lastTransitionTime moves only when the status flips."""
    status = "True" if ok else "False"
    out = [dict(c) for c in conditions if c.get("type") != type_]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    since = previous.get("lastTransitionTime") if previous and previous.get(
        "status") == status else rfc3339(now)
    out.append({"type": type_, "status": status, "reason": reason, "message": message,
                "lastTransitionTime": since, "observedGeneration": generation})
    return sorted(out, key=lambda c: str(c["type"]))


def parse_rfc3339(value: Any) -> float | None:
    """The time a status field written with rfc3339 holds; None when it holds none."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None
