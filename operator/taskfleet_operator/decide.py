"""The autoscaling decision: a pure function of policy, observation and history.

No I/O. Like the HPA it turns work into a recommendation, stabilizes it over a
window and limits the step, but it also counts in-flight work, never drops a
pool to zero while work is ready or in flight, and holds the count when
metrics fail instead of collapsing it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from .policy import ScalingPolicy


@dataclass(frozen=True)
class Observation:
    now: float
    current_replicas: int
    ready: int = 0
    in_flight: int = 0
    oldest_age_seconds: float = 0.0
    metrics_error: str | None = None
    """Set when the queues could not be read; the figures above are then meaningless."""


@dataclass(frozen=True)
class History:
    recommendations: tuple[tuple[float, int], ...] = ()
    """(time, recommended replicas) within the longest stabilization window."""
    last_active: float | None = None
    """Last time work (ready or in flight) was seen; None: not since the operator started."""
    changes: tuple[tuple[float, int, int], ...] = ()
    """(time, before, after) of each change of replicas within the longest rate-limit period,
    so a step limit bounds the change over a period, however often decide() runs."""

    def count_at(self, t: float, current: int) -> int:
        """Replicas in effect at time ``t``."""
        earlier = [after for when, _, after in self.changes if when <= t]
        if earlier:
            return earlier[-1]
        return self.changes[0][1] if self.changes else current


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    history: History


def decide(policy: ScalingPolicy, obs: Observation, history: History) -> Decision:
    """Desired replicas for one pool, with the reason and the history to keep."""
    current = obs.current_replicas
    if not policy.enabled:
        n = policy.manual_replicas
        return Decision(n, f"autoscaling off: spec.replicas={n}", history)

    if obs.metrics_error is not None:
        if policy.fallback_replicas is not None:
            n = _clamp(policy.fallback_replicas, policy)
            reason = f"metrics unavailable ({obs.metrics_error}): fallback {n}"
        else:
            n = _clamp(current, policy)
            reason = f"metrics unavailable ({obs.metrics_error}): holding {n}"
        return Decision(n, reason, _record(history, policy, obs.now, current, n))

    work = obs.ready + obs.in_flight
    last_active = obs.now if work > 0 else history.last_active
    idle_since = last_active if last_active is not None else obs.now
    figures = f"ready={obs.ready} inFlight={obs.in_flight} target={policy.target_per_replica:g}"
    notes: list[str] = []

    if work == 0:
        idle_for = obs.now - idle_since
        if current == 0 or (policy.min_replicas == 0
                            and idle_for >= policy.scale_to_zero_after_seconds):
            recommendation = policy.min_replicas
            if current > 0 and recommendation == 0:
                notes.append(f"idle {idle_for:.0f}s")
        else:
            recommendation = max(policy.min_replicas, 1)
    elif current == 0 and work <= policy.activation_threshold:
        recommendation = policy.min_replicas
        notes.append(f"below activation {policy.activation_threshold}")
    else:
        recommendation = max(1, math.ceil(work / policy.target_per_replica))
        latency = policy.target_latency_seconds
        if latency is not None and obs.ready > 0 and obs.oldest_age_seconds > latency:
            by_latency = math.ceil(max(current, 1) * obs.oldest_age_seconds / latency)
            if by_latency > recommendation:
                recommendation = by_latency
                notes.append(f"oldest {obs.oldest_age_seconds:.0f}s > {latency:g}s")
    recommendation = _clamp(recommendation, policy)

    window = max(policy.scale_up.stabilization_seconds, policy.scale_down.stabilization_seconds)
    recs = tuple((t, r) for t, r in history.recommendations if obs.now - t <= window)
    recs += ((obs.now, recommendation),)

    desired = current
    if recommendation > current:
        up = policy.scale_up
        stable = min(r for t, r in recs if obs.now - t <= up.stabilization_seconds)
        desired = max(current, stable)
        if desired < recommendation:
            notes.append("stabilizing")
        base = history.count_at(obs.now - up.period_seconds, current)
        limit = base + max(math.ceil(base * up.max_step_percent / 100), up.max_step_replicas)
        if desired > max(current, limit):
            desired = max(current, limit)
            notes.append("rate-limited")
        if current == 0 and desired == 0:
            # Activation is not the HPA's to stabilize (KEDA, too, takes a pool from zero
            # itself): a pool at zero with work above the threshold gets its first replica.
            desired = 1
            notes.append("activated")
    elif recommendation < current:
        down = policy.scale_down
        stable = max(r for t, r in recs if obs.now - t <= down.stabilization_seconds)
        desired = min(current, stable)
        if desired > recommendation:
            notes.append("stabilizing")
        base = history.count_at(obs.now - down.period_seconds, current)
        limit = base - max(math.ceil(base * down.max_step_percent / 100),
                           down.max_step_replicas)
        if desired < min(current, limit):
            desired = min(current, limit)
            notes.append("rate-limited")
    desired = _clamp(desired, policy)
    if desired == policy.max_replicas and recommendation >= policy.max_replicas > current:
        notes.append("max")
    if desired == policy.min_replicas and desired < current:
        notes.append("min")
    suffix = f" ({', '.join(notes)})" if notes else ""
    kept = History(recommendations=recs, last_active=last_active, changes=history.changes)
    return Decision(desired, f"{figures} → {desired}{suffix}",
                    _record(kept, policy, obs.now, current, desired))


def _record(history: History, policy: ScalingPolicy, now: float, current: int,
            desired: int) -> History:
    """History with this change of replicas, pruned to the longest rate-limit period
    (and the last change before it, which gives the count at the period's start)."""
    period = max(policy.scale_up.period_seconds, policy.scale_down.period_seconds)
    changes = history.changes + (((now, current, desired),) if desired != current else ())
    inside = [c for c in changes if now - c[0] <= period]
    older = [c for c in changes if now - c[0] > period][-1:]
    return replace(history, changes=tuple(older + inside))


def _clamp(n: int, policy: ScalingPolicy) -> int:
    return max(policy.min_replicas, min(policy.max_replicas, n))
