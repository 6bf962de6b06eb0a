"""Event and call stores. SQLite is the embedded default.

Rules:

1. ``append`` never blocks the event loop on disk: events go to an in-memory
   queue and a writer thread commits them in batches (every ``flush_interval_s``
   or ``batch_max`` events). Reads flush first, so a reader sees every event
   appended before it.
2. ``seq`` is assigned at append time, per call, in append order.
3. One call's store failure is recorded and logged; it never raises into the
   call path (``StoreError`` is raised by reads only).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from voicerail.errors import StoreError
from voicerail.events.model import SCHEMA_VERSION, Event, EventKind, Stage

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

    def calls(self, *, limit: int = 50, outcome: str | None = None) -> list[CallRecord]:
        """Newest calls first. Raises StoreError."""
        ...

    def close(self) -> None:
        """Flush and release resources."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS calls (
  call_id TEXT PRIMARY KEY, agent TEXT NOT NULL, started_at REAL NOT NULL,
  ended_at REAL, outcome TEXT, error TEXT, call_sid TEXT, stream_sid TEXT,
  data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS calls_started ON calls(started_at);
CREATE TABLE IF NOT EXISTS events (
  call_id TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
  at_wall REAL NOT NULL, at_mono REAL NOT NULL, stage TEXT, provider TEXT, model TEXT,
  latency_s REAL, outcome TEXT, error_class TEXT,
  data TEXT NOT NULL DEFAULT '{}', pii TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (call_id, seq)
);
CREATE INDEX IF NOT EXISTS events_kind_time ON events(kind, at_wall);
CREATE INDEX IF NOT EXISTS events_provider_time ON events(provider, at_wall);
"""


class SQLiteEventStore:
    """:class:`EventStore` on one SQLite file (WAL), written by a batching thread.

    Args:
        path: database file; parent directories are created.
        flush_interval_s: longest an appended event waits before commit.
        batch_max: events that trigger an early commit.
    """

    def __init__(
        self, path: str | Path, *, flush_interval_s: float = 0.05, batch_max: int = 500
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._flush_interval_s = flush_interval_s
        self._batch_max = batch_max
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._pending_events: list[Event] = []
        self._pending_calls: dict[str, CallRecord] = {}
        self._next_seq: dict[str, int] = defaultdict(int)
        self._wake = threading.Event()
        self._closed = False
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
        for call_id, max_seq in self._db.execute("SELECT call_id, MAX(seq) FROM events GROUP BY 1"):
            self._next_seq[call_id] = max_seq + 1
        self._writer = threading.Thread(target=self._run_writer, name="events-writer", daemon=True)
        self._writer.start()

    # -- writes --------------------------------------------------------------

    def append(self, event: Event) -> Event:
        with self._lock:
            seq = self._next_seq[event.call_id]
            self._next_seq[event.call_id] = seq + 1
            stored = replace(event, seq=seq)
            self._pending_events.append(stored)
            wake = len(self._pending_events) >= self._batch_max
        if wake:
            self._wake.set()
        return stored

    def save_call(self, call: CallRecord) -> None:
        with self._lock:
            self._pending_calls[call.call_id] = call

    def flush(self) -> None:
        """Commit everything appended so far (called by readers and on close)."""
        with self._lock:
            events, self._pending_events = self._pending_events, []
            calls, self._pending_calls = self._pending_calls, {}
        if not events and not calls:
            return
        try:
            with self._db_lock:
                self._write(events, list(calls.values()))
        except sqlite3.Error:
            # Rule 3: keep the call path alive; the batch is logged, not raised.
            log.exception("event store write failed; %d events dropped", len(events))

    def _write(self, events: list[Event], calls: list[CallRecord]) -> None:
        db = self._db
        db.execute("BEGIN")
        db.executemany(
            "INSERT OR REPLACE INTO calls VALUES (?,?,?,?,?,?,?,?,?)",
            [
                (
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
                for c in calls
            ],
        )
        db.executemany(
            "INSERT OR REPLACE INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (
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
                for e in events
            ],
        )
        db.execute("COMMIT")

    def _run_writer(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_interval_s)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self._writer.join(timeout=2.0)
        self.flush()
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

    def events(self, call_id: str) -> list[Event]:
        rows = self._query("SELECT * FROM events WHERE call_id = ? ORDER BY seq", (call_id,))
        return [_event_from_row(r) for r in rows]

    def call(self, call_id: str) -> CallRecord | None:
        rows = self._query("SELECT * FROM calls WHERE call_id = ?", (call_id,))
        return _call_from_row(rows[0]) if rows else None

    def calls(self, *, limit: int = 50, outcome: str | None = None) -> list[CallRecord]:
        if outcome is None:
            rows = self._query("SELECT * FROM calls ORDER BY started_at DESC LIMIT ?", (limit,))
        else:
            rows = self._query(
                "SELECT * FROM calls WHERE outcome = ? ORDER BY started_at DESC LIMIT ?",
                (outcome, limit),
            )
        return [_call_from_row(r) for r in rows]


def _event_from_row(r: tuple[Any, ...]) -> Event:
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
        data=json.loads(r[11]),
        pii=json.loads(r[12]),
    )


def _call_from_row(r: tuple[Any, ...]) -> CallRecord:
    return CallRecord(
        call_id=r[0],
        agent=r[1],
        started_at=r[2],
        ended_at=r[3],
        outcome=r[4],
        error=r[5],
        call_sid=r[6],
        stream_sid=r[7],
        data=json.loads(r[8]),
    )
