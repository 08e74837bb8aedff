"""The controller's agenda: due heaps, the loop's next due time, the sweep, the pass budget."""

from __future__ import annotations

import pytest

from taskfleet_operator import agenda as agenda_module
from taskfleet_operator.agenda import (
    DUE_EARLY,
    QUEUE_STATUS_SECONDS,
    SHORTEST_WAIT_SECONDS,
    SWEEP_SECONDS,
    Agenda,
    DueHeap,
    rest_seconds,
    within_budget,
)


def test_the_due_heap_gives_each_key_once_at_its_latest_time() -> None:
    heap = DueHeap()
    heap.set_due(("ns", "a"), 10.0)
    heap.set_due(("ns", "b"), 5.0)
    heap.set_due(("ns", "a"), 20.0)  # rescheduled: the earlier time no longer counts
    heap.set_due(("ns", "c"), 1.0)
    heap.forget(("ns", "c"))
    assert heap.pop_due(4.0) == frozenset()
    assert heap.pop_due(12.0) == {("ns", "b")}
    assert heap.pop_due(12.0) == frozenset(), "a popped key is no longer scheduled"
    assert heap.pop_due(25.0) == {("ns", "a")}
    for i in range(1000):  # stale entries do not pile up
        heap.set_due(("ns", "d"), float(i))
    assert len(heap._by_early) < 200 and len(heap._by_late) < 200


def test_the_due_heap_knows_the_earliest_time_a_pass_must_run() -> None:
    heap = DueHeap()
    assert heap.next_late() is None
    heap.set_due(("ns", "a"), 9.0, 10.0)
    heap.set_due(("ns", "b"), 4.0, 5.0)
    assert heap.next_late() == 5.0
    assert heap.pop_due(4.5) == {("ns", "b")}, "taken from its early time on"
    assert heap.next_late() == 10.0
    heap.set_due(("ns", "a"), 1.0, 2.0)
    assert heap.next_late() == 2.0
    heap.forget(("ns", "a"))
    assert heap.next_late() is None


def test_a_pass_for_the_earliest_takes_the_others_in_their_last_tenth() -> None:
    """Due from DUE_EARLY of the interval, by its end: many intervals, few passes."""
    agenda = Agenda()
    agenda.swept_at = 0.0
    window = (1 - DUE_EARLY) * QUEUE_STATUS_SECONDS
    for i in range(100):  # read over a tenth of their interval, each due again after it
        agenda.queue_read(("ns", f"q{i}"), i * window / 100, quiet=False)
    first = agenda.next_due()
    assert first == pytest.approx(QUEUE_STATUS_SECONDS), "by the first one's end"
    assert len(agenda.queues.pop_due(first)) == 100, "one pass takes them all"


def test_the_next_due_time_counts_the_sweep_and_the_schedules() -> None:
    agenda = Agenda()
    agenda.swept_at = 100.0
    assert agenda.next_due() == 100.0 + SWEEP_SECONDS, "nothing else: the sweep"
    agenda.schedules_seen(110.0, any_scheduled=True)
    assert agenda.next_due() == 110.0 + QUEUE_STATUS_SECONDS
    agenda.pool_seen(("ns", "p"), 110.0, resting=True, poll_seconds=2.0)
    assert agenda.next_due() == 110.0 + QUEUE_STATUS_SECONDS
    agenda.schedules_seen(111.0, any_scheduled=False)
    assert agenda.next_due() == 110.0 + rest_seconds(("ns", "p"))
    assert agenda.seconds_to_wait(1000.0) == SHORTEST_WAIT_SECONDS, "late: at once, nearly"


def test_the_sweep_drops_what_is_kept_of_objects_gone() -> None:
    agenda = Agenda()
    pools = {("ns", "kept"): 1, ("ns", "gone"): 2}
    queues = {("ns", "q"): 3}
    agenda.pool_seen(("ns", "gone"), 0.0, resting=False, poll_seconds=1.0)
    assert agenda.sweep_due(SWEEP_SECONDS)
    agenda.sweep(SWEEP_SECONDS, pools, {("ns", "kept")}, queues, set())
    assert pools == {("ns", "kept"): 1} and queues == {}
    assert agenda.pools.pop_due(1e9) == frozenset(), "a swept pool is off the agenda"
    assert not agenda.sweep_due(SWEEP_SECONDS + 1)


def test_the_budget_serves_every_urgent_item_and_one_calm_one_at_least(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agenda_module, "PASS_BUDGET_SECONDS", 0.0)
    left: list[list[str]] = []
    served = list(within_budget(["u1", "u2"], ["c1", "c2", "c3"],
                                lambda rest: left.append(list(rest))))
    assert served == ["u1", "u2", "c1"] and left == [["c2", "c3"]]
    monkeypatch.setattr(agenda_module, "PASS_BUDGET_SECONDS", 60.0)
    assert list(within_budget(["u"], ["c1", "c2"], left.append)) == ["u", "c1", "c2"]
