"""WorkerPools and TaskQueues whose spec cannot be served: each is reported once per
generation and message, as a Ready=False condition and a Warning Event."""

from __future__ import annotations

from collections.abc import Iterable

from .act import Actions
from .conditions import set_condition
from .registry import InvalidObject, Key


class InvalidReports:
    def __init__(self, actuator: Actions) -> None:
        self.actuator = actuator
        self.reported: dict[tuple[str, Key], tuple[int, str]] = {}

    def report(self, objects: Iterable[InvalidObject], now: float) -> None:
        for obj in objects:
            mark = (obj.generation, obj.message)
            if self.reported.get((obj.kind, obj.key)) == mark:
                continue
            conditions = set_condition(list(obj.status.get("conditions") or []), "Ready",
                                       False, "InvalidSpec", obj.message, now, obj.generation)
            plural = "workerpools" if obj.kind == "WorkerPool" else "taskqueues"
            self.actuator.patch_status(plural, obj.namespace, obj.name,
                                       {"conditions": conditions,
                                        "observedGeneration": obj.generation})
            self.actuator.record_event(obj.kind, obj.namespace, obj.name, obj.uid,
                                       "InvalidSpec", obj.message, "Warning")
            self.reported[(obj.kind, obj.key)] = mark
