"""The Redis key layout: the one place where a key name is spelled.

Every key of a queue carries the hash tag ``{name}``, so a queue lives in one
Redis Cluster slot and the Lua scripts that touch several of its keys stay legal.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "tf"
PRIORITY_BANDS = 3
"""Ready lists per queue; band 2 is served first. See :func:`priority_band`."""

QUEUE_SCAN_PATTERNS = (f"{PREFIX}:{{*}}:messages", f"{PREFIX}:{{*}}:dead")
"""SCAN patterns that find every queue holding tasks or dead letters."""
WAKE_CHANNEL_PATTERN = f"{PREFIX}:{{*}}:wake"
"""PSUBSCRIBE pattern of every queue's wake channel (QueueKeys.wake_channel)."""


def queue_of_key(key: str) -> str:
    """The queue name in a queue key's hash tag (``tf:{name}:...`` -> ``name``)."""
    return key.split("{", 1)[1].split("}", 1)[0]


DEAD_LETTER_LIMIT = "dead_letter_limit"
"""Field of a queue's settings hash: records its dead-letter list keeps (scripts._DEAD_LETTER)."""

WORKERS_KEY = f"{PREFIX}:workers"
"""Sorted set of worker ids scored by their last heartbeat (unix seconds)."""


def worker_key(worker_id: str) -> str:
    """Hash with one worker's pod, queues and busy state."""
    return f"{PREFIX}:worker:{worker_id}"


def result_key(task_id: str) -> str:
    """List holding the final result of one task (one element)."""
    return f"{PREFIX}:result:{{{task_id}}}"


def state_key(task_id: str) -> str:
    """Intermediate state of one task (STARTED, RETRY) until its result exists."""
    return f"{PREFIX}:state:{{{task_id}}}"


def priority_band(priority: int) -> int:
    """Map a 0-9 priority (9 most urgent) to a ready-list band.

    Three bands keep the per-queue statistics O(1) while giving the common
    cases (urgent, normal, bulk) their own FIFO lists.
    """
    if priority >= 7:
        return 2
    if priority >= 4:
        return 1
    return 0


@dataclass(frozen=True)
class QueueKeys:
    """All keys of one queue."""

    name: str

    @property
    def tag(self) -> str:
        return f"{PREFIX}:{{{self.name}}}"

    def ready(self, band: int) -> str:
        """FIFO list of ``<ready-since-ms>:<task-id>`` entries for one priority band."""
        return f"{self.tag}:ready:{band}"

    @property
    def ready_bands(self) -> list[str]:
        """Ready lists, most urgent first."""
        return [self.ready(b) for b in reversed(range(PRIORITY_BANDS))]

    @property
    def messages(self) -> str:
        """Hash task-id -> message JSON, for every task that is ready, in flight or delayed."""
        return f"{self.tag}:messages"

    @property
    def leases(self) -> str:
        """Sorted set task-id -> lease deadline (ms): the tasks in flight."""
        return f"{self.tag}:leases"

    @property
    def delayed(self) -> str:
        """Sorted set task-id -> due time (ms): countdown, ETA and retry backoff."""
        return f"{self.tag}:delayed"

    @property
    def dead(self) -> str:
        """List of dead-letter records (JSON), newest first."""
        return f"{self.tag}:dead"

    @property
    def wake_channel(self) -> str:
        """Pub/sub channel told when the queue goes from empty to non-empty."""
        return f"{self.tag}:wake"

    @property
    def expiries(self) -> str:
        """Hash task-id -> how many of its leases expired (its worker died holding it)."""
        return f"{self.tag}:expiries"

    @property
    def dead_trimmed(self) -> str:
        """Counter of dead-letter records dropped by the queue's cap (the oldest go)."""
        return f"{self.tag}:dead-trimmed"

    @property
    def settings(self) -> str:  # fields: DEAD_LETTER_LIMIT
        """Hash of per-queue settings every worker obeys (``dead_letter_limit``); the
        operator writes it from the TaskQueue's spec."""
        return f"{self.tag}:settings"

    def schedule_state(self, schedule: str) -> str:
        """Hash: the last tick a schedule handled and the task it sent."""
        return f"{self.tag}:schedule:{schedule}"

    def tick_claim(self, schedule: str, tick_epoch: int) -> str:
        """Claimed (SET NX) by whoever sends that tick's task; expires after a while."""
        return f"{self.tag}:tick:{schedule}:{tick_epoch}"

    def stats_keys(self) -> list[str]:
        """Keys in the order scripts.STATS_MANY expects them, per queue."""
        return [*self.ready_bands, self.leases, self.delayed, self.dead, self.dead_trimmed]

    def all_keys(self) -> list[str]:
        """Keys in the order the Lua scripts expect them (see scripts._QUEUE_KEYS)."""
        return [*self.ready_bands, self.messages, self.leases, self.delayed, self.dead,
                self.dead_trimmed, self.settings, self.expiries]
