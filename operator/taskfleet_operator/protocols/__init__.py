"""The queue protocols (TaskQueue.spec.protocol): one module and one QueueProtocol object
each, owning how the operator reads its queues, learns of new work in them, and what a
queue of it may ask for (protocols.base).

Each object queues the Redis calls of its queues into the Batch shared by every queue on
one Redis (``add_reads``) and turns the replies into QueueStats, so all queues of all
protocols on one Redis are read in one pipelined round trip: taskfleet's own queues take
a hundred per call on one server (STATS_MANY); a Celery or RQ queue takes one script
call. Which tasks run on which pod is the worker runtime's to tell (..runtimes), as
what runs a pool's workers decides where that is written.

A new protocol is one module here with its QueueProtocol object, listed in PROTOCOLS.
"""

from __future__ import annotations

from .base import Figures, QueueProtocol, QueueRedis
from .celery import PROTOCOL as CELERY
from .native import PROTOCOL as NATIVE
from .rq import PROTOCOL as RQ

PROTOCOLS: dict[str, QueueProtocol] = {p.name: p for p in (NATIVE, CELERY, RQ)}
"""By TaskQueue.spec.protocol, in the order the spec lists them."""
DEFAULT_PROTOCOL = NATIVE.name


def protocol_named(name: str) -> QueueProtocol:
    """The protocol of that name; KeyError when there is none (the spec parser says so)."""
    return PROTOCOLS[name]


__all__ = [
    "CELERY",
    "DEFAULT_PROTOCOL",
    "NATIVE",
    "PROTOCOLS",
    "RQ",
    "Figures",
    "QueueProtocol",
    "QueueRedis",
    "protocol_named",
]
