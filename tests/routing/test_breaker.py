"""Circuit breaker rules on explicit times, no event loop."""

import pytest

from voicerail.errors import ErrorClass
from voicerail.routing.breaker import BreakerState, CircuitBreaker
from voicerail.testing.clock import FakeClock


def opened(clock: FakeClock) -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=2, window_s=10.0, cooldown_s=5.0)
    breaker.record_failure(ErrorClass.TRANSIENT, clock.monotonic())
    breaker.record_failure(ErrorClass.TIMEOUT, clock.monotonic())
    return breaker


def test_opens_after_threshold_failures_within_the_window():
    breaker = CircuitBreaker(failure_threshold=3, window_s=10.0, cooldown_s=5.0)
    breaker.record_failure(ErrorClass.TRANSIENT, 0.0)
    breaker.record_failure(ErrorClass.PERMANENT, 1.0)
    assert breaker.state(1.0) is BreakerState.CLOSED and breaker.allow(1.0)
    breaker.record_failure(ErrorClass.TIMEOUT, 2.0)
    assert breaker.state(2.0) is BreakerState.OPEN
    assert not breaker.allow(6.9)


def test_failures_older_than_the_window_do_not_count():
    breaker = CircuitBreaker(failure_threshold=2, window_s=10.0, cooldown_s=5.0)
    breaker.record_failure(ErrorClass.TRANSIENT, 0.0)
    breaker.record_failure(ErrorClass.TRANSIENT, 10.5)
    assert breaker.state(10.5) is BreakerState.CLOSED


def test_cancellation_is_never_a_failure():
    breaker = CircuitBreaker(failure_threshold=1, window_s=10.0, cooldown_s=5.0)
    breaker.record_failure(ErrorClass.CANCELLED, 0.0)
    assert breaker.state(0.0) is BreakerState.CLOSED


def test_half_open_admits_one_trial_and_success_closes():
    clock = FakeClock()
    breaker = opened(clock)
    clock.advance(5.0)
    assert breaker.state(clock.monotonic()) is BreakerState.HALF_OPEN
    assert breaker.allow(clock.monotonic())
    assert not breaker.allow(clock.monotonic())
    breaker.record_success(clock.monotonic())
    assert breaker.state(clock.monotonic()) is BreakerState.CLOSED
    assert breaker.allow(clock.monotonic())


def test_half_open_failure_reopens_for_another_cooldown():
    clock = FakeClock()
    breaker = opened(clock)
    clock.advance(5.0)
    assert breaker.allow(clock.monotonic())
    breaker.record_failure(ErrorClass.TRANSIENT, clock.monotonic())
    assert breaker.state(clock.monotonic() + 4.9) is BreakerState.OPEN
    assert breaker.state(clock.monotonic() + 5.0) is BreakerState.HALF_OPEN


def test_cancelled_trial_frees_the_half_open_place():
    breaker = opened(FakeClock())
    assert breaker.allow(5.0)
    breaker.record_failure(ErrorClass.CANCELLED, 5.1)
    assert breaker.allow(5.2)


def test_a_lost_trial_frees_its_place_after_a_cooldown():
    breaker = opened(FakeClock())
    assert breaker.allow(5.0)
    assert not breaker.allow(9.9)
    assert breaker.allow(10.0)


def test_outcomes_reported_while_open_change_nothing():
    breaker = opened(FakeClock())
    breaker.record_success(1.0)
    breaker.record_failure(ErrorClass.TRANSIENT, 1.0)
    assert breaker.state(1.0) is BreakerState.OPEN
    assert breaker.state(5.0) is BreakerState.HALF_OPEN


def test_success_while_closed_keeps_recent_failures():
    breaker = CircuitBreaker(failure_threshold=2, window_s=10.0, cooldown_s=5.0)
    breaker.record_failure(ErrorClass.TRANSIENT, 0.0)
    breaker.record_success(0.5)
    breaker.record_failure(ErrorClass.TRANSIENT, 1.0)
    assert breaker.state(1.0) is BreakerState.OPEN


@pytest.mark.parametrize(("threshold", "window_s", "cooldown_s"), [(0, 1.0, 1.0), (1, 0.0, 1.0)])
def test_rejects_bad_settings(threshold: int, window_s: float, cooldown_s: float):
    with pytest.raises(ValueError, match="breaker needs"):
        CircuitBreaker(threshold, window_s, cooldown_s)
