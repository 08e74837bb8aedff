"""The worker runtimes (WorkerPool.spec.runtime: the program a pool's containers run): one
module and one WorkerRuntime object each (runtimes.base), owning its command line,
liveness probe, broker environment, drain, and how its running tasks are counted.

A new runtime is one module here with its WorkerRuntime object, listed in RUNTIMES.
"""

from __future__ import annotations

from .base import WorkerRuntime
from .celery import RUNTIME as CELERY
from .rq import RUNTIME as RQ
from .taskfleet import RUNTIME as TASKFLEET

RUNTIMES: dict[str, WorkerRuntime] = {r.name: r for r in (TASKFLEET, CELERY, RQ)}
"""By WorkerPool.spec.runtime, in the order the spec lists them."""
DEFAULT_RUNTIME = TASKFLEET.name


def runtime_named(name: str) -> WorkerRuntime:
    """The runtime of that name; KeyError when there is none (the spec parser says so)."""
    return RUNTIMES[name]


def own_runtime_of(protocol: str) -> WorkerRuntime:
    """The runtime whose own protocol it is: who tells a queue's busy pods by default."""
    return next(r for r in RUNTIMES.values() if r.serves[0] == protocol)


__all__ = ["CELERY", "DEFAULT_RUNTIME", "RQ", "RUNTIMES", "TASKFLEET", "WorkerRuntime",
           "own_runtime_of", "runtime_named"]
