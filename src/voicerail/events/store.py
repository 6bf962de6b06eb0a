"""Event and call stores. SQLite is the embedded default.

(About 600 lines: the SQLite store, its writer thread and the row codecs share
one schema; the rollups' transaction hooks pushed it further. The split, when
it comes: ``WriteBehind`` and the row codecs to ``events/rows.py``, which the
PostgreSQL store imports too. The rollups themselves live in
``events/rollups.py``, ``rollup_writer.py`` and ``rollup_reads.py``.)

Rules:

1. ``append`` never blocks the event loop on disk: events go to an in-memory
   queue and a writer thread commits them in batches (every ``flush_interval_s``
   or ``batch_max`` events). Reads flush first, so a reader sees every event
   appended before it.
2. ``seq`` is assigned at append time, per call, in append order. A call
   carried on by another process (a resumed stream, ``session/resume.py``)
   continues in a fresh block of ``SEQ_BLOCK`` numbers past the last stored
   (:func:`next_seq_block`), so a process still writing the older block (a
   stream being taken over, the lost-call sweep) never overwrites it.
3. One call's store failure is recorded and logged; it never raises into the
   call path (``StoreError`` is raised by reads only).
4. Cost rollup: each ``ProviderAttempted`` event's ``data["cost_usd"]`` is also
   added, in the same transaction, to ``call_costs`` (per call and provider), so
   cost questions read a row per call and provider instead of parsing every
   attempt's JSON. A database without the rollup is backfilled when opened.
5. Stores that answer the operations questions also implement :class:`SQLReader`
   (``dialect`` and ``fetch``); the queries live in ``events/queries.py`` and run
   unchanged on SQLite and PostgreSQL (``events/postgres.py``).
6. Rollups (``events/rollups.py``) are updated by the writer in each batch's
   transaction, begun ``IMMEDIATE`` so that the rows they read before writing
   cannot change under them when several processes share the file. A database
   without current rollups is rebuilt when opened; ``rollups=False`` (benchmarks
   of the write path) stops keeping them and marks them stale, so the answers
   fall back to scanning events.

The schema is documented, with its version, in ``events/schema.md``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from voicerail.errors import StoreError
from voicerail.events.model import SCHEMA_VERSION, Event, EventKind, Stage
from voicerail.events.rollup_writer import RollupBatch, rebuild
from voicerail.events.rollups import ROLLUP_TABLES, ROLLUPS_VERSION, attempt_costs, schema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CallRecord:
    """One call's summary row.

    Attributes:
        call_id: voicerail's call id.
        agent: agent name.
        started_at: Unix seconds.
        ended_at: Unix seconds, None while in progress.
        outcome: ``completed`` / ``handoff`` / ``abandoned`` / ``failed`` or None.
        error: error message for ``failed`` calls (no personal data).
        call_sid: the telephony provider's call id.
        stream_sid: the media stream id.
        data: safe extra fields (booking id, turn count).
    """

    call_id: str
    agent: str
    started_at: float
    ended_at: float | None = None
    outcome: str | None = None
    error: str | None = None
    call_sid: str | None = None
    stream_sid: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "call_id": self.call_id,
            "agent": self.agent,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "outcome": self.outcome,
            "error": self.error,
            "call_sid": self.call_sid,
            "stream_sid": self.stream_sid,
            "data": dict(self.data),
        }


class EventStore(Protocol):
    """Where events and call rows live."""

    def append(self, event: Event) -> Event:
        """Record ``event``; returns it with ``seq`` assigned. Never raises."""
        ...

    def save_call(self, call: CallRecord) -> None:
        """Insert or replace a call row. Never raises."""
        ...

    def events(self, call_id: str) -> list[Event]:
        """The call's events in order. Raises StoreError."""
        ...

    def call(self, call_id: str) -> CallRecord | None:
        """One call row. Raises StoreError."""
        ...

    def calls(
        self, *, limit: int = 50, outcome: str | None = None, call_sid: str | None = None
    ) -> list[CallRecord]:
        """Newest calls first, filtered in the store before ``limit`` applies.

        Args:
            limit: at most this many rows, 1 to :data:`MAX_CALLS_LIMIT`.
            outcome: only calls with this outcome.
            call_sid: only calls with this Twilio call SID (personal data).

        Raises:
            ValueError: ``limit`` is out of range.
            StoreError: the read failed.
        """
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


@runtime_checkable
class SQLReader(Protocol):
    """Read access for the operations queries (``events/queries.py``).

    Attributes:
        dialect: ``"sqlite"`` or ``"postgresql"``.
    """

    dialect: str

    def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read query written with ``?`` placeholders.

        Everything appended before the call is visible to it.

        Raises:
            StoreError: the database refused the query.
        """
        ...


#: Rule 4: the rollup row upsert, valid on SQLite and PostgreSQL.
UPSERT_COST = (
    "INSERT INTO call_costs VALUES (?, ?, ?, ?) ON CONFLICT (call_id, provider) DO UPDATE"
    " SET cost_usd = call_costs.cost_usd + excluded.cost_usd,"
    " priced_attempts = call_costs.priced_attempts + excluded.priced_attempts"
)
COSTS_VERSION = "1"


#: The most rows one :meth:`EventStore.calls` read returns.
MAX_CALLS_LIMIT = 1000


def calls_query(
    *, limit: int, outcome: str | None, call_sid: str | None
) -> tuple[str, tuple[Any, ...]]:
    """The ``calls`` read shared by the SQLite and PostgreSQL stores (``?`` placeholders).

    Filters are SQL conditions, so they apply before ``LIMIT``: a call older than
    the newest ``limit`` rows is still found by its SID.

    Raises:
        ValueError: ``limit`` is not within 1 to :data:`MAX_CALLS_LIMIT`.
    """
    if isinstance(limit, bool) or not 1 <= limit <= MAX_CALLS_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_CALLS_LIMIT}, got {limit}")
    conditions: list[str] = []
    args: list[Any] = []
    if outcome is not None:
        conditions.append("outcome = ?")
        args.append(outcome)
    if call_sid is not None:
        conditions.append("call_sid = ?")
        args.append(call_sid)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return f"SELECT * FROM calls{where} ORDER BY started_at DESC LIMIT ?", (*args, limit)


#: Indexes that keep the operations queries fast at a million events; shared by
#: the SQLite and PostgreSQL schemas.
INDEXES = (
    "CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at)",
    "CREATE INDEX IF NOT EXISTS calls_outcome_started ON calls(outcome, started_at)",
    "CREATE INDEX IF NOT EXISTS calls_call_sid ON calls(call_sid)",
    "CREATE INDEX IF NOT EXISTS events_kind_time ON events(kind, at_wall)",
    "CREATE INDEX IF NOT EXISTS events_provider_time ON events(provider, at_wall)",
)


#: Seq numbers per stream of one call (rule 2); far more events than a stream has.
SEQ_BLOCK = 100_000


def next_seq_block(max_seq: int | None) -> int:
    """Rule 2: the first ``seq`` of the block after ``max_seq`` (None: no events)."""
    return 0 if max_seq is None else (int(max_seq) // SEQ_BLOCK + 1) * SEQ_BLOCK


def continue_call_seq(store: SQLReader, batches: WriteBehind, call_id: str) -> int:
    """Rule 2 for a call another process wrote: its next ``seq``, now reserved.

    Raises:
        StoreError: the read failed.
    """
    rows = store.fetch("SELECT MAX(seq) FROM events WHERE call_id = ?", (call_id,))
    return batches.continue_from(call_id, next_seq_block(rows[0][0] if rows else None))


class WriteBehind:
    """Rules 1 and 2 for any database: the pending queue, ``seq``, the writer thread.

    Args:
        write: commits one batch; must log and swallow its database's errors (rule 3).
        next_seq: the next ``seq`` of calls already in the database.
        flush_interval_s: longest an appended event waits before commit.
        batch_max: events that trigger an early commit.
    """

    def __init__(
        self,
        write: Callable[[list[Event], list[CallRecord]], None],
        *,
        next_seq: dict[str, int],
        flush_interval_s: float,
        batch_max: int,
    ) -> None:
        self._write = write
        self._flush_interval_s = flush_interval_s
        self._batch_max = batch_max
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending_events: list[Event] = []
        self._pending_calls: dict[str, CallRecord] = {}
        self._next_seq: defaultdict[str, int] = defaultdict(int, next_seq)
        self._wake = threading.Event()
        self._closed = False
        self._writer = threading.Thread(target=self._run, name="events-writer", daemon=True)
        self._writer.start()

    def append(self, event: Event) -> Event:
        """Queue ``event`` with its ``seq``; returns the stored event."""
        with self._lock:
            seq = self._next_seq[event.call_id]
            self._next_seq[event.call_id] = seq + 1
            stored = replace(event, seq=seq)
            self._pending_events.append(stored)
            wake = len(self._pending_events) >= self._batch_max
        if wake:
            self._wake.set()
        return stored

    def continue_from(self, call_id: str, next_seq: int) -> int:
        """Rule 2: the call's events go on from ``next_seq`` (never backwards);
        returns the next ``seq`` it will get."""
        with self._lock:
            seq = max(self._next_seq[call_id], next_seq)
            self._next_seq[call_id] = seq
        return seq

    def save_call(self, call: CallRecord) -> None:
        """Queue a call row; the last one saved for a call id wins."""
        with self._lock:
            self._pending_calls[call.call_id] = call

    def flush(self) -> None:
        """Commit everything queued so far, in queue order."""
        # Holding the write lock while taking the batch keeps batches in order
        # when a reader's flush races the writer thread.
        with self._write_lock:
            with self._lock:
                events, self._pending_events = self._pending_events, []
                calls, self._pending_calls = self._pending_calls, {}
            if events or calls:
                self._write(events, list(calls.values()))

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_interval_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # task boundary: the writer thread must survive
                log.exception("event store writer failed")

    def close(self) -> None:
        """Stop the writer thread and commit what is left."""
        self._closed = True
        self._wake.set()
        self._writer.join(timeout=2.0)
        self.flush()


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
  call_id TEXT PRIMARY KEY, agent TEXT NOT NULL, started_at REAL NOT NULL,
  ended_at REAL, outcome TEXT, error TEXT, call_sid TEXT, stream_sid TEXT,
  data TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS events (
  call_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
  at_wall REAL NOT NULL, at_mono REAL NOT NULL, stage TEXT, provider TEXT, model TEXT,
  latency_s REAL, outcome TEXT, error_class TEXT,
  data TEXT NOT NULL DEFAULT '{}', pii TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (call_id, seq)
);
CREATE TABLE IF NOT EXISTS call_costs (
  call_id TEXT NOT NULL, provider TEXT NOT NULL, cost_usd REAL NOT NULL,
  priced_attempts INTEGER NOT NULL, PRIMARY KEY (call_id, provider)
);
"""

_SQLITE_BACKFILL = """INSERT INTO call_costs
SELECT call_id, provider, SUM(json_extract(data, '$.cost_usd')), COUNT(*) FROM events
WHERE kind = 'ProviderAttempted' AND provider IS NOT NULL
  AND json_type(data, '$.cost_usd') IN ('integer', 'real')
GROUP BY call_id, provider"""


class SQLiteEventStore:
    """:class:`EventStore` on one SQLite file (WAL), written by a batching thread.

    Args:
        path: database file; parent directories are created.
        flush_interval_s: longest an appended event waits before commit.
        batch_max: events that trigger an early commit.
        rollups: keep the rollups on write (rule 6).
    """

    dialect = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval_s: float = 0.05,
        batch_max: int = 500,
        rollups: bool = True,
    ) -> None:
        self.path = Path(path)
        self._rollups = rollups
        #: Whether opening found the rollups missing or stale and rebuilt them.
        self.rebuilt_on_open = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db_lock = threading.Lock()
        # The busy timeout lets several worker processes share the file: a writer
        # that finds it locked waits up to 10 s instead of failing at once.
        self._db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=10.0
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master")}
        self._db.executescript(_SCHEMA)
        for statement in (*INDEXES, *schema()):
            self._db.execute(statement)
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        costs = self._db.execute("SELECT value FROM meta WHERE key = 'costs_version'").fetchall()
        if costs != [(COSTS_VERSION,)]:
            self._backfill_costs()
        built = self._db.execute("SELECT value FROM meta WHERE key = 'rollups_version'")
        if not rollups:
            self._db.execute("DELETE FROM meta WHERE key = 'rollups_version'")
        elif built.fetchall() != [(ROLLUPS_VERSION,)] or not tables >= ROLLUP_TABLES:
            self._rebuild_rollups()
            self.rebuilt_on_open = True
        next_seq = {
            call_id: max_seq + 1
            for call_id, max_seq in self._db.execute(
                "SELECT call_id, MAX(seq) FROM events GROUP BY 1"
            )
        }
        self._batches = WriteBehind(
            self._write_batch,
            next_seq=next_seq,
            flush_interval_s=flush_interval_s,
            batch_max=batch_max,
        )

    # -- writes --------------------------------------------------------------

    def append(self, event: Event) -> Event:
        return self._batches.append(event)

    def save_call(self, call: CallRecord) -> None:
        self._batches.save_call(call)

    def flush(self) -> None:
        """Commit everything appended so far (called by readers and on close)."""
        self._batches.flush()

    def _write_batch(self, events: list[Event], calls: list[CallRecord]) -> None:
        try:
            try:
                self._write(events, calls, rollups=self._rollups)
            except sqlite3.Error:
                raise
            except Exception:  # task boundary: a rollup bug must never cost events
                log.exception("rollups failed: batch written without them, rollups now stale")
                self._rollups = False
                self._write(events, calls, rollups=False)
                with self._db_lock:
                    self._db.execute("DELETE FROM meta WHERE key = 'rollups_version'")
        except sqlite3.Error:
            # Rule 3: keep the call path alive; the batch is logged, not raised.
            log.exception("event store write failed; %d events dropped", len(events))

    def _write(self, events: list[Event], calls: list[CallRecord], *, rollups: bool) -> None:
        with self._db_lock:
            try:
                self._write_tx(events, calls, rollups=rollups)
            finally:
                if self._db.in_transaction:  # only when the batch failed
                    self._db.execute("ROLLBACK")

    def _write_tx(self, events: list[Event], calls: list[CallRecord], *, rollups: bool) -> None:
        db = self._db
        tx = SQLiteTx(db)
        cost_rows = attempt_costs(events)
        call_keys = [(c.call_id, c.started_at, c.agent, c.outcome) for c in calls]
        batch = RollupBatch(events, call_keys, cost_rows) if rollups else None
        db.execute("BEGIN IMMEDIATE")
        if batch is not None:
            batch.read_before(tx)
        db.executemany(
            "INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?,?,?,?)",
            [call_row(c) for c in calls],
        )
        db.executemany(
            "INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [event_row(e) for e in events],
        )
        db.executemany(UPSERT_COST, cost_rows)
        if batch is not None:
            batch.write_after(tx)
        db.execute("COMMIT")

    def rebuild_rollups(self) -> None:
        """Recompute every rollup from the events (``voicerail ops rebuild-rollups``).

        Raises:
            StoreError: the database refused the rebuild.
        """
        self.flush()
        try:
            self._rebuild_rollups()
        except sqlite3.Error as exc:
            raise StoreError(f"rollup rebuild failed: {exc}") from exc
        self._rollups = True

    def _rebuild_rollups(self) -> None:
        with self._db_lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                rebuild(SQLiteTx(self._db), self.dialect)
                self._db.execute("COMMIT")
            finally:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")

    def rebuild_costs(self) -> None:
        """Recompute the ``call_costs`` rollup from the events (rule 4), for bulk
        loads that bypass :meth:`append`."""
        self.flush()
        self._backfill_costs()

    def _backfill_costs(self) -> None:
        with self._db_lock:
            db = self._db
            db.execute("BEGIN")
            db.execute("DELETE FROM call_costs")
            db.execute(_SQLITE_BACKFILL)
            db.execute("INSERT OR REPLACE INTO meta VALUES ('costs_version', ?)", (COSTS_VERSION,))
            db.execute("COMMIT")

    def close(self) -> None:
        self._batches.close()
        with self._db_lock:
            self._db.close()

    # -- reads ---------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        self.flush()
        try:
            with self._db_lock:
                return list(self._db.execute(sql, args))
        except sqlite3.Error as exc:
            raise StoreError(f"event store read failed: {exc}") from exc

    def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._query(sql, tuple(args))

    def continue_call(self, call_id: str) -> int:
        """Rule 2: this process carries on ``call_id``; returns its next ``seq``.

        Raises:
            StoreError: the read failed.
        """
        return continue_call_seq(self, self._batches, call_id)

    def events(self, call_id: str) -> list[Event]:
        rows = self._query("SELECT * FROM events WHERE call_id = ? ORDER BY seq", (call_id,))
        return [event_from_row(r) for r in rows]

    def call(self, call_id: str) -> CallRecord | None:
        rows = self._query("SELECT * FROM calls WHERE call_id = ?", (call_id,))
        return call_from_row(rows[0]) if rows else None

    def calls(
        self, *, limit: int = 50, outcome: str | None = None, call_sid: str | None = None
    ) -> list[CallRecord]:
        sql, args = calls_query(limit=limit, outcome=outcome, call_sid=call_sid)
        return [call_from_row(r) for r in self._query(sql, args)]


class SQLiteTx:
    """The rollups' ``Tx`` (``events/rollups.py``) on a SQLite connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def fetch(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a query."""
        return list(self._db.execute(sql, tuple(args)))

    def run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for each row."""
        if rows:
            self._db.executemany(sql, rows)


def call_row(c: CallRecord) -> tuple[Any, ...]:
    """A call as a ``calls`` row (JSON as text)."""
    return (
        c.call_id,
        c.agent,
        c.started_at,
        c.ended_at,
        c.outcome,
        c.error,
        c.call_sid,
        c.stream_sid,
        json.dumps(c.data),
    )


def event_row(e: Event) -> tuple[Any, ...]:
    """An event as an ``events`` row (JSON as text)."""
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
        json.dumps(e.data),
        json.dumps(e.pii),
    )


def _json(value: Any) -> Any:
    """JSON columns come back as text (SQLite) or already decoded (PostgreSQL JSONB)."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def event_from_row(r: Sequence[Any]) -> Event:
    """The inverse of :func:`event_row` (columns in table order)."""
    return Event(
        call_id=r[0],
        seq=r[1],
        kind=EventKind(r[2]),
        at_wall=r[3],
        at_mono=r[4],
        stage=Stage(r[5]) if r[5] else None,
        provider=r[6],
        model=r[7],
        latency_s=r[8],
        outcome=r[9],
        error_class=r[10],
        data=_json(r[11]),
        pii=_json(r[12]),
    )


def call_from_row(r: Sequence[Any]) -> CallRecord:
    """The inverse of :func:`call_row` (columns in table order)."""
    return CallRecord(
        call_id=r[0],
        agent=r[1],
        started_at=r[2],
        ended_at=r[3],
        outcome=r[4],
        error=r[5],
        call_sid=r[6],
        stream_sid=r[7],
        data=_json(r[8]),
    )


def open_event_store(data_dir: Path, database_url: str | None = None) -> EventStore:
    """The server's event store: PostgreSQL when ``database_url`` is given (e.g. from
    ``$VOICERAIL_DATABASE_URL``), else ``<data_dir>/events.sqlite3``.

    Raises:
        StoreError: the PostgreSQL server cannot be reached.
    """
    if database_url:
        from voicerail.events.postgres import PostgresEventStore

        return PostgresEventStore(database_url)
    return SQLiteEventStore(Path(data_dir) / "events.sqlite3")
