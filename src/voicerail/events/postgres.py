"""The PostgreSQL event store: the same interface, tables and queries as SQLite.

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

Uses psycopg 3 (https://www.psycopg.org/psycopg3/docs/, 3.2).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Sequence
from typing import Any

from voicerail.errors import StoreError
from voicerail.events.model import SCHEMA_VERSION, Event
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
    """CREATE TABLE IF NOT EXISTS events (
  call_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
  at_wall DOUBLE PRECISION NOT NULL, at_mono DOUBLE PRECISION NOT NULL, stage TEXT,
  provider TEXT, model TEXT, latency_s DOUBLE PRECISION, outcome TEXT, error_class TEXT,
  data JSONB NOT NULL DEFAULT '{}', pii JSONB NOT NULL DEFAULT '{}',
  PRIMARY KEY (call_id, seq)
)""",
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

# Serializes schema creation between workers starting together (any constant).
_SCHEMA_LOCK_ID = 7_301_104

_INSERT_CALL = """INSERT INTO calls VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb)
ON CONFLICT (call_id) DO UPDATE SET agent = EXCLUDED.agent, started_at = EXCLUDED.started_at,
  ended_at = EXCLUDED.ended_at, outcome = EXCLUDED.outcome, error = EXCLUDED.error,
  call_sid = EXCLUDED.call_sid, stream_sid = EXCLUDED.stream_sid, data = EXCLUDED.data"""

_INSERT_EVENT = """INSERT INTO events VALUES
  (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s::jsonb,%s::jsonb)
ON CONFLICT (call_id, seq) DO UPDATE SET kind = EXCLUDED.kind, at_wall = EXCLUDED.at_wall,
  at_mono = EXCLUDED.at_mono, stage = EXCLUDED.stage, provider = EXCLUDED.provider,
  model = EXCLUDED.model, latency_s = EXCLUDED.latency_s, outcome = EXCLUDED.outcome,
  error_class = EXCLUDED.error_class, data = EXCLUDED.data, pii = EXCLUDED.pii"""


class PostgresEventStore:
    """:class:`~voicerail.events.store.EventStore` and ``SQLReader`` on PostgreSQL.

    Args:
        url: a libpq connection string or URL (``postgresql://user@host:5432/db``).
        flush_interval_s: longest an appended event waits before commit.
        batch_max: events that trigger an early commit.

    Raises:
        StoreError: the server cannot be reached or the schema cannot be created.
    """

    dialect = "postgresql"

    def __init__(self, url: str, *, flush_interval_s: float = 0.05, batch_max: int = 500) -> None:
        self.url = url
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
            for statement in (*_SCHEMA, *INDEXES):
                self._write_db.execute(statement)
            self._set_meta("schema_version", str(SCHEMA_VERSION))
            costs = self._write_db.execute(
                "SELECT value FROM meta WHERE key = 'costs_version'"
            ).fetchall()
            if costs != [(COSTS_VERSION,)]:
                self._backfill_costs()
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
        call_rows = [_call_params(c) for c in calls]
        event_rows = [_event_params(e) for e in events]
        cost_rows = attempt_costs(events)
        upsert_cost = UPSERT_COST.replace("?", "%s")
        with self._write_lock:
            try:
                with self._write_db.transaction(), self._write_db.cursor() as cur:
                    cur.executemany(_INSERT_CALL, call_rows)
                    cur.executemany(_INSERT_EVENT, event_rows)
                    cur.executemany(upsert_cost, cost_rows)
                return
            except psycopg.Error:
                log.warning("event batch refused; retrying %d rows one by one", len(event_rows))
            # Rule 3: keep every row the server accepts.
            for sql, rows in (
                (_INSERT_CALL, call_rows),
                (_INSERT_EVENT, event_rows),
                (upsert_cost, cost_rows),
            ):
                for row in rows:
                    try:
                        with self._write_db.transaction():
                            self._write_db.execute(sql, row)
                    except psycopg.Error:
                        log.exception("event store dropped a row of call %s", row[0])

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
