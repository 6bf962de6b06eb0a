"""The PostgreSQL event store: the same interface, tables and queries as SQLite.

(Just over 500 lines: the schema, the partition upkeep and the store class
share one connection discipline; the next split moves partitions and
``drop_before`` into ``events/pg_partitions.py``.)

Rules (those of ``events/store.py``, plus):

1. Writes go through :class:`~voicerail.events.store.WriteBehind`: ``append``
   never waits for the server; a writer thread commits batches on its own
   connection. Reads use a second connection in autocommit mode, so a reader
   never holds a transaction open.
2. Table and column names are those of the SQLite schema, so that every query in
   ``events/queries.py`` runs on both; ``data`` and ``pii`` are ``jsonb``.
3. A batch the server refuses is retried row by row and only the rows it still
   refuses are dropped (and logged); the call path never sees the error.
4. ``seq`` continues from the database for calls that are still open (a call
   resumed by another worker); a call's events are written by one process.
5. ``events`` is partitioned by ``at_wall`` (declarative range partitions of
   ``partition_s``, a week by default; a BRIN index on ``at_wall`` in each). The
   writer creates the partitions a batch needs, in a short transaction of its
   own, before the batch; retention drops whole partitions
   (:meth:`PostgresEventStore.drop_before`). A database made before partitioning
   keeps its plain ``events`` table (``drop_before`` then deletes rows).
6. Rollups (``events/rollups.py``) live in their own tables and are updated in
   the batch's transaction; upserts go in key order, so workers writing the same
   minute wait on each other's row locks briefly and never deadlock. A batch the
   server refuses (rule 3) updates them in transactions of its own.

Uses psycopg 3 (https://www.psycopg.org/psycopg3/docs/, 3.2).
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from voicerail.errors import StoreError
from voicerail.events.model import SCHEMA_VERSION, Event, EventKind
from voicerail.events.rollup_writer import RollupBatch, rebuild
from voicerail.events.rollups import ROLLUP_TABLES, ROLLUPS_VERSION, schema
from voicerail.events.store import (
    COSTS_VERSION,
    INDEXES,
    UPSERT_COST,
    CallRecord,
    WriteBehind,
    attempt_costs,
    call_from_row,
    calls_query,
    continue_call_seq,
    event_from_row,
)
from voicerail.extras import extra_missing

try:
    import psycopg
except ImportError as exc:  # the core install: one line that says what to install
    raise extra_missing("postgres", "the PostgreSQL event store", ["psycopg"]) from exc

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS calls (
  call_id TEXT PRIMARY KEY, agent TEXT NOT NULL, started_at DOUBLE PRECISION NOT NULL,
  ended_at DOUBLE PRECISION, outcome TEXT, error TEXT, call_sid TEXT, stream_sid TEXT,
  data JSONB NOT NULL DEFAULT '{}'
)""",
    # Rule 5: the primary key of a partitioned table holds the partition key.
    """CREATE TABLE IF NOT EXISTS events (
  call_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
  at_wall DOUBLE PRECISION NOT NULL, at_mono DOUBLE PRECISION NOT NULL, stage TEXT,
  provider TEXT, model TEXT, latency_s DOUBLE PRECISION, outcome TEXT, error_class TEXT,
  data JSONB NOT NULL DEFAULT '{}', pii JSONB NOT NULL DEFAULT '{}',
  PRIMARY KEY (call_id, seq, at_wall)
) PARTITION BY RANGE (at_wall)""",
    """CREATE TABLE IF NOT EXISTS call_costs (
  call_id TEXT NOT NULL, provider TEXT NOT NULL, cost_usd DOUBLE PRECISION NOT NULL,
  priced_attempts INTEGER NOT NULL, PRIMARY KEY (call_id, provider)
)""",
)

_BACKFILL = """INSERT INTO call_costs
SELECT call_id, provider, SUM((data->>'cost_usd')::float8), COUNT(*) FROM events
WHERE kind = 'ProviderAttempted' AND provider IS NOT NULL
  AND jsonb_typeof(data->'cost_usd') = 'number'
GROUP BY call_id, provider"""

# Rule 5: BRIN suits a column that grows with insertion order, like at_wall.
_PG_INDEXES = ("CREATE INDEX IF NOT EXISTS events_at_brin ON events USING brin (at_wall)",)
_BOUNDS = re.compile(r"FROM \('?([-0-9.e+]+)'?\) TO \('?([-0-9.e+]+)'?\)")

# Serializes schema creation between workers starting together (any constant).
_SCHEMA_LOCK_ID = 7_301_104

_INSERT_CALL = """INSERT INTO calls VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb)
ON CONFLICT (call_id) DO UPDATE SET agent = EXCLUDED.agent, started_at = EXCLUDED.started_at,
  ended_at = EXCLUDED.ended_at, outcome = EXCLUDED.outcome, error = EXCLUDED.error,
  call_sid = EXCLUDED.call_sid, stream_sid = EXCLUDED.stream_sid, data = EXCLUDED.data"""

_INSERT_EVENT = """INSERT INTO events VALUES
  (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb,%s::jsonb)
ON CONFLICT ({key}) DO UPDATE SET kind = EXCLUDED.kind, at_wall = EXCLUDED.at_wall,
  at_mono = EXCLUDED.at_mono, stage = EXCLUDED.stage, provider = EXCLUDED.provider,
  model = EXCLUDED.model, latency_s = EXCLUDED.latency_s, outcome = EXCLUDED.outcome,
  error_class = EXCLUDED.error_class, data = EXCLUDED.data, pii = EXCLUDED.pii"""


class PostgresEventStore:
    """:class:`~voicerail.events.store.EventStore` and ``SQLReader`` on PostgreSQL.

    Args:
        url: a libpq connection string or URL (``postgresql://user@host:5432/db``).
        flush_interval_s: longest an appended event waits before commit.
        batch_max: events that trigger an early commit.
        rollups: keep the rollups on write (``store.py`` rule 6).
        partition_s: the span of one ``events`` partition (rule 5), for new databases.

    Raises:
        StoreError: the server cannot be reached or the schema cannot be created.
    """

    dialect = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        flush_interval_s: float = 0.05,
        batch_max: int = 500,
        rollups: bool = True,
        partition_s: float = 7 * 86400.0,
    ) -> None:
        self.url = url
        self._rollups = rollups
        self._partition_s = partition_s
        self._partitions: set[float] = set()
        self._partitioned = False
        #: Whether opening found the rollups missing or stale and rebuilt them.
        self.rebuilt_on_open = False
        try:
            self._write_db = psycopg.connect(url)
            self._read_db = psycopg.connect(url, autocommit=True)
            next_seq = self._prepare()
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the postgresql event store: {exc}") from exc
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._batches = WriteBehind(
            self._write_batch,
            next_seq=next_seq,
            flush_interval_s=flush_interval_s,
            batch_max=batch_max,
        )

    def _prepare(self) -> dict[str, int]:
        with self._write_db.transaction():
            self._write_db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
            tables = {
                r[0]
                for r in self._write_db.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                )
            }
            for statement in (*_SCHEMA, *INDEXES, *_PG_INDEXES, *schema()):
                self._write_db.execute(statement)
            self._partitioned = bool(
                self._write_db.execute(
                    "SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'events'::regclass"
                ).fetchall()
            )
            self._partitions = {lower for _, lower, _ in self._partition_bounds()}
            self._set_meta("schema_version", str(SCHEMA_VERSION))
            costs = self._write_db.execute(
                "SELECT value FROM meta WHERE key = 'costs_version'"
            ).fetchall()
            if costs != [(COSTS_VERSION,)]:
                self._backfill_costs()
            built = self._write_db.execute(
                "SELECT value FROM meta WHERE key = 'rollups_version'"
            ).fetchall()
            if not self._rollups:
                self._write_db.execute("DELETE FROM meta WHERE key = 'rollups_version'")
            elif built != [(ROLLUPS_VERSION,)] or not tables >= ROLLUP_TABLES:
                with self._write_db.cursor() as cur:
                    rebuild(_PgTx(cur), self.dialect)
                self.rebuilt_on_open = True
            rows = self._write_db.execute(
                "SELECT e.call_id, MAX(e.seq) FROM events e JOIN calls c ON c.call_id = e.call_id"
                " WHERE c.ended_at IS NULL GROUP BY e.call_id"
            ).fetchall()
        return {call_id: max_seq + 1 for call_id, max_seq in rows}

    def _set_meta(self, key: str, value: str) -> None:
        self._write_db.execute(
            "INSERT INTO meta VALUES (%s, %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (key, value),
        )

    def _backfill_costs(self) -> None:
        """Rule 4 of ``store.py``: rebuild the cost rollup (inside a transaction)."""
        self._write_db.execute("DELETE FROM call_costs")
        self._write_db.execute(_BACKFILL)
        self._set_meta("costs_version", COSTS_VERSION)

    def rebuild_rollups(self) -> None:
        """Recompute every rollup from the events (``voicerail ops rebuild-rollups``).

        Raises:
            StoreError: the server refused the rebuild.
        """
        self.flush()
        try:
            with self._write_lock, self._write_db.transaction(), self._write_db.cursor() as cur:
                rebuild(_PgTx(cur), self.dialect)
        except psycopg.Error as exc:
            raise StoreError(f"rollup rebuild failed: {exc}") from exc
        self._rollups = True

    # -- partitions (rule 5) ---------------------------------------------------

    def _partition_bounds(self) -> list[tuple[str, float, float]]:
        """(name, lower, upper) of each ``events`` partition, oldest first."""
        rows = self._write_db.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass"
        ).fetchall()
        bounds = []
        for name, expression in rows:
            match = _BOUNDS.search(expression or "")
            if match:
                bounds.append((name, float(match.group(1)), float(match.group(2))))
        return sorted(bounds, key=lambda b: b[1])

    def _ensure_partitions(self, events: Sequence[Event]) -> None:
        """Create the partitions ``events`` fall in (holding the write lock)."""
        if not self._partitioned:
            return
        span = self._partition_s
        needed = {
            math.floor(e.at_wall / span) * span for e in events if math.isfinite(e.at_wall)
        } - self._partitions
        for lower in sorted(needed):
            name = f"events_p{int(lower)}"
            try:
                with self._write_db.transaction():
                    # Workers creating the same partition together: one at a time.
                    self._write_db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
                    self._write_db.execute(
                        f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF events"
                        f" FOR VALUES FROM ({lower!r}) TO ({lower + span!r})"
                    )
                self._partitions.add(lower)
            except psycopg.Error:
                # e.g. an older partition of another span overlaps: the batch's insert
                # then goes to that one, or is refused and logged (rule 3).
                log.exception("cannot create events partition %s", name)
                self._partitions.add(lower)

    def prepare_partitions(self, start_s: float, end_s: float) -> None:
        """Create the partitions of ``[start_s, end_s]`` (Unix seconds) ahead of a bulk
        load that bypasses :meth:`append` (``COPY``). Errors are logged (rule 3)."""
        span = self._partition_s
        lows = range(math.floor(start_s / span), math.floor(end_s / span) + 1)
        ends = [Event("", EventKind.CALL_STARTED, low * span, 0.0) for low in lows]
        with self._write_lock:
            self._ensure_partitions(ends)

    def drop_before(self, before_s: float) -> int:
        """Retention: drop every ``events`` partition whose whole range ends at or before
        ``before_s`` (Unix seconds); events of the partition holding ``before_s`` stay
        until it has passed. Rollups keep their aggregates (they hold no personal data).

        On an unpartitioned table (rule 5) deletes the events before ``before_s``.

        Returns:
            The number of partitions dropped (of rows deleted when unpartitioned).

        Raises:
            StoreError: the server refused.
        """
        self.flush()
        try:
            with self._write_lock, self._write_db.transaction():
                if not self._partitioned:
                    cur = self._write_db.execute(
                        "DELETE FROM events WHERE at_wall < %s", (before_s,)
                    )
                    return cur.rowcount
                dropped = 0
                for name, lower, upper in self._partition_bounds():
                    if upper <= before_s:
                        self._write_db.execute(f'DROP TABLE "{name}"')
                        self._partitions.discard(lower)
                        dropped += 1
                return dropped
        except psycopg.Error as exc:
            raise StoreError(f"cannot drop events before {before_s}: {exc}") from exc

    def rebuild_costs(self) -> None:
        """Recompute the ``call_costs`` rollup from the events, for bulk loads that
        bypass :meth:`append`."""
        self.flush()
        with self._write_lock, self._write_db.transaction():
            self._backfill_costs()

    # -- writes --------------------------------------------------------------

    def append(self, event: Event) -> Event:
        return self._batches.append(event)

    def save_call(self, call: CallRecord) -> None:
        self._batches.save_call(call)

    def flush(self) -> None:
        """Commit everything appended so far (called by readers and on close)."""
        self._batches.flush()

    def _write_batch(self, events: list[Event], calls: list[CallRecord]) -> None:
        with self._write_lock:
            self._ensure_partitions(events)
            try:
                self._write_locked(events, calls)
            except psycopg.Error:
                # The server is gone (rule 3 already kept what it could): logged, not raised.
                log.exception("event store write failed; %d events dropped", len(events))
            except Exception:  # task boundary: a rollup bug must never cost events
                log.exception("rollups failed: batch written without them, rollups now stale")
                self._rollups = False
                with self._write_db.transaction():
                    self._write_db.execute("DELETE FROM meta WHERE key = 'rollups_version'")
                self._write_locked(events, calls)

    def _write_locked(self, events: list[Event], calls: list[CallRecord]) -> None:
        call_rows = [_call_params(c) for c in calls]
        event_rows = [_event_params(e) for e in events]
        cost_rows = attempt_costs(events)
        upsert_cost = UPSERT_COST.replace("?", "%s")
        insert_event = _INSERT_EVENT.format(
            key="call_id, seq, at_wall" if self._partitioned else "call_id, seq"
        )
        call_keys = [(c.call_id, c.started_at, c.agent, c.outcome) for c in calls]
        batch = RollupBatch(events, call_keys, cost_rows) if self._rollups else None
        try:
            with self._write_db.transaction(), self._write_db.cursor() as cur:
                if batch is not None:
                    batch.read_before(_PgTx(cur))
                cur.executemany(_INSERT_CALL, call_rows)
                cur.executemany(insert_event, event_rows)
                cur.executemany(upsert_cost, cost_rows)
                if batch is not None:
                    batch.write_after(_PgTx(cur))
            return
        except psycopg.Error:
            log.warning("event batch refused; retrying %d rows one by one", len(event_rows))
        # Rule 3: keep every row the server accepts; rule 6: rollups on their own.
        if batch is not None:
            self._rollup_step(batch.read_before)
        for sql, rows in (
            (_INSERT_CALL, call_rows),
            (insert_event, event_rows),
            (upsert_cost, cost_rows),
        ):
            for row in rows:
                try:
                    with self._write_db.transaction():
                        self._write_db.execute(sql, row)
                except psycopg.Error:
                    log.exception("event store dropped a row of call %s", row[0])
        if batch is not None:
            self._rollup_step(batch.write_after)

    def _rollup_step(self, step: Callable[[_PgTx], None]) -> None:
        try:
            with self._write_db.transaction(), self._write_db.cursor() as cur:
                step(_PgTx(cur))
        except psycopg.Error:
            log.exception(
                "rollups of a refused batch not updated; run voicerail ops rebuild-rollups"
            )

    def close(self) -> None:
        self._batches.close()
        with self._write_lock:
            self._write_db.close()
        with self._read_lock:
            self._read_db.close()

    # -- reads ---------------------------------------------------------------

    def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        # The shared queries use "?" and never contain a literal "?" or "%".
        self.flush()
        try:
            with self._read_lock:
                return self._read_db.execute(sql.replace("?", "%s"), tuple(args)).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"event store read failed: {exc}") from exc

    def continue_call(self, call_id: str) -> int:
        """``store.py`` rule 2: this process carries on ``call_id``; its next ``seq``.

        Raises:
            StoreError: the read failed.
        """
        return continue_call_seq(self, self._batches, call_id)

    def events(self, call_id: str) -> list[Event]:
        rows = self.fetch("SELECT * FROM events WHERE call_id = ? ORDER BY seq", (call_id,))
        return [event_from_row(r) for r in rows]

    def call(self, call_id: str) -> CallRecord | None:
        rows = self.fetch("SELECT * FROM calls WHERE call_id = ?", (call_id,))
        return call_from_row(rows[0]) if rows else None

    def calls(
        self, *, limit: int = 50, outcome: str | None = None, call_sid: str | None = None
    ) -> list[CallRecord]:
        sql, args = calls_query(limit=limit, outcome=outcome, call_sid=call_sid)
        return [call_from_row(r) for r in self.fetch(sql, args)]


class _PgTx:
    """The rollups' ``Tx`` (``events/rollups.py``) on a psycopg cursor."""

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self._cur = cur

    def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._cur.execute(sql.replace("?", "%s"), tuple(args)).fetchall()

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cur.executemany(sql.replace("?", "%s"), rows)


class PostgresReader:
    """A read-only ``SQLReader`` on an existing event store (``voicerail ops``): one
    autocommit connection, no schema changes, no writer thread.

    Raises:
        StoreError: the server cannot be reached.
    """

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        try:
            self._db = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the postgresql event store: {exc}") from exc

    def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql.replace("?", "%s"), tuple(args)).fetchall()
        except psycopg.Error as exc:
            raise StoreError(f"event store read failed: {exc}") from exc

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


def json_text(value: Any) -> str:
    """JSON that ``jsonb`` accepts: non-finite floats become null, NUL characters go."""
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(value))
    # jsonb refuses \\u0000 inside strings.
    return text.replace("\\u0000", "")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _text(value: str | None) -> str | None:
    return value.replace("\x00", "") if value is not None else None


def _call_params(c: CallRecord) -> tuple[Any, ...]:
    return (
        c.call_id,
        c.agent,
        c.started_at,
        c.ended_at,
        c.outcome,
        _text(c.error),
        c.call_sid,
        c.stream_sid,
        json_text(c.data),
    )


def _event_params(e: Event) -> tuple[Any, ...]:
    return (
        e.call_id,
        e.seq,
        str(e.kind),
        e.at_wall,
        e.at_mono,
        str(e.stage) if e.stage else None,
        e.provider,
        e.model,
        e.latency_s,
        e.outcome,
        e.error_class,
        json_text(e.data),
        json_text(e.pii),
    )
