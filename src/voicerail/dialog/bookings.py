"""The embedded appointment store (SQLite), with idempotent writes.

Every write carries an idempotency key (``"{call_id}:book:{n}"``): a replayed
request — a retry, a failover, a re-sent tool call — returns the booking the
first request made and writes nothing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path

from voicerail.errors import StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS bookings (
  booking_id TEXT PRIMARY KEY,
  idempotency_key TEXT UNIQUE NOT NULL,
  call_id TEXT NOT NULL,
  name TEXT NOT NULL,
  day TEXT NOT NULL,
  time TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'booked',
  created_at REAL NOT NULL,
  updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS bookings_name ON bookings(name COLLATE NOCASE);
"""


@dataclass(frozen=True)
class Booking:
    """One appointment. ``status`` is ``booked`` or ``cancelled``."""

    booking_id: str
    call_id: str
    name: str
    day: date
    time: dtime
    status: str = "booked"


class BookingStore:
    """Appointments in one SQLite file, safe to share between calls (one lock).

    Args:
        path: the database file (``":memory:"`` for tests).
    """

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def create(
        self, call_id: str, name: str, day: date, at: dtime, idempotency_key: str
    ) -> Booking:
        """Book ``name`` on ``day`` at ``at``; the same key returns the first booking.

        Raises:
            StoreError: the database failed.
        """
        now = time.time()
        booking_id = "BK-" + uuid.uuid4().hex[:8].upper()
        try:
            with self._lock:
                self._db.execute(
                    "INSERT OR IGNORE INTO bookings VALUES (?,?,?,?,?,?, 'booked', ?, ?)",
                    (
                        booking_id,
                        idempotency_key,
                        call_id,
                        name,
                        day.isoformat(),
                        at.isoformat("minutes"),
                        now,
                        now,
                    ),
                )
                row = self._db.execute(
                    "SELECT * FROM bookings WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"booking write failed: {exc}") from exc
        return _booking(row)

    def find(self, name: str, day: date | None = None) -> list[Booking]:
        """Active bookings under ``name`` (case-insensitive), optionally on ``day``."""
        sql = "SELECT * FROM bookings WHERE name = ? COLLATE NOCASE AND status = 'booked'"
        args: tuple[str, ...] = (name,)
        if day is not None:
            sql += " AND day = ?"
            args += (day.isoformat(),)
        return [_booking(r) for r in self._query(sql + " ORDER BY day, time", args)]

    def get(self, booking_id: str) -> Booking | None:
        """One booking by id."""
        rows = self._query("SELECT * FROM bookings WHERE booking_id = ?", (booking_id,))
        return _booking(rows[0]) if rows else None

    def list_bookings(self) -> list[Booking]:
        """Every booking, oldest appointment first."""
        return [_booking(r) for r in self._query("SELECT * FROM bookings ORDER BY day, time", ())]

    def reschedule(self, booking_id: str, day: date, at: dtime) -> Booking | None:
        """Move a booking; returns it updated, or None when it does not exist."""
        self._execute(
            "UPDATE bookings SET day = ?, time = ?, updated_at = ? WHERE booking_id = ?",
            (day.isoformat(), at.isoformat("minutes"), time.time(), booking_id),
        )
        return self.get(booking_id)

    def cancel(self, booking_id: str) -> Booking | None:
        """Cancel a booking (idempotent); returns it, or None when it does not exist."""
        self._execute(
            "UPDATE bookings SET status = 'cancelled', updated_at = ? WHERE booking_id = ?",
            (time.time(), booking_id),
        )
        return self.get(booking_id)

    def _query(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        try:
            with self._lock:
                return list(self._db.execute(sql, args))
        except sqlite3.Error as exc:
            raise StoreError(f"booking read failed: {exc}") from exc

    def _execute(self, sql: str, args: tuple[object, ...]) -> None:
        try:
            with self._lock:
                self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"booking write failed: {exc}") from exc

    def close(self) -> None:
        """Release the connection."""
        with self._lock:
            self._db.close()


def _booking(row: tuple[object, ...]) -> Booking:
    return Booking(
        booking_id=str(row[0]),
        call_id=str(row[2]),
        name=str(row[3]),
        day=date.fromisoformat(str(row[4])),
        time=datetime.strptime(str(row[5]), "%H:%M").time(),
        status=str(row[6]),
    )
