"""Rolling TTFB window and hedge delay, pure."""

import pytest

from voicerail.routing.latency import LatencyTracker


def test_default_until_enough_samples():
    tracker = LatencyTracker(min_samples=5, default_s=0.4)
    for _ in range(4):
        tracker.observe(0.1)
    assert tracker.p95() is None and tracker.hedge_delay_s() == 0.4
    tracker.observe(0.1)
    assert tracker.p95() == pytest.approx(0.1)


def test_p95_is_nearest_rank():
    tracker = LatencyTracker(min_samples=1, max_s=100.0)
    for ms in range(1, 101):
        tracker.observe(ms / 1000)
    assert tracker.p95() == pytest.approx(0.095)
    assert tracker.hedge_delay_s() == pytest.approx(0.095)


def test_hedge_delay_is_clamped():
    fast, slow = LatencyTracker(min_samples=1, min_s=0.05), LatencyTracker(min_samples=1, max_s=1.0)
    fast.observe(0.001)
    slow.observe(9.0)
    assert fast.hedge_delay_s() == 0.05 and slow.hedge_delay_s() == 1.0


def test_window_forgets_old_samples():
    tracker = LatencyTracker(max_samples=3, min_samples=3, max_s=10.0)
    for ttfb_s in (5.0, 0.2, 0.2, 0.2):
        tracker.observe(ttfb_s)
    assert len(tracker) == 3 and tracker.p95() == pytest.approx(0.2)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="latency tracker needs"):
        LatencyTracker(min_s=2.0, max_s=1.0)
