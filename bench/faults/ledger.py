"""What the chaos tasks wrote: every execution, in a Redis the faults never touch."""

from __future__ import annotations

from collections import Counter

import redis

from bench.peers.chaos_tasks import last_key, runs_key
from taskfleet.connection import text


class Ledger:
    """Reads what the tasks wrote (bench/peers/chaos_tasks.py)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = redis.Redis.from_url(url, decode_responses=True)

    def executions(self, phase: str) -> list[tuple[int, int, float]]:
        """(task index, pid, unix time) of every execution."""
        out = []
        for name, value in self.client.hgetall(runs_key(phase)).items():
            pid, at = text(value).split(":")
            out.append((int(text(name).split(":")[0]), int(pid), float(at)))
        return out

    def runs(self, phase: str) -> Counter[int]:
        return Counter(index for index, _, _ in self.executions(phase))

    def executions_so_far(self, phase: str) -> int:
        return int(self.client.hlen(runs_key(phase)))

    def last_started(self, phase: str, pid: int) -> int | None:
        value = self.client.hget(last_key(phase), str(pid))
        return int(value) if value is not None else None
