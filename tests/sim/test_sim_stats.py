"""Percentiles and the millisecond histogram."""

from __future__ import annotations

import pytest

from voicerail.sim.stats import Histogram, percentile, summarize


def test_percentile_interpolates_and_handles_empty_input() -> None:
    """Linear interpolation between ranks; None for no data."""
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile([7], 99) == 7
    assert percentile([], 50) is None
    assert summarize([])["count"] == 0


def test_histogram_quantiles_are_within_a_bucket() -> None:
    """0.1 ms buckets below 20 ms, 1 ms below 1 s; merging adds counts."""
    hist = Histogram()
    hist.extend(k / 10 for k in range(100))  # 0.0 .. 9.9 ms
    other = Histogram()
    other.extend([250.4, 250.6])
    hist.merge(other)
    summary = hist.summary()
    assert summary["count"] == 102
    assert summary["p50"] == pytest.approx(5.0, abs=0.11)
    assert summary["max"] == pytest.approx(250.6)
    assert hist.quantile(1.0) == 250.0
    assert Histogram().summary()["p99"] is None
