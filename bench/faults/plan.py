"""The chaos run's sizes and the settings every phase shares."""

from __future__ import annotations

from dataclasses import dataclass

TASK_APP = "bench.peers.chaos_tasks:app"
TASK = "chaos.step"
LEASE_SECONDS = 2.0
"""Short, so that redeliveries happen within the run."""
CONCURRENCY = 2
"""Processes per pod; each holds one task at a time (tasks of 10 ms and more are never
prefetched: the inline pool prefetches only while tasks average under 5 ms)."""
TASK_MS = (10, 50)
BURST_FRACTION = 0.4
"""Of a paced phase's tasks, sent at once before the rest are spread out."""
RESUME_SECONDS = 8.0
"""Longer sends in the partition phase: the cut-off pod must have work once it is back."""
DRAIN_TIMEOUT_SECONDS = 240.0


@dataclass(frozen=True)
class Plan:
    """The sizes of a run."""

    worker_tasks: int
    worker_pods: int
    fault_gap_seconds: tuple[float, float]
    max_faults: int
    paced_tasks: int
    """Tasks of each phase whose producer sends at a steady pace (restarts, pause, cut)."""
    paced_pods: int
    send_window_seconds: float
    control_plane: bool

    @property
    def total_tasks(self) -> int:
        return self.worker_tasks + 4 * self.paced_tasks


FULL = Plan(worker_tasks=6000, worker_pods=4, fault_gap_seconds=(0.5, 1.5), max_faults=40,
            paced_tasks=1000, paced_pods=3, send_window_seconds=12.0, control_plane=True)
SHORT = Plan(worker_tasks=500, worker_pods=3, fault_gap_seconds=(0.3, 0.8), max_faults=12,
             paced_tasks=125, paced_pods=3, send_window_seconds=8.0, control_plane=False)
