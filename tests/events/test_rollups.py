"""The rollup arithmetic without a database: window cover, latency buckets, causes."""

from __future__ import annotations

import itertools
import math

import pytest

from voicerail.events.queries import histogram_percentile
from voicerail.events.rollup_reads import cover
from voicerail.events.rollups import (
    LATENCY_BIN_UPPER_S,
    Deltas,
    TrailEvent,
    bucket_of,
    cause_of,
    latency_bin,
)

MIDNIGHT = 1_800_000_000 - 1_800_000_000 % 86400


def test_cover_reads_whole_days_hours_minutes_and_raw_edges():
    start, end = MIDNIGHT - 3600 - 90.5, MIDNIGHT + 86400 + 3600 + 125.25
    edges, pieces = cover(start, end)
    assert edges == [(start, MIDNIGHT - 3660.0), (MIDNIGHT + 90120.0, end)]
    assert pieces == [
        (60, MIDNIGHT - 3660, MIDNIGHT - 3600),
        (3600, MIDNIGHT - 3600, MIDNIGHT),
        (86400, MIDNIGHT, MIDNIGHT + 86400),
        (3600, MIDNIGHT + 86400, MIDNIGHT + 90000),
        (60, MIDNIGHT + 90000, MIDNIGHT + 90120),
    ]


def test_cover_pieces_tile_the_window_exactly():
    for start, end in [(100.0, 100.0), (61.0, 119.0), (0.0, 60.0), (59.9, 3600.1 * 30)]:
        edges, pieces = cover(start, end)
        spans = sorted([*edges, *((float(a), float(b)) for _, a, b in pieces)])
        covered = sum(b - a for a, b in spans)
        assert covered == pytest.approx(end - start)
        for (_, b), (a, _) in itertools.pairwise(spans):
            assert a == b
        for grain, a, b in pieces:
            assert a % grain == 0 and b % grain == 0 and a < b


def test_cover_of_a_window_within_one_minute_is_one_raw_edge():
    assert cover(MIDNIGHT + 1.5, MIDNIGHT + 59.0) == ([(MIDNIGHT + 1.5, MIDNIGHT + 59.0)], [])


def test_latency_bins_are_log_spaced_and_the_last_is_open():
    assert latency_bin(0.0005) == 0 and latency_bin(0.001) == 0
    assert latency_bin(0.00105) == 1 and latency_bin(0.0011) == 2
    assert (
        LATENCY_BIN_UPPER_S[latency_bin(0.25)] >= 0.25 > LATENCY_BIN_UPPER_S[latency_bin(0.25) - 1]
    )
    assert latency_bin(1e6) == len(LATENCY_BIN_UPPER_S) - 1
    assert LATENCY_BIN_UPPER_S[8] == pytest.approx(0.002)


def test_histogram_percentile_is_the_bucket_bound_of_the_nearest_rank():
    hist = {latency_bin(0.1): 9, latency_bin(2.0): 1}
    assert histogram_percentile(hist, 0.5) == LATENCY_BIN_UPPER_S[latency_bin(0.1)]
    assert histogram_percentile(hist, 0.95) == LATENCY_BIN_UPPER_S[latency_bin(2.0)]
    assert histogram_percentile({}, 0.5) is None
    assert math.isfinite(histogram_percentile({len(LATENCY_BIN_UPPER_S) - 1: 1}, 0.5))


def test_bucket_of_floors_to_the_grain():
    assert bucket_of(MIDNIGHT + 59.999) == MIDNIGHT
    assert bucket_of(MIDNIGHT - 0.001, 86400) == MIDNIGHT - 86400


def trail(*rows: tuple) -> list[TrailEvent]:
    return [TrailEvent(i, *row) for i, row in enumerate(rows)]


def test_cause_is_the_first_unrecovered_failure_and_notes_a_tried_fallback():
    events = trail(
        ("ProviderAttempted", "stt", "deepgram", "timeout", "error"),
        ("ProviderAttempted", "stt", "azure", None, "ok"),  # recovers the STT timeout
        ("ProviderAttempted", "tts", "elevenlabs", "timeout", "error"),
        ("ProviderAttempted", "tts", "piper", "transient", "error"),
    )
    assert cause_of(events) == (("tts", "elevenlabs", "timeout", "ProviderAttempted"), True)
    assert cause_of(events[:2]) == (("", "", "", ""), False)


def test_deltas_fold_minutes_into_hours_and_days_and_skip_zero_changes():
    class Recorder:
        def __init__(self):
            self.rows = []

        def fetch(self, sql, args=()):
            raise AssertionError("no reads")

        def run_many(self, sql, rows):
            self.rows += rows

    deltas = Deltas()
    deltas.add("rollup_events", MIDNIGHT + 61, ("CallEnded",), (1,))
    deltas.add("rollup_events", MIDNIGHT + 3599, ("CallEnded",), (2,))
    deltas.add("rollup_events", MIDNIGHT + 7, ("BargeIn",), (1,))
    deltas.add("rollup_events", MIDNIGHT + 8, ("BargeIn",), (-1,))
    tx = Recorder()
    deltas.write(tx)
    assert sorted(tx.rows) == [
        (60, MIDNIGHT + 60, "CallEnded", 1),
        (60, MIDNIGHT + 3540, "CallEnded", 2),
        (3600, MIDNIGHT, "CallEnded", 3),
        (86400, MIDNIGHT, "CallEnded", 3),
    ]
