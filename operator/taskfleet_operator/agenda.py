"""The controller's agenda: when each pool and queue is looked at next, and when a pass runs.

A pass touches what is due, changed or woken, not all 10,000 pools: each pool and queue
is due again after its own interval (its poll interval, or at rest its safety read),
kept in a heap, and the loop sleeps until the earliest of them (:meth:`Agenda.next_due`)
instead of scanning every pool. Pools without work yield to pools with work once a
pass has spent its budget; state kept for deleted objects is swept now and then.
"""

from __future__ import annotations

import functools
import heapq
import time
import zlib
from collections.abc import Callable, Collection, Iterator, MutableMapping, Sequence
from typing import Any, TypeVar

from .model import TaskQueue, WorkerPool
from .registry import Key, Snapshot

QUEUE_STATUS_SECONDS = 2.0
"""How often a TaskQueue's figures are read and written to its status while it has work."""
REST_SECONDS = 30.0
"""How often a pool at rest, and a queue with no work, is read. At rest: every queue
empty with nothing in flight or delayed, and the replicas where the policy leaves them.
Nothing changes that until something is enqueued, and an enqueue into an empty queue
wakes its pools at once (its wake channel): this is only the net for a wake-up lost
with a connection. It is what lets one operator serve 10,000 mostly idle pools. Each
pool and queue gets its own interval within +-25 % of it (a hash of its name), so the
safety reads of 10,000 pools spread over time instead of landing in one long pass."""
PASS_BUDGET_SECONDS = 0.5
"""Past this, a pass leaves pools without work for the next one (pools with work first)."""
SWEEP_SECONDS = 60.0
"""How often state kept for deleted pools and queues is dropped (a scan of all of them)."""
DUE_EARLY = 0.9
"""A pool or queue may be taken from 0.9 of its interval on, and must be by its end: the
pass that runs for the earliest of them takes every other one in that last tenth too, so
10,000 spread-out intervals make a pass every second or two, not one per pool."""
SHORTEST_WAIT_SECONDS = 0.1
"""The loop's shortest sleep between two passes on its timer (a wake-up is served at once)."""

T = TypeVar("T")


class DueHeap:
    """Keys and when each is due: from ``early`` on a pass may take it, by ``late`` one
    must run. A key scheduled again replaces its earlier times (stale heap entries are
    skipped when they come up)."""

    def __init__(self) -> None:
        self._by_early: list[tuple[float, Key]] = []
        self._by_late: list[tuple[float, Key]] = []
        self._due: dict[Key, tuple[float, float]] = {}

    def set_due(self, key: Key, early: float, late: float | None = None) -> None:
        due = (early, early if late is None else late)
        if self._due.get(key) == due:
            return
        self._due[key] = due
        heapq.heappush(self._by_early, (due[0], key))
        heapq.heappush(self._by_late, (due[1], key))
        if max(len(self._by_early), len(self._by_late)) > 4 * len(self._due) + 64:
            # mostly stale entries: rebuild
            self._by_early = [(e, k) for k, (e, _) in self._due.items()]
            self._by_late = [(lt, k) for k, (_, lt) in self._due.items()]
            heapq.heapify(self._by_early)
            heapq.heapify(self._by_late)

    def forget(self, key: Key) -> None:
        self._due.pop(key, None)

    def pop_due(self, now: float) -> frozenset[Key]:
        """The keys due by ``now`` (their early time passed), no longer scheduled."""
        out: set[Key] = set()
        heap = self._by_early
        while heap and heap[0][0] <= now:
            early, key = heapq.heappop(heap)
            due = self._due.get(key)
            if due is not None and due[0] == early:
                del self._due[key]
                out.add(key)
        return frozenset(out)

    def next_late(self) -> float | None:
        """The earliest time by which a pass must take a key; None when none is scheduled."""
        heap = self._by_late
        while heap:
            late, key = heap[0]
            due = self._due.get(key)
            if due is not None and due[1] == late:
                return late
            heapq.heappop(heap)
        return None


@functools.lru_cache(maxsize=1 << 16)  # asked for every pool and queue on every pass
def rest_seconds(key: Key) -> float:
    """REST_SECONDS, +-25 % by a stable hash of the object's name."""
    spread = zlib.crc32(f"{key[0]}/{key[1]}".encode()) / 0xFFFFFFFF
    return REST_SECONDS * (0.75 + 0.5 * spread)


class Agenda:
    """When each pool and queue is due, when the sweep is, and how long the loop sleeps."""

    def __init__(self) -> None:
        self.pools = DueHeap()
        self.queues = DueHeap()
        self.swept_at = 0.0
        self._schedules_due: float | None = None
        """When TaskQueue schedules must be looked at again; None: no queue has any."""
        self._taken: tuple[list[WorkerPool], list[TaskQueue]] = ([], [])

    def take_due(self, snap: Snapshot, now: float, everything: bool = False
                 ) -> tuple[list[WorkerPool], list[TaskQueue]]:
        """What a pass looks at: every pool and queue when asked, else the pools that
        changed, woke or are due, and the queues they name, woke, changed or are due.
        Taken off the agenda until the pass puts them back on (or :meth:`put_back`)."""
        if everything:
            pools, queues = list(snap.pools.values()), list(snap.queues.values())
        else:
            keys = snap.changed | snap.woken_pools | self.pools.pop_due(now)
            pools = [snap.pools[k] for k in sorted(keys) if k in snap.pools]
            queue_keys = {(p.namespace, name) for p in pools for name in p.queues} \
                | snap.woken_queues | snap.changed_queues | self.queues.pop_due(now)
            queues = [snap.queues[k] for k in sorted(queue_keys) if k in snap.queues]
        self._taken = (pools, queues)
        return pools, queues

    def put_back(self, now: float) -> None:
        """The last pass failed: what it took is due again at once."""
        pools, queues = self._taken
        for heap, keys in ((self.pools, [p.key for p in pools]),
                           (self.queues, [q.key for q in queues])):
            for key in keys:
                heap.set_due(key, now)

    def pool_seen(self, key: Key, now: float, resting: bool, poll_seconds: float) -> None:
        """Due again after its poll interval, or at rest after its safety-read interval."""
        self._after(self.pools, key, now, rest_seconds(key) if resting else poll_seconds)

    def queue_read(self, key: Key, now: float, quiet: bool) -> None:
        """Due again soon while it has work (or its status is behind), at rest much later."""
        self._after(self.queues, key, now, rest_seconds(key) if quiet else QUEUE_STATUS_SECONDS)

    @staticmethod
    def _after(heap: DueHeap, key: Key, now: float, interval: float) -> None:
        heap.set_due(key, now + DUE_EARLY * interval, now + interval)

    def schedules_seen(self, now: float, any_scheduled: bool) -> None:
        """Cron ticks are looked at on every pass, and at least every QUEUE_STATUS_SECONDS
        while any TaskQueue has a schedule."""
        self._schedules_due = now + QUEUE_STATUS_SECONDS if any_scheduled else None

    def sweep_due(self, now: float) -> bool:
        return now - self.swept_at >= SWEEP_SECONDS

    def sweep(self, now: float, pools: MutableMapping[Key, Any], pools_present: Collection[Key],
              queues: MutableMapping[Key, Any], queues_present: Collection[Key]) -> None:
        """Drop what is kept (``pools``, ``queues``) for pools and queues that are gone."""
        self.swept_at = now
        for kept, present, heap in ((pools, pools_present, self.pools),
                                    (queues, queues_present, self.queues)):
            for key in [k for k in kept if k not in present]:
                del kept[key]
                heap.forget(key)

    def next_due(self) -> float:
        """The time by which the next pass must run: the earliest pool or queue due, the
        schedules' next look, or the sweep."""
        times = [self.swept_at + SWEEP_SECONDS, self.pools.next_late(), self.queues.next_late(),
                 self._schedules_due]
        return min(t for t in times if t is not None)

    def seconds_to_wait(self, now: float) -> float:
        return max(SHORTEST_WAIT_SECONDS, self.next_due() - now)


def within_budget(urgent: Sequence[T], calm: Sequence[T],
                  put_off: Callable[[Sequence[T]], None]) -> Iterator[T]:
    """Every urgent item, then calm ones (one at least) until PASS_BUDGET_SECONDS are spent
    since the start; the calm ones left are handed to ``put_off`` (the next pass's)."""
    deadline = time.perf_counter() + PASS_BUDGET_SECONDS
    yield from urgent
    for i, item in enumerate(calm):
        if i > 0 and time.perf_counter() > deadline:
            put_off(calm[i:])
            return
        yield item
