"""The embedded appointment store (SQLite), with idempotent writes.

Rules kept here:

1. Every booking carries an idempotency key (``"{call_id}:book:{n}"``, UNIQUE in
   the table): a replayed request — a retry, a failover, a re-sent tool call, a
   call resumed on another worker — returns the booking the first request made
   and writes nothing, even from another process.
2. Reschedule and cancel set absolute values, so replaying them is harmless.
3. One connection per store, used under a lock: calls share the store from the
   event loop and from worker threads. WAL lets other processes (``voicerail
   simulate`` reading results, a second worker) read while a call writes;
   ``synchronous=NORMAL`` keeps a commit off the disk's flush path, which is
   durable in WAL mode except for the last commits on power loss.
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
from typing import Protocol

from voicerail.errors import StoreError
from voicerail.sqlite_open import open_wal

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
    """One appointment.

    Attributes:
        booking_id: ``"BK-"`` and 8 hex digits, said to the caller as the confirmation number.
        call_id: the call that booked it.
        name: the caller's name.
        day: the appointment's date.
        time: its local time.
        status: ``booked`` or ``cancelled``.
    """

    booking_id: str
    call_id: str
    name: str
    day: date
    time: dtime
    status: str = "booked"


class Bookings(Protocol):
    """What the dialogs need of a booking store: :class:`BookingStore`, or
    :class:`voicerail.crm.bookings.OutboxBookings` (bookings through the CRM outbox)."""

    def create(
        self,
        call_id: str,
        name: str,
        day: date,
        at: dtime,
        idempotency_key: str,
        booking_id: str | None = None,
    ) -> Booking: ...

    def find(self, name: str, day: date | None = None) -> list[Booking]: ...

    def get(self, booking_id: str) -> Booking | None: ...

    def reschedule(self, booking_id: str, day: date, at: dtime) -> Booking | None: ...

    def cancel(self, booking_id: str) -> Booking | None: ...


class BookingStore:
    """Appointments in one SQLite file, safe to share between calls (one lock).

    Args:
        path: the database file, created with its directory when missing
            (``":memory:"`` for tests).

    Raises:
        StoreError: the file cannot be opened or created.
    """

    def __init__(self, path: str | Path) -> None:
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = open_wal(str(path), lambda db: db.executescript(_SCHEMA))
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the booking store: {exc}") from exc
        self._lock = threading.Lock()

    def create(
        self,
        call_id: str,
        name: str,
        day: date,
        at: dtime,
        idempotency_key: str,
        booking_id: str | None = None,
    ) -> Booking:
        """Book ``name`` on ``day`` at ``at``; the same key returns the first booking.

        Args:
            call_id: the call that books (stored for audit and the simulator's checks).
            name: the caller's name as said.
            day: the appointment's date.
            at: its local time.
            idempotency_key: ``"{call_id}:book:{n}"`` (rule 1).
            booking_id: the confirmation number to use, when the caller was
                already told it (a write through the CRM outbox); None draws one.

        Returns:
            The booking written now, or the one this key wrote before (unchanged,
            even when the other arguments differ).

        Raises:
            StoreError: the database failed.
        """
        now = time.time()
        booking_id = booking_id or "BK-" + uuid.uuid4().hex[:8].upper()
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
        """Active bookings under ``name`` (case-insensitive), optionally on ``day``.

        Returns:
            Those bookings, earliest appointment first.

        Raises:
            StoreError: the database failed.
        """
        sql = "SELECT * FROM bookings WHERE name = ? COLLATE NOCASE AND status = 'booked'"
        args: tuple[str, ...] = (name,)
        if day is not None:
            sql += " AND day = ?"
            args += (day.isoformat(),)
        return [_booking(r) for r in self._query(sql + " ORDER BY day, time", args)]

    def get(self, booking_id: str) -> Booking | None:
        """One booking by id, whatever its status; None when there is none.

        Raises:
            StoreError: the database failed.
        """
        rows = self._query("SELECT * FROM bookings WHERE booking_id = ?", (booking_id,))
        return _booking(rows[0]) if rows else None

    def list_bookings(self) -> list[Booking]:
        """Every booking (cancelled ones too), earliest appointment first.

        Raises:
            StoreError: the database failed.
        """
        return [_booking(r) for r in self._query("SELECT * FROM bookings ORDER BY day, time", ())]

    def reschedule(self, booking_id: str, day: date, at: dtime) -> Booking | None:
        """Move an active booking (rule 2).

        Returns:
            The booking updated, or None when there is no active booking ``booking_id``.

        Raises:
            StoreError: the database failed.
        """
        changed = self._execute(
            "UPDATE bookings SET day = ?, time = ?, updated_at = ? "
            "WHERE booking_id = ? AND status = 'booked'",
            (day.isoformat(), at.isoformat("minutes"), time.time(), booking_id),
        )
        return self.get(booking_id) if changed else None

    def cancel(self, booking_id: str) -> Booking | None:
        """Cancel a booking (rule 2: cancelling twice is harmless).

        Returns:
            The booking, now cancelled, or None when there is no booking ``booking_id``.

        Raises:
            StoreError: the database failed.
        """
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

    def _execute(self, sql: str, args: tuple[object, ...]) -> int:
        try:
            with self._lock:
                return self._db.execute(sql, args).rowcount
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
