"""Retry budget and attempt deadlines, pure arithmetic."""

import pytest

from voicerail.routing.budget import RetryBudget, attempt_deadline_s


def test_floor_allows_retries_with_no_requests():
    budget = RetryBudget(ratio=0.1, min_retries_per_window=3, window_s=10.0)
    assert [budget.try_spend(0.0) for _ in range(4)] == [True, True, True, False]


def test_retries_are_capped_at_ten_percent_of_requests_plus_floor():
    budget = RetryBudget(ratio=0.1, min_retries_per_window=3, window_s=10.0)
    for _ in range(100):
        budget.record_request(1.0)
    granted = sum(budget.try_spend(1.0) for _ in range(50))
    assert granted == 13
    assert budget.available(1.0) == 0


def test_budget_refills_when_the_window_passes():
    budget = RetryBudget(ratio=0.0, min_retries_per_window=1, window_s=10.0)
    assert budget.try_spend(0.0)
    assert not budget.try_spend(9.9)
    assert budget.try_spend(10.0)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="retry budget needs"):
        RetryBudget(ratio=-1)


@pytest.mark.parametrize(
    ("remaining_s", "attempts_left", "expected_s"),
    [
        (None, 3, 1.0),  # no turn budget: the chain's timeout
        (5.0, 1, 1.0),  # plenty left: capped
        (0.8, 1, 0.8),  # the last attempt gets all that is left
        (0.8, 2, 0.55),  # leave the next attempt its floor
        (0.3, 3, 0.25),  # over budget: never below the floor
        (-1.0, 1, 0.25),
    ],
)
def test_attempt_deadline(remaining_s: float | None, attempts_left: int, expected_s: float):
    assert attempt_deadline_s(remaining_s, attempts_left, 0.25, 1.0) == pytest.approx(expected_s)


def test_attempt_deadline_rejects_bad_arguments():
    with pytest.raises(ValueError, match="attempts_left"):
        attempt_deadline_s(1.0, 0, 0.1, 1.0)
    with pytest.raises(ValueError, match="above cap"):
        attempt_deadline_s(1.0, 1, 2.0, 1.0)
