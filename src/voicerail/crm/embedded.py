"""The embedded CRM (SQLite): the default connector, holding contacts and the agent's writes.

Rules kept here:

1. Contacts are keyed by phone number (E.164); their fields are one JSON object.
2. Every write is upserted by its idempotency key (UNIQUE): applying a write a
   second time updates the record the first one made and reports
   ``created=False`` (``crm/model.py`` rule 1).
3. A booking write also goes to the :class:`~voicerail.dialog.bookings.BookingStore`
   under the same key, so the dialog's confirmation number, the booking table
   and the CRM record agree however often the write is delivered. A booking
   write carries the booking's whole state (``status``, ``day``, ``time``):
   the table is brought to that state, creating the row when the booking's
   first write was superseded before delivery (a booking cancelled before it
   was ever written lands as a cancelled row, never a live one).
4. Records are keyed by the write's ``record_key`` (the entity when the write
   names one, ``crm/model.py`` rule 3).
5. SQLite calls run in a worker thread from the async methods: the event loop
   never waits on the file.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Mapping
from datetime import date, time
from pathlib import Path
from typing import Any

from voicerail.crm.model import CRMWrite, CustomerRecord, WriteAction, WriteReceipt, normalize_phone
from voicerail.dialog.bookings import BookingStore
from voicerail.errors import CRMError, ErrorClass, StoreError
from voicerail.sqlite_open import open_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS crm_contacts (
  phone TEXT PRIMARY KEY,
  contact_id TEXT NOT NULL,
  fields TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS crm_records (
  idempotency_key TEXT PRIMARY KEY,
  call_id TEXT NOT NULL,
  action TEXT NOT NULL,
  properties TEXT NOT NULL,
  deliveries INTEGER NOT NULL DEFAULT 1
);
"""


class EmbeddedCRM:
    """Contacts and writes in one SQLite file (rules 1-3).

    Args:
        path: the database file (``":memory:"`` for tests).
        bookings: where booking writes also land (rule 3); None skips that.

    Raises:
        CRMError: the file cannot be opened.
    """

    name = "embedded"

    def __init__(self, path: str | Path, bookings: BookingStore | None = None) -> None:
        try:
            if str(path) != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = open_wal(
                str(path), lambda db: db.executescript(_SCHEMA), synchronous_normal=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise self._error(exc) from exc
        self._lock = threading.Lock()
        self.bookings = bookings

    def _error(self, exc: Exception) -> CRMError:
        return CRMError(
            f"embedded crm failed: {type(exc).__name__}",
            provider=self.name,
            error_class=ErrorClass.TRANSIENT,
        )

    def add_contact(self, phone: str, fields: Mapping[str, Any]) -> str:
        """Create or replace the contact at ``phone``; returns its contact id.

        Raises:
            CRMError: the database failed.
        """
        key = normalize_phone(phone)
        contact_id = "C-" + key.lstrip("+")
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO crm_contacts VALUES (?,?,?) ON CONFLICT(phone) DO UPDATE "
                    "SET fields = excluded.fields",
                    (key, contact_id, json.dumps(dict(fields), default=str)),
                )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return contact_id

    async def lookup_phone(self, phone_e164: str) -> CustomerRecord | None:
        """See :meth:`voicerail.crm.model.CRMConnector.lookup_phone`."""
        return await asyncio.to_thread(self.lookup_phone_now, phone_e164)

    def lookup_phone_now(self, phone_e164: str) -> CustomerRecord | None:
        """The synchronous lookup (the embedded CRM never waits on a network).

        Raises:
            CRMError: the database failed.
        """
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT contact_id, fields FROM crm_contacts WHERE phone = ?",
                    (normalize_phone(phone_e164),),
                ).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return CustomerRecord(str(row[0]), json.loads(row[1])) if row else None

    async def upsert(self, write: CRMWrite) -> WriteReceipt:
        """See :meth:`voicerail.crm.model.CRMConnector.upsert` (rules 2 and 3)."""
        if write.action is WriteAction.BOOKING and self.bookings is not None:
            await asyncio.to_thread(self._book, write)
        return await asyncio.to_thread(self.upsert_now, write)

    def _book(self, write: CRMWrite) -> None:
        props = write.properties
        store = self.bookings
        assert store is not None
        try:
            booking_id = str(props["booking_id"]) if props.get("booking_id") else None
            day = date.fromisoformat(str(props["day"]))
            at = time.fromisoformat(str(props["time"]))
            found = store.get(booking_id) if booking_id else None
            if found is None:
                found = store.create(
                    write.call_id,
                    str(props["name"]),
                    day,
                    at,
                    write.idempotency_key,
                    booking_id=booking_id,
                )
            if props.get("status") == "cancelled":
                store.cancel(found.booking_id)
            elif (found.day, found.time) != (day, at):
                store.reschedule(found.booking_id, day, at)
        except (KeyError, ValueError) as exc:
            raise CRMError(
                f"booking write lacks a valid {exc}",
                provider=self.name,
                error_class=ErrorClass.PERMANENT,
                code="INVALID_BOOKING",
            ) from exc
        except StoreError as exc:
            raise self._error(exc) from exc

    def upsert_now(self, write: CRMWrite) -> WriteReceipt:
        """The synchronous upsert of the CRM record (rule 2).

        Raises:
            CRMError: the database failed.
        """
        props = json.dumps(dict(write.properties), sort_keys=True, default=str)
        try:
            with self._lock:
                row = self._db.execute(
                    "INSERT INTO crm_records VALUES (?,?,?,?,1) ON CONFLICT(idempotency_key) "
                    "DO UPDATE SET properties = excluded.properties, deliveries = deliveries + 1 "
                    "RETURNING deliveries",
                    (write.record_key, write.call_id, str(write.action), props),
                ).fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return WriteReceipt(crm_id=write.record_key, created=int(row[0]) == 1)

    def records(self) -> list[tuple[str, str, dict[str, Any], int]]:
        """Every record: (record key, action, properties, deliveries).

        Raises:
            CRMError: the database failed.
        """
        try:
            with self._lock:
                rows = list(
                    self._db.execute(
                        "SELECT idempotency_key, action, properties, deliveries FROM crm_records "
                        "ORDER BY rowid"
                    )
                )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        return [(str(r[0]), str(r[1]), json.loads(r[2]), int(r[3])) for r in rows]

    def close(self) -> None:
        """Release the connection."""
        with self._lock:
            self._db.close()
