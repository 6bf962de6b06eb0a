"""Rollups of the event store, kept on write, so the operations answers cost the
same at any age (issue 16).

Rules:

1. Every measure is counted in a one-minute bucket and, in the same statement
   batch, in its hour and day (``GRAINS``); a window reads whole days, hours and
   minutes from the rollup tables and only its unaligned edges (under a minute
   each) from the events (``events/rollup_reads.py``).
2. The writer thread updates the rollups in the same transaction as the events
   and calls it writes (:class:`RollupBatch`): the answers never see events
   without their rollups, and the call path never waits on either.
3. Time bases are those of ``events/queries.py`` rule 4: call measures (calls by
   agent and outcome, cost, failure causes) belong to the bucket the call
   *started* in; attempt measures to the bucket the attempt *ended* in. A call
   counts once per (stage, provider), in the bucket of its first finished attempt
   with that provider.
4. Per-call facts (``call_attempt_firsts``, ``call_causes``) record what each call
   contributed, so a late event, a re-saved call row or a call whose outcome
   changes moves its contribution exactly: the old one is subtracted, the new
   one added. Events are append-only for the rollups (as for ``call_costs``): an
   event rewritten under the same ``(call_id, seq)`` is counted again until
   :func:`rebuild` runs.
5. Latency histograms have fixed log buckets (``LATENCY_BIN_UPPER_S``: eight per
   doubling from 1 ms, about 9 % wide), so they merge by addition; percentiles
   read from them are the upper bound of the bucket holding the rank.
6. :func:`rebuild` recomputes everything from ``events``, ``calls`` and
   ``call_costs`` in one transaction (``voicerail ops rebuild-rollups``).

All SQL here is portable between SQLite (3.35+) and PostgreSQL (13+), with ``?``
placeholders; only the bucket arithmetic differs (:func:`bucket_sql`).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from voicerail.errors import StoreError
from voicerail.events.model import Event, EventKind

GRAINS = (60, 3600, 86400)
ROLLUPS_VERSION = "1"
ATTEMPTED = str(EventKind.PROVIDER_ATTEMPTED)
FAILED_OVER = str(EventKind.PROVIDER_FAILED_OVER)
PROTOCOL_ERROR = str(EventKind.PROTOCOL_ERROR)
_RECOVERING_KINDS = {ATTEMPTED, str(EventKind.TRANSCRIPT_FINAL)}

#: Rule 5: upper bounds (seconds, inclusive) of the latency buckets; the last is open.
LATENCY_BIN_UPPER_S: tuple[float, ...] = (
    *(0.001 * 2.0 ** (k / 8) for k in range(8 * 17 + 1)),
    math.inf,
)

#: Rollup tables: name -> (dimension columns, measure columns). Every table also
#: has ``grain_s`` and ``bucket_s`` (Unix seconds, a multiple of the grain).
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "rollup_calls": (("agent", "outcome"), ("calls",)),
    "rollup_costs": (("provider",), ("cost_usd", "priced_attempts")),
    "rollup_attempts": (
        ("stage", "provider", "error_class"),
        ("attempts", "failures", "first_attempts", "first_failures", "failovers", "calls"),
    ),
    "rollup_latency": (("stage", "provider", "bin"), ("attempts",)),
    "rollup_causes": (
        ("stage", "provider", "error_class", "kind"),
        ("calls", "fallback_tried_calls"),
    ),
    "rollup_events": (("kind",), ("events",)),
}
_REAL_MEASURES = {"cost_usd"}
_INT_DIMS = {"bin"}

FACT_TABLES = ("call_attempt_firsts", "call_causes")
#: Every table the rollups need; a database missing one is rebuilt when opened.
ROLLUP_TABLES = frozenset((*TABLES, *FACT_TABLES, "latency_bins"))


def schema() -> list[str]:
    """DDL of the rollup and fact tables and their indexes (both dialects)."""
    statements = []
    for table, (dims, measures) in TABLES.items():
        columns = ["grain_s BIGINT NOT NULL", "bucket_s BIGINT NOT NULL"]
        columns += [f"{d} {'BIGINT' if d in _INT_DIMS else 'TEXT'} NOT NULL" for d in dims]
        columns += [
            f"{m} {'DOUBLE PRECISION' if m in _REAL_MEASURES else 'BIGINT'} NOT NULL"
            for m in measures
        ]
        key = ", ".join(("grain_s", "bucket_s", *dims))
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(columns)}, PRIMARY KEY ({key}))"
        )
    statements += [
        "CREATE TABLE IF NOT EXISTS call_attempt_firsts (call_id TEXT NOT NULL,"
        " stage TEXT NOT NULL, provider TEXT NOT NULL, first_at DOUBLE PRECISION NOT NULL,"
        " PRIMARY KEY (call_id, stage, provider))",
        "CREATE INDEX IF NOT EXISTS call_attempt_firsts_at ON call_attempt_firsts(first_at)",
        "CREATE TABLE IF NOT EXISTS call_causes (call_id TEXT PRIMARY KEY,"
        " started_at DOUBLE PRECISION NOT NULL, stage TEXT NOT NULL, provider TEXT NOT NULL,"
        " error_class TEXT NOT NULL, kind TEXT NOT NULL, fallback_tried INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS call_causes_started ON call_causes(started_at)",
        "CREATE INDEX IF NOT EXISTS call_causes_cause ON call_causes"
        "(stage, provider, error_class, kind, started_at, call_id)",
        "CREATE TABLE IF NOT EXISTS latency_bins (bin BIGINT PRIMARY KEY,"
        " upper_s DOUBLE PRECISION NOT NULL)",
    ]
    return statements


def latency_bin(latency_s: float) -> int:
    """Rule 5: the bucket of ``latency_s`` (first upper bound at or above it)."""
    return bisect.bisect_left(LATENCY_BIN_UPPER_S, latency_s)


def bucket_of(at_s: float, grain_s: int = 60) -> int:
    """The start (Unix seconds) of the ``grain_s`` bucket holding ``at_s``."""
    return math.floor(at_s / grain_s) * grain_s


def bucket_sql(dialect: str, column: str, grain_s: int) -> str:
    """SQL for :func:`bucket_of` of ``column`` (a trusted identifier)."""
    if dialect == "postgresql":
        return f"(floor({column} / {grain_s})::bigint * {grain_s})"
    # SQLite's CAST truncates toward zero: floor for the positive Unix times stored.
    return f"(CAST({column} / {grain_s} AS INTEGER) * {grain_s})"


def json_number_sql(dialect: str, column: str, key: str) -> str:
    """SQL for the number at ``column.key`` (NULL when absent or not a number).

    ``key`` and ``column`` are trusted identifiers, never user input.
    """
    if dialect == "postgresql":
        return (
            f"(CASE WHEN jsonb_typeof({column}->'{key}') = 'number'"
            f" THEN ({column}->>'{key}')::float8 END)"
        )
    return (
        f"(CASE WHEN json_type({column}, '$.{key}') IN ('integer', 'real')"
        f" THEN json_extract({column}, '$.{key}') END)"
    )


def rollups_ready(db: Any) -> bool:
    """Whether ``db`` (a ``SQLReader``) has built rollups of this version: stores
    build them when opened; a read-only reader on an older database has none."""
    try:
        rows = db.fetch("SELECT value FROM meta WHERE key = 'rollups_version'")
    except StoreError:  # no meta table: not an event store of this version
        return False
    return list(rows) == [(ROLLUPS_VERSION,)]


def key_text(value: str | None) -> str:
    """Dimension value as stored: ``None`` becomes ``''`` (keys are NOT NULL)."""
    return "" if value is None else str(value)


def key_value(text: str) -> str | None:
    """The inverse of :func:`key_text`."""
    return text or None


def first_failure(events: Sequence[Any]) -> int | None:
    """Index of the first unrecovered failing event, or None (``ops/reports.py`` rule 1).

    ``events`` are one call's events in order, each with ``kind``, ``stage`` and
    ``outcome`` attributes: a failure (outcome ``error`` or a protocol error) is
    recovered by a later ``ok`` attempt or final transcript in the same stage.
    """
    recovered_stages: set[str] = set()
    recovered = [False] * len(events)
    for index in range(len(events) - 1, -1, -1):
        e = events[index]
        stage = str(e.stage) if e.stage else None
        recovered[index] = stage is not None and stage in recovered_stages
        if e.outcome == "ok" and str(e.kind) in _RECOVERING_KINDS and stage is not None:
            recovered_stages.add(stage)
    for index, e in enumerate(events):
        failing = e.outcome == "error" or str(e.kind) == PROTOCOL_ERROR
        if failing and not recovered[index]:
            return index
    return None


@dataclass(frozen=True)
class TrailEvent:
    """One outcome-bearing event of a failed call (``ok``/``error`` or a protocol error)."""

    seq: int
    kind: str
    stage: str | None
    provider: str | None
    error_class: str | None
    outcome: str | None


#: SQL (one parameter: the protocol error kind) selecting trail events' columns.
TRAIL_COLUMNS = "seq, kind, stage, provider, error_class, outcome"
TRAIL_FILTER = "(outcome IN ('ok', 'error') OR kind = ?)"

CauseKey = tuple[str, str, str, str]


def cause_of(trail: Sequence[TrailEvent]) -> tuple[CauseKey, bool]:
    """A failed call's cause (stage, provider, error class, kind; ``''`` for none) and
    whether another provider of the cause's stage was tried (``ops/reports.py`` rule 2)."""
    index = first_failure(trail)
    if index is None:
        return ("", "", "", ""), False
    first = trail[index]
    key = (key_text(first.stage), key_text(first.provider), key_text(first.error_class), first.kind)
    fallback = any(
        e.stage == first.stage and e.provider not in (None, first.provider) for e in trail
    )
    return key, fallback


def attempt_costs(events: Sequence[Event]) -> list[tuple[str, str, float, int]]:
    """Rule 4: (call id, provider, cost, priced attempts) summed over ``events``, in
    first-seen order; only ``ProviderAttempted`` events with a numeric ``cost_usd``."""
    totals: dict[tuple[str, str], list[float]] = {}
    for e in events:
        cost = e.data.get("cost_usd")
        if e.kind != EventKind.PROVIDER_ATTEMPTED or e.provider is None:
            continue
        if isinstance(cost, bool) or not isinstance(cost, int | float) or not math.isfinite(cost):
            continue
        total = totals.setdefault((e.call_id, e.provider), [0.0, 0])
        total[0] += float(cost)
        total[1] += 1
    return [(c, p, t[0], int(t[1])) for (c, p), t in totals.items()]


class Tx(Protocol):
    """The writer's open transaction, with ``?`` placeholders."""

    def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query."""
        ...

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for each row."""
        ...


def in_chunks(tx: Tx, sql: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """``sql`` with ``{marks}`` for an ``IN`` list, run over ``ids`` in chunks."""
    rows: list[tuple[Any, ...]] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        rows += tx.fetch(sql.format(marks=",".join("?" * len(chunk))), chunk)
    return rows


class Deltas:
    """Measure changes by (table, minute bucket, dimensions), expanded to every grain."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, int, tuple[Any, ...]], list[float]] = {}

    def add(self, table: str, at_s: float, dims: tuple[Any, ...], values: Sequence[float]) -> None:
        """Add ``values`` (in the table's measure order) at the minute of ``at_s``."""
        self.add_at_minute(table, bucket_of(at_s), dims, values)

    def add_at_minute(
        self, table: str, minute_s: int, dims: tuple[Any, ...], values: Sequence[float]
    ) -> None:
        """Add ``values`` at the minute starting at ``minute_s``."""
        key = (table, minute_s, dims)
        row = self._rows.get(key)
        if row is None:
            self._rows[key] = list(values)
        else:
            for i, v in enumerate(values):
                row[i] += v

    def write(self, tx: Tx) -> None:
        """Upsert every grain's rows, in key order (concurrent writers never deadlock)."""
        by_table: dict[str, dict[tuple[Any, ...], list[float]]] = defaultdict(dict)
        for (table, minute, dims), values in self._rows.items():
            if not any(values):
                continue
            for grain in GRAINS:
                key = (grain, minute - minute % grain, *dims)
                row = by_table[table].setdefault(key, [0.0] * len(values))
                for i, v in enumerate(values):
                    row[i] += v
        for table, rows in sorted(by_table.items()):
            dims, measures = TABLES[table]
            columns = ("grain_s", "bucket_s", *dims, *measures)
            marks = ",".join("?" * len(columns))
            sets = ", ".join(f"{m} = {table}.{m} + excluded.{m}" for m in measures)
            sql = (
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
                f" ON CONFLICT (grain_s, bucket_s, {', '.join(dims)}) DO UPDATE SET {sets}"
            )
            params = [
                (
                    *key,
                    *(
                        v if m in _REAL_MEASURES else round(v)
                        for m, v in zip(measures, row, strict=True)
                    ),
                )
                for key, row in sorted(rows.items())
            ]
            tx.run_many(sql, params)
