"""Retry delays: exponential backoff with full jitter."""

from __future__ import annotations

import random

_RNG = random.Random()


def retry_delay(retries: int, base: float, maximum: float, jitter: bool,
                rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``retries + 1``.

    ``base * 2**retries`` capped at ``maximum``; with jitter a uniform draw in
    [0, that], so that tasks failing together do not retry together.
    """
    if retries < 0:
        raise ValueError("retries must be >= 0")
    ceiling = min(maximum, base * 2.0 ** min(retries, 62))
    if not jitter:
        return ceiling
    return float((rng or _RNG).uniform(0.0, ceiling))
