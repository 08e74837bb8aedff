"""queue_stats() on a real redis-server: many queues per script call (STATS_MANY), each
queue's figures what was sent, taken and delayed."""

from __future__ import annotations

import time

import redis

from taskfleet import App, queue_stats
from taskfleet.stats import STATS_PER_CALL


def test_figures_of_many_queues_in_batched_calls(redis_url: str,
                                                 redis_client: redis.Redis) -> None:
    app = App(redis_url)
    count = 2 * STATS_PER_CALL + 37  # calls that are full, and one that is not
    expected = {}
    for i in range(count):
        name = f"q{i}"
        ready, delayed = i % 7, 2 if i % 5 == 0 else 0
        app.send_many("sample.add", [[i, i]] * ready, queue=name)
        for _ in range(delayed):
            app.send_task("sample.add", [i, i], queue=name, countdown=3600)
        taken = len(app.broker.fetch(name, 1, 60_000)) if i % 11 == 0 else 0
        expected[name] = (ready - taken, taken, delayed)
    time.sleep(0.1)  # every ready task has waited at least this long
    stats = queue_stats(redis_client, [*expected, "never-used"])
    assert {n: (s.ready, s.in_flight, s.delayed) for n, s in stats.items() if n in expected} \
        == expected
    assert stats["never-used"].ready == 0 and stats["never-used"].oldest_age_seconds == 0.0
    with_work = [stats[n] for n, (ready, _, _) in expected.items() if ready > 0]
    assert with_work and all(s.oldest_age_seconds >= 0.1 for s in with_work)


def test_oldest_age_is_the_oldest_head_of_any_priority_band(redis_url: str,
                                                             redis_client: redis.Redis) -> None:
    """The script asks only non-empty bands for their head: a queue with work in one band
    (high or low), in two, or in none, each gives the age of its oldest ready task."""
    app = App(redis_url)
    app.send_task("sample.add", [1, 1], queue="low-only", priority=9)
    app.send_task("sample.add", [1, 1], queue="both", priority=9)  # the oldest of "both"
    time.sleep(0.3)
    app.send_task("sample.add", [1, 1], queue="high-only", priority=0)
    app.send_task("sample.add", [1, 1], queue="both", priority=0)
    stats = queue_stats(redis_client, ["low-only", "high-only", "both", "empty"])
    assert stats["low-only"].oldest_age_seconds >= 0.3
    assert stats["both"].oldest_age_seconds >= 0.3
    assert 0.0 <= stats["high-only"].oldest_age_seconds < 0.3
    assert (stats["low-only"].ready, stats["high-only"].ready, stats["both"].ready) == (1, 1, 2)
    assert stats["empty"].ready == 0 and stats["empty"].oldest_age_seconds == 0.0
