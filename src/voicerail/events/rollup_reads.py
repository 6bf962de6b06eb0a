"""The operations answers' building blocks read from the rollups (issue 16).

Each function has the signature and result of its scan in ``events/queries.py``
(the reference the tests compare it with) and reads:

1. whole days, hours and minutes of the window from the rollup tables
   (:func:`cover`: at most two pieces per grain, each an index range of the
   table's primary key), and
2. the unaligned edges of the window (under a minute each, the unfinished
   current minute among them) from the events, calls and per-call fact tables,
   through their time indexes.

So an answer's cost follows the number of buckets and groups, not the events in
the window or in history.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from voicerail.events import queries as q
from voicerail.events.rollups import ATTEMPTED, TABLES
from voicerail.events.store import SQLReader

Piece = tuple[int, int, int]  # grain_s, first bucket_s, end bucket_s (exclusive)


def cover(start_s: float, end_s: float) -> tuple[list[tuple[float, float]], list[Piece]]:
    """Split ``[start_s, end_s)`` into raw edges and aligned rollup pieces.

    Returns:
        (edges, pieces): edges are ``(start_s, end_s)`` ranges shorter than a minute
        to read from raw rows; pieces are ``(grain_s, from_s, to_s)`` ranges of
        whole buckets, largest grains in the middle.
    """
    low = math.ceil(start_s / 60) * 60
    high = math.floor(end_s / 60) * 60
    if low >= high:
        return ([(start_s, end_s)] if start_s < end_s else []), []
    edges = [(e0, e1) for e0, e1 in ((start_s, float(low)), (float(high), end_s)) if e0 < e1]
    return edges, _pieces(low, high, (86400, 3600, 60))


def _pieces(low: int, high: int, grains: Sequence[int]) -> list[Piece]:
    if low >= high:
        return []
    grain = grains[0]
    a, b = -(-low // grain) * grain, high // grain * grain
    if a >= b:
        return _pieces(low, high, grains[1:])
    return [*_pieces(low, a, grains[1:]), (grain, a, b), *_pieces(b, high, grains[1:])]


def _sum(
    db: SQLReader, table: str, pieces: Sequence[Piece], dims: Sequence[str], where: str = ""
) -> dict[tuple[Any, ...], list[float]]:
    """Measures of ``table`` summed over ``pieces`` by ``dims``."""
    if not pieces:
        return {}
    measures = TABLES[table][1]
    ranges = " OR ".join("(grain_s = ? AND bucket_s >= ? AND bucket_s < ?)" for _ in pieces)
    keys = ", ".join(dims)
    sums = ", ".join(f"SUM({m})" for m in measures)
    select = f"SELECT {keys + ', ' if keys else ''}{sums} FROM {table} WHERE ({ranges}){where}"
    rows = db.fetch(select + (f" GROUP BY {keys}" if keys else ""), [v for p in pieces for v in p])
    n = len(dims)
    return {tuple(r[:n]): [float(v or 0) for v in r[n:]] for r in rows}


def call_counts(db: SQLReader, start_s: float, end_s: float) -> q.CallCounts:
    """As :func:`queries.call_counts`."""
    edges, pieces = cover(start_s, end_s)
    by_outcome: dict[str, float] = defaultdict(float)
    for (outcome,), (calls,) in _sum(db, "rollup_calls", pieces, ["outcome"]).items():
        by_outcome[outcome] += calls
    total = sum(by_outcome.values())
    failed, completed = by_outcome["failed"], by_outcome["completed"]
    for e0, e1 in edges:
        edge = q.call_counts(db, e0, e1)
        total, failed = total + edge.calls, failed + edge.failed
        completed += edge.completed
    return q.CallCounts(int(total), int(failed), int(completed))


def refused_count(db: SQLReader, start_s: float, end_s: float) -> int:
    """As :func:`queries.refused_count`."""
    edges, pieces = cover(start_s, end_s)
    rows = _sum(db, "rollup_events", pieces, [], " AND kind = 'CallRefused'")
    total = sum(v[0] for v in rows.values())
    return int(total) + sum(q.refused_count(db, e0, e1) for e0, e1 in edges)


def attempt_counts(db: SQLReader, start_s: float, end_s: float) -> list[q.AttemptCounts]:
    """As :func:`queries.attempt_counts`."""
    edges, pieces = cover(start_s, end_s)
    totals: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0] * 5)
    for (stage, provider), m in _sum(db, "rollup_attempts", pieces, ["stage", "provider"]).items():
        row = totals[(stage, provider)]
        for i, v in enumerate((m[0], m[1], m[2], m[3], m[5])):
            row[i] += v
    first = f"{q.json_number(db, 'data', 'attempt')} = 1"
    for e0, e1 in edges:
        for r in db.fetch(
            "SELECT stage, provider, COUNT(*),"
            " SUM(CASE WHEN outcome = 'error' THEN 1 ELSE 0 END),"
            f" SUM(CASE WHEN {first} THEN 1 ELSE 0 END),"
            f" SUM(CASE WHEN {first} AND outcome = 'error' THEN 1 ELSE 0 END)"
            " FROM events WHERE kind = ? AND at_wall >= ? AND at_wall < ?"
            " AND outcome IN ('ok', 'error') AND stage IS NOT NULL AND provider IS NOT NULL"
            " GROUP BY stage, provider",
            (ATTEMPTED, e0, e1),
        ):
            row = totals[(r[0], r[1])]
            for i in range(4):
                row[i] += float(r[2 + i] or 0)
        for stage, provider, calls in db.fetch(
            "SELECT stage, provider, COUNT(*) FROM call_attempt_firsts"
            " WHERE first_at >= ? AND first_at < ? GROUP BY stage, provider",
            (e0, e1),
        ):
            totals[(stage, provider)][4] += float(calls)
    counts = [
        q.AttemptCounts(stage, provider, *(int(v) for v in (m[0], m[1], m[2], m[3], m[4])))
        for (stage, provider), m in totals.items()
        if m[0] > 0
    ]
    return sorted(counts, key=lambda c: (c.stage, c.provider))


def provider_costs(db: SQLReader, start_s: float, end_s: float) -> list[q.ProviderCost]:
    """As :func:`queries.provider_costs`."""
    edges, pieces = cover(start_s, end_s)
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for (provider,), (cost, priced) in _sum(db, "rollup_costs", pieces, ["provider"]).items():
        totals[provider][0] += cost
        totals[provider][1] += priced
    for e0, e1 in edges:
        for p in q.provider_costs(db, e0, e1):
            totals[p.provider][0] += p.cost_usd
            totals[p.provider][1] += p.priced_attempts
    costs = [q.ProviderCost(p, round(t[0], 9), int(t[1])) for p, t in totals.items() if t[1] > 0]
    return sorted(costs, key=lambda c: c.provider)


_CAUSE = ("stage", "provider", "error_class", "kind")


def cause_counts(db: SQLReader, start_s: float, end_s: float) -> list[q.CauseCount]:
    """As :func:`queries.cause_counts`."""
    edges, pieces = cover(start_s, end_s)
    totals: dict[tuple[Any, ...], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for key, (calls, fallback) in _sum(db, "rollup_causes", pieces, _CAUSE).items():
        totals[key][0] += calls
        totals[key][1] += fallback
    for e0, e1 in edges:
        for row in db.fetch(
            "SELECT stage, provider, error_class, kind, fallback_tried FROM call_causes"
            " WHERE started_at >= ? AND started_at < ?",
            (e0, e1),
        ):
            totals[tuple(row[:4])][0] += 1
            totals[tuple(row[:4])][1] += float(row[4])
    keys = [key for key, (calls, _) in sorted(totals.items()) if calls > 0]
    examples = _examples(db, keys, start_s, end_s)
    return [
        q.cause_count(key, int(totals[key][0]), int(totals[key][1]), examples[i])
        for i, key in enumerate(keys)
    ]


def _examples(
    db: SQLReader, keys: Sequence[tuple[Any, ...]], start_s: float, end_s: float
) -> list[tuple[str, ...]]:
    """The newest three calls of each cause in the window, in one round trip: one
    index-bounded ``LIMIT 3`` per cause, joined by ``UNION ALL``."""
    if not keys:
        return []
    parts, args = [], []
    for i, key in enumerate(keys):
        parts.append(
            f"SELECT * FROM (SELECT {i} AS k, call_id, started_at FROM call_causes"
            " WHERE stage = ? AND provider = ? AND error_class = ? AND kind = ?"
            " AND started_at >= ? AND started_at < ?"
            " ORDER BY started_at DESC, call_id DESC LIMIT 3) AS c"
        )
        args += [*key, start_s, end_s]
    found: list[list[tuple[float, str]]] = [[] for _ in keys]
    for k, call_id, started_at in db.fetch(" UNION ALL ".join(parts), args):
        found[int(k)].append((float(started_at), call_id))
    return [tuple(c for _, c in sorted(f, reverse=True)) for f in found]


def latency_histograms(
    db: SQLReader, start_s: float, end_s: float
) -> dict[tuple[str, str], dict[int, int]]:
    """As :func:`queries.latency_histograms`."""
    edges, pieces = cover(start_s, end_s)
    hists: dict[tuple[str, str], dict[int, int]] = {}
    rows = _sum(db, "rollup_latency", pieces, ["stage", "provider", "bin"])
    for (stage, provider, index), (count,) in rows.items():
        if count > 0:
            hists.setdefault((stage, provider), {})[int(index)] = int(count)
    for e0, e1 in edges:
        for key, hist in q.latency_histograms(db, e0, e1).items():
            into = hists.setdefault(key, {})
            for index, count in hist.items():
                into[index] = into.get(index, 0) + count
    return hists
