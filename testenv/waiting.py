"""Waiting in tests: for something to happen, and for something to keep holding.

The two shapes of every timing check here (KEDA's e2e helpers have the same
pair): ``wait_for`` polls until a probe is truthy; ``assert_stays`` fails as
soon as a probe stops being truthy during a period. Both say, on failure, what
was awaited, the last value seen and (with ``describe``) the state around it.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class WaitTimedOut(AssertionError):
    """What ``wait_for`` raises when time runs out: a failed assertion to a test; to a
    benchmark that goes on without what it waited for, one it can catch apart."""


def wait_for(what: str, probe: Callable[[], T], timeout: float = 60.0, interval: float = 0.2,
             describe: Callable[[], str] | None = None) -> T:
    """Wait until ``probe()`` is truthy and return its value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last  # type: ignore[no-any-return]
        time.sleep(interval)
    detail = f"\n{describe()}" if describe else ""
    raise WaitTimedOut(f"timed out after {timeout:g}s waiting for {what}; last value: "
                       f"{last!r}{detail}")


def assert_stays(what: str, probe: Callable[[], object], seconds: float,
                 interval: float = 0.2, describe: Callable[[], str] | None = None) -> None:
    """Fail as soon as ``probe()`` is falsy during the next ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if not value:
            detail = f"\n{describe()}" if describe else ""
            raise AssertionError(f"{what} stopped holding after "
                                 f"{seconds - (deadline - time.monotonic()):.1f}s of "
                                 f"{seconds:g}s; value: {value!r}{detail}")
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)


def sleep_until_second(second: float, margin: float = 2.0) -> None:
    """Sleep until that second of a minute: this minute's, or the next one's when it is
    less than ``margin`` seconds away (cron ticks fall on minute boundaries)."""
    now = time.time()
    target = (int(now) // 60) * 60 + second
    if target <= now + margin:
        target += 60
    time.sleep(target - now)


def answers(url: str) -> bool:
    """The URL answers 200 now (a server up and serving)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False
