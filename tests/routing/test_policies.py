"""Pure routing policies on explicit times: breaker, retry budget, latency, versions."""

from voicerail.errors import ErrorClass
from voicerail.routing.policies import (
    BreakerState,
    CircuitBreaker,
    LatencyTracker,
    RetryBudget,
    VersionTracker,
)


def test_breaker_opens_after_threshold_within_window_then_half_opens():
    breaker = CircuitBreaker(failure_threshold=3, window_s=10.0, cooldown_s=5.0)
    breaker.record_failure(ErrorClass.TRANSIENT, 0.0)
    breaker.record_failure(ErrorClass.TIMEOUT, 1.0)
    assert breaker.state(1.0) is BreakerState.CLOSED
    breaker.record_failure(ErrorClass.PERMANENT, 2.0)
    assert breaker.state(2.0) is BreakerState.OPEN and not breaker.allow(6.9)
    assert breaker.state(7.0) is BreakerState.HALF_OPEN
    assert breaker.allow(7.0) and not breaker.allow(7.1)  # one trial at a time
    breaker.record_success(7.2)
    assert breaker.state(7.2) is BreakerState.CLOSED


def test_failed_trial_reopens_and_old_failures_expire():
    breaker = CircuitBreaker(failure_threshold=2, window_s=10.0, cooldown_s=5.0)
    breaker.record_failure(ErrorClass.TRANSIENT, 0.0)
    breaker.record_failure(ErrorClass.TRANSIENT, 11.0)  # the first one expired
    assert breaker.state(11.0) is BreakerState.CLOSED
    breaker.record_failure(ErrorClass.TRANSIENT, 12.0)
    assert breaker.allow(17.0)
    breaker.record_failure(ErrorClass.TRANSIENT, 17.1)
    assert breaker.state(17.2) is BreakerState.OPEN


def test_cancellation_is_not_a_failure():
    breaker = CircuitBreaker(failure_threshold=1)
    breaker.record_failure(ErrorClass.CANCELLED, 0.0)
    assert breaker.state(0.0) is BreakerState.CLOSED


def test_retry_budget_caps_retries_at_ratio_plus_floor():
    budget = RetryBudget(ratio=0.1, min_retries=2, window_s=10.0)
    for i in range(50):
        budget.record_request(i * 0.1)
    spent = sum(budget.try_spend(5.0) for _ in range(20))
    assert spent == 7  # 2 + 10% of 50
    assert budget.try_spend(16.0)  # the window moved on


def test_hedge_delay_is_p95_clamped_with_a_default():
    tracker = LatencyTracker(min_samples=5, default_s=0.4, min_s=0.1, max_s=1.0)
    assert tracker.hedge_delay_s() == 0.4
    for ttfb in [0.2, 0.21, 0.22, 0.23, 0.5]:
        tracker.observe(ttfb)
    assert tracker.p95() == 0.5 and tracker.hedge_delay_s() == 0.5
    for _ in range(200):  # the window (max_samples) now holds only fast samples
        tracker.observe(0.01)
    assert tracker.hedge_delay_s() == 0.1


def test_version_tracker_reports_changes_only():
    versions = VersionTracker()
    assert versions.observe("tts", "m", "v1") is None
    assert versions.observe("tts", "m", "v1") is None
    assert versions.observe("tts", "m", "v2") == "v1"
    assert versions.observe("tts", "m", None) is None
