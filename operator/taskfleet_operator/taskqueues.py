"""What the controller keeps and writes of each TaskQueue between passes: its last
reading, its cron ticks (fired as a step of their own) and its status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .act import Actions
from .agenda import QUEUE_STATUS_SECONDS
from .model import TaskQueue
from .observe import QueueReading
from .registry import Key, Snapshot
from .schedules import ScheduleRunner
from .status import Fired, queue_status


@dataclass
class QueueState:
    """What the controller remembers of one TaskQueue between passes."""

    reading: QueueReading | None = None
    """What was last read."""
    read_at: float = 0.0
    written_status: dict[str, Any] | None = None
    """What this process last wrote to its status (None: nothing yet)."""
    written_at: float = 0.0
    status_behind: bool = False
    """Its status lags its last reading (writes are at most one per QUEUE_STATUS_SECONDS):
    due again then, even at rest."""


class TaskQueues:
    """Every TaskQueue's state; fires cron ticks through ``schedules`` (when given) and
    writes statuses through ``actuator``."""

    def __init__(self, actuator: Actions, schedules: ScheduleRunner | None = None) -> None:
        self.actuator = actuator
        self.schedules = schedules
        self.states: dict[Key, QueueState] = {}
        self.readings: Mapping[Key, QueueReading] = {}
        """Every queue's last reading as of the last pass: a new mapping each pass, never
        changed after, so other threads (metrics, the dashboard) read it as it is."""

    def state(self, key: Key) -> QueueState:
        found = self.states.get(key)
        if found is None:
            found = self.states[key] = QueueState()
        return found

    def read(self, fresh: Mapping[Key, QueueReading], now: float
             ) -> Mapping[Key, QueueReading]:
        """Keep this pass's readings; returns every queue's last one (``readings``)."""
        for key, reading in fresh.items():
            state = self.state(key)
            state.reading, state.read_at = reading, now
        self.readings = {k: s.reading for k, s in self.states.items() if s.reading is not None}
        return self.readings

    def fire_schedules(self, snap: Snapshot, keys: Iterable[Key], now: float
                       ) -> dict[Key, Fired]:
        """Send the cron ticks that are due, of the queues among ``keys`` that have
        schedules (or had: their status.schedules is emptied then)."""
        fired: dict[Key, Fired] = {}
        if self.schedules is None:
            return fired
        for key in keys:
            tq = snap.queues.get(key)
            state = self.states.get(key)
            written = state.written_status if state is not None else None
            if tq is not None and (tq.schedules or (written and "schedules" in written)):
                fired[key] = self.schedules.run(tq, now)
        return fired

    def write_statuses(self, snap: Snapshot, keys: Iterable[Key], read: set[Key],
                       fired: Mapping[Key, Fired], now: float) -> None:
        """The status of each queue among ``keys`` that was read or fired this pass, or
        that this process has not written yet."""
        for key in keys:
            tq = snap.queues.get(key)
            if tq is None:
                continue
            state = self.state(key)
            if key in read or key in fired or state.written_status is None:
                self.write_status(tq, state, fired.get(key), now)

    def write_status(self, tq: TaskQueue, state: QueueState, fired: Fired | None,
                     now: float) -> None:
        """Write what changed: a change of figures alone at most once per
        QUEUE_STATUS_SECONDS (the rest on a later pass), a change of a condition or of
        the schedules at once."""
        last = state.written_status
        status = queue_status(tq, state.reading, fired,
                              last.get("conditions", []) if last else [], now)
        if last is not None:
            changed_schedules = fired is not None and fired[0] != last.get("schedules")
            urgent = last.get("conditions") != status["conditions"] or changed_schedules
            if last == status:
                state.status_behind = False
                return
            if not urgent and now - state.written_at < QUEUE_STATUS_SECONDS:
                state.status_behind = True  # written on a later pass, read again then
                return
        self.actuator.patch_status("taskqueues", tq.namespace, tq.name, status)
        state.written_status, state.written_at, state.status_behind = status, now, False
