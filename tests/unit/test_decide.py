"""decide(): examples that tell the story, and properties that must always hold."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskfleet_operator.decide import Decision, History, Observation, decide
from taskfleet_operator.policy import ScalingPolicy, SpecError, StepPolicy, parse_policy

BURSTY = ScalingPolicy(min_replicas=0, max_replicas=20, target_per_replica=5,
                       scale_to_zero_after_seconds=300,
                       scale_up=StepPolicy(0, 100, 4), scale_down=StepPolicy(60, 100, 1))


def run(policy: ScalingPolicy, steps: list[tuple[float, int, int]], current: int = 0
        ) -> list[Decision]:
    """Feed (time, ready, in_flight) observations, applying each decision."""
    history = History()
    out = []
    for now, ready, in_flight in steps:
        d = decide(policy, Observation(now, current, ready, in_flight), history)
        history, current = d.history, d.replicas
        out.append(d)
    return out


def test_burst_scales_out_to_max_within_a_few_polls() -> None:
    ds = run(BURSTY, [(t, 400, 0) for t in range(0, 10, 2)])
    assert [d.replicas for d in ds] == [4, 8, 16, 20, 20]
    assert ds[0].reason == "ready=400 inFlight=0 target=5 → 4 (rate-limited)"
    assert ds[3].reason == "ready=400 inFlight=0 target=5 → 20 (max)"


def test_step_limits_hold_per_period_however_often_decide_runs() -> None:
    # the controller also re-decides on every watch event: ten passes in one second
    ds = run(BURSTY, [(t / 10, 400, 0) for t in range(10)] + [(2.05, 400, 0), (4.1, 400, 0)])
    assert [d.replicas for d in ds] == [4] * 10 + [8, 16]


def test_in_flight_work_alone_keeps_the_pool_up() -> None:
    ds = run(BURSTY, [(0, 0, 12), (100, 0, 12), (1000, 0, 12)], current=3)
    assert [d.replicas for d in ds] == [3, 3, 3]


def test_idle_pool_goes_to_min_after_stabilization_then_to_zero_after_idle_period() -> None:
    steps = [(0, 0, 10)] + [(t, 0, 0) for t in range(10, 500, 10)]
    ds = run(BURSTY, steps, current=2)
    by_time = dict(zip([s[0] for s in steps], [d.replicas for d in ds], strict=True))
    assert by_time[0] == 2
    assert by_time[60] == 2, "scale-down stabilization holds for 60 s"
    assert by_time[100] == 1, "idle but inside the scale-to-zero period: one replica"
    assert by_time[300] == 1
    assert by_time[370] == 0, "idle for 300 s and stabilized for 60 s: zero"


def test_below_activation_threshold_nothing_starts() -> None:
    policy = ScalingPolicy(activation_threshold=10, max_replicas=5)
    assert run(policy, [(0, 10, 0)])[0].replicas == 0
    assert run(policy, [(0, 11, 0)])[0].replicas == 3


def test_metrics_error_holds_or_falls_back_never_zero() -> None:
    obs = Observation(0, 7, metrics_error="Connection refused")
    held = decide(BURSTY, obs, History())
    assert held.replicas == 7
    assert held.reason == "metrics unavailable (Connection refused): holding 7"
    fallback = ScalingPolicy(max_replicas=20, fallback_replicas=3)
    assert decide(fallback, obs, History()).replicas == 3


def test_latency_target_adds_replicas_when_tasks_wait_too_long() -> None:
    policy = ScalingPolicy(max_replicas=50, target_per_replica=100, target_latency_seconds=10,
                           scale_up=StepPolicy(0, 1000, 100))
    d = decide(policy, Observation(0, 4, ready=50, in_flight=4, oldest_age_seconds=30),
               History())
    assert d.replicas == 12
    assert "oldest 30s > 10s" in d.reason


def test_autoscaling_off_uses_spec_replicas() -> None:
    policy = parse_policy({"replicas": 3})
    assert not policy.enabled
    assert decide(policy, Observation(0, 1, ready=500), History()).replicas == 3


@pytest.mark.parametrize(("spec", "message"), [
    ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas (5) must be <="),
    ({"autoscaling": {"targetPerReplica": 0}}, "spec.autoscaling.targetPerReplica"),
    ({"autoscaling": {"onMetricsError": "zero"}}, "spec.autoscaling.onMetricsError"),
    ({"autoscaling": {"scaleUp": {"maxStepPercent": 0}}},
     "spec.autoscaling.scaleUp.maxStepPercent"),
    ({"replicas": -1}, "spec.replicas"),
])
def test_bad_policy_names_the_field(spec: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse_policy(spec)


policies = st.builds(
    lambda lo, span, target, act, idle, up, down: ScalingPolicy(
        min_replicas=lo, max_replicas=lo + span, target_per_replica=target,
        activation_threshold=act, scale_to_zero_after_seconds=idle, scale_up=up,
        scale_down=down),
    st.integers(0, 5), st.integers(1, 30), st.floats(0.5, 50), st.integers(0, 20),
    st.floats(0, 600),
    st.builds(StepPolicy, st.floats(0, 120), st.floats(1, 400), st.integers(1, 10),
              st.floats(0, 30)),
    st.builds(StepPolicy, st.floats(0, 120), st.floats(1, 400), st.integers(1, 10),
              st.floats(0, 30)),
)
observations = st.lists(st.tuples(st.floats(0.1, 120), st.integers(0, 2000), st.integers(0, 50),
                                  st.booleans()), min_size=1, max_size=30)


@settings(max_examples=300)
@given(policy=policies, steps=observations, start=st.integers(0, 40))
def test_properties_hold_over_any_sequence(policy: ScalingPolicy,
                                           steps: list[tuple[float, int, int, bool]],
                                           start: int) -> None:
    history, current, now = History(), start, 0.0
    timeline = [(-1e9, start)]  # (time, replicas from then on), as the test saw them

    def count_at(t: float) -> int:
        return [n for when, n in timeline if when <= t][-1]

    for dt, ready, in_flight, broken in steps:
        now += dt
        obs = Observation(now, current, ready, in_flight,
                          metrics_error="down" if broken else None)
        d = decide(policy, obs, history)
        lo, hi = policy.min_replicas, policy.max_replicas
        assert lo <= d.replicas <= hi, "always within [min, max]"
        if broken:
            assert d.replicas == min(hi, max(lo, current)), "a metrics error holds the count"
            assert d.history.recommendations == history.recommendations
        else:
            work = ready + in_flight
            if work > 0 and (current > 0 or work > policy.activation_threshold):
                assert d.replicas >= 1, "never zero while work is ready or in flight"
            if lo <= current <= hi:
                a = count_at(now - policy.scale_up.period_seconds)
                b = count_at(now - policy.scale_down.period_seconds)
                up = max(math.ceil(a * policy.scale_up.max_step_percent / 100),
                         policy.scale_up.max_step_replicas)
                down = max(math.ceil(b * policy.scale_down.max_step_percent / 100),
                           policy.scale_down.max_step_replicas)
                assert d.replicas <= max(current, a + up), "scale-up limit per period holds"
                assert d.replicas >= min(current, b - down), "scale-down limit per period"
            if d.replicas < current and lo <= current <= hi:
                window = [r for t, r in d.history.recommendations
                          if now - t <= policy.scale_down.stabilization_seconds]
                assert d.replicas >= min(current, max(window)), "scale-down is stabilized"
        assert "→" in d.reason or "metrics unavailable" in d.reason
        if d.replicas != current:
            timeline.append((now, d.replicas))
        history, current = d.history, d.replicas


def test_work_on_a_pool_at_zero_activates_it_through_a_scale_up_window() -> None:
    # Found by the property test: a recommendation of 0 a second earlier kept a pool at
    # zero for the scale-up window while a task was in flight.
    policy = ScalingPolicy(min_replicas=0, max_replicas=1, target_per_replica=1.0,
                           activation_threshold=0, scale_to_zero_after_seconds=0.0,
                           scale_up=StepPolicy(1.0, 1.0, 1, 0.0),
                           scale_down=StepPolicy(0.0, 1.0, 1, 0.0))
    first = decide(policy, Observation(1.0, 0), History())
    d = decide(policy, Observation(2.0, 0, ready=0, in_flight=1), first.history)
    assert d.replicas == 1
    assert d.reason == "ready=0 inFlight=1 target=1 → 1 (stabilizing, activated, max)"
