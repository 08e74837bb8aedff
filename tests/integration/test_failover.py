"""Sentinel failover under load, on a real Sentinel group (1 master, 2 replicas, 3 sentinels)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.failover_run import run_failover
from tests.support.sentinel_group import SentinelGroup


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    """A group of its own: the test kills its master."""
    g = SentinelGroup(password="data-secret", sentinel_password="sentinel-secret").start()
    try:
        yield g
    finally:
        g.close()


def test_a_failover_during_5000_tasks_loses_nothing_with_replica_acks(
        group: SentinelGroup, tmp_path: Path) -> None:
    figures = run_failover(group, tasks=5000, replica_acks=1, log_dir=tmp_path)
    print(figures.as_dict())
    assert figures.tasks_acknowledged == 5000
    assert figures.lost == 0, f"acknowledged tasks lost: {figures.lost_ids}"
    assert figures.done == 5000
    assert figures.send_errors > 0, "the producer never saw the failover: the kill came too late"
