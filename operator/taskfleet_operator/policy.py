"""The autoscaling policy of a WorkerPool, parsed from its spec with defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class SpecError(ValueError):
    """A spec field is wrong; the message names the field and the fix."""


@dataclass(frozen=True)
class StepPolicy:
    stabilization_seconds: float
    max_step_percent: float
    max_step_replicas: int
    """At least this many replicas per period, whatever the percentage allows (from 0 or 1)."""
    period_seconds: float = 2.0
    """The step limits apply to the change over any window this long (as HPA policies)."""


@dataclass(frozen=True)
class ScalingPolicy:
    enabled: bool = True
    min_replicas: int = 0
    max_replicas: int = 10
    target_per_replica: float = 5.0
    target_latency_seconds: float | None = None
    activation_threshold: int = 0
    scale_to_zero_after_seconds: float = 300.0
    poll_seconds: float = 2.0
    scale_up: StepPolicy = field(default_factory=lambda: StepPolicy(0.0, 100.0, 4))
    scale_down: StepPolicy = field(default_factory=lambda: StepPolicy(60.0, 100.0, 1))
    fallback_replicas: int | None = None
    """None: hold the current count when metrics fail."""
    manual_replicas: int = 1
    """spec.replicas: the count when autoscaling is off."""


def _number(d: dict[str, Any], key: str, path: str, default: float, minimum: float = 0.0
            ) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise SpecError(f"{path}.{key} must be a number >= {minimum:g}, got {value!r}")
    return float(value)


def _int(d: dict[str, Any], key: str, path: str, default: int, minimum: int = 0) -> int:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SpecError(f"{path}.{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _step(d: dict[str, Any], path: str, default: StepPolicy) -> StepPolicy:
    if not isinstance(d, dict):
        raise SpecError(f"{path} must be an object")
    return StepPolicy(
        stabilization_seconds=_number(d, "stabilizationSeconds", path,
                                      default.stabilization_seconds),
        max_step_percent=_number(d, "maxStepPercent", path, default.max_step_percent, 1.0),
        max_step_replicas=_int(d, "maxStepReplicas", path, default.max_step_replicas, 1),
        period_seconds=_number(d, "periodSeconds", path, default.period_seconds, 0.0),
    )


def parse_policy(spec: dict[str, Any]) -> ScalingPolicy:
    """The policy of a WorkerPool spec; SpecError names the first wrong field."""
    base = ScalingPolicy()
    manual = _int(spec, "replicas", "spec", 1)
    a = spec.get("autoscaling") or {}
    if not isinstance(a, dict):
        raise SpecError("spec.autoscaling must be an object")
    p = "spec.autoscaling"
    enabled = a.get("enabled", bool(a))
    if not isinstance(enabled, bool):
        raise SpecError(f"{p}.enabled must be true or false")
    lo = _int(a, "minReplicas", p, base.min_replicas)
    hi = _int(a, "maxReplicas", p, base.max_replicas, 1)
    if lo > hi:
        raise SpecError(f"{p}.minReplicas ({lo}) must be <= maxReplicas ({hi})")
    latency = a.get("targetLatencySeconds")
    if latency is not None:
        latency = _number(a, "targetLatencySeconds", p, 0.0, 0.001)
    fallback = None
    on_error = a.get("onMetricsError", "hold")
    if isinstance(on_error, dict):
        fallback = _int(on_error, "fallbackReplicas", f"{p}.onMetricsError", 0, 1)
    elif on_error != "hold":
        raise SpecError(f"{p}.onMetricsError must be 'hold' or {{fallbackReplicas: N}}, "
                        f"got {on_error!r}")
    return ScalingPolicy(
        enabled=enabled,
        min_replicas=lo,
        max_replicas=hi,
        target_per_replica=_number(a, "targetPerReplica", p, base.target_per_replica, 0.001),
        target_latency_seconds=latency,
        activation_threshold=_int(a, "activationThreshold", p, base.activation_threshold),
        scale_to_zero_after_seconds=_number(a, "scaleToZeroAfterSeconds", p,
                                            base.scale_to_zero_after_seconds),
        poll_seconds=_number(a, "pollSeconds", p, base.poll_seconds, 0.1),
        scale_up=_step(a.get("scaleUp") or {}, f"{p}.scaleUp", base.scale_up),
        scale_down=_step(a.get("scaleDown") or {}, f"{p}.scaleDown", base.scale_down),
        fallback_replicas=fallback,
        manual_replicas=manual,
    )
