"""Bookings through the CRM outbox, for the flow engine (the LLM agent has its own path).

Rules kept here:

1. :meth:`OutboxBookings.create` records the booking as a ``booking`` CRM write
   in the outbox (with the call's state) instead of writing the booking table;
   the relay delivers it, and the embedded CRM writes the table under the same
   idempotency key (``crm/embedded.py`` rule 3).
2. The confirmation number is derived from the idempotency key
   (``"BK-"`` and 8 hex digits of its SHA-256), so the number the caller hears
   is the one the relay writes, however often the turn is replayed.
3. Reads, reschedules and cancels go to the booking table as before. A booking
   made in this call is there once the relay delivered it (the relay runs
   continuously; its first attempt follows within its idle interval).
   :meth:`find` and :meth:`get` also return this process's bookings still in
   the outbox, so the dialog can name them; rescheduling or cancelling one of
   those before its delivery finds nothing in the table and returns None (the
   dialog says it found no booking). Known gap: such a change could be queued
   as a write of its own.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from datetime import time as dtime

from voicerail.clock import Clock, SystemClock
from voicerail.crm.model import CRMWrite, WriteAction
from voicerail.crm.outbox import Outbox
from voicerail.dialog.bookings import Booking, BookingStore


def booking_id_for(idempotency_key: str) -> str:
    """Rule 2's confirmation number."""
    return "BK-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:8].upper()


class OutboxBookings:
    """A :class:`~voicerail.dialog.bookings.Bookings` whose creations go through the outbox.

    Args:
        store: the booking table (reads, reschedules, cancels).
        outbox: where new bookings are recorded.
        clock: the wall clock of the outbox's times.
    """

    def __init__(self, store: BookingStore, outbox: Outbox, clock: Clock | None = None) -> None:
        self.store = store
        self.outbox = outbox
        self.clock = clock or SystemClock()
        self._pending: dict[str, Booking] = {}

    def create(
        self,
        call_id: str,
        name: str,
        day: date,
        at: dtime,
        idempotency_key: str,
        booking_id: str | None = None,
    ) -> Booking:
        """Rules 1 and 2.

        Raises:
            StoreError: the outbox failed; nothing was recorded.
        """
        booking = Booking(booking_id or booking_id_for(idempotency_key), call_id, name, day, at)
        properties = {
            "name": name,
            "day": day.isoformat(),
            "time": at.isoformat("minutes"),
            "booking_id": booking.booking_id,
        }
        write = CRMWrite(idempotency_key, call_id, WriteAction.BOOKING, properties)
        state = json.dumps({"booking_id": booking.booking_id})
        self.outbox.record(call_id, state, [write], self.clock.wall())
        self._pending[booking.booking_id] = booking
        return booking

    def _undelivered(self) -> list[Booking]:
        for booking_id in list(self._pending):
            if self.store.get(booking_id) is not None:
                del self._pending[booking_id]
        return list(self._pending.values())

    def find(self, name: str, day: date | None = None) -> list[Booking]:
        """Rule 3: the table's active bookings, and this process's undelivered ones."""
        found = self.store.find(name, day)
        extra = [
            b
            for b in self._undelivered()
            if b.name.casefold() == name.casefold() and (day is None or b.day == day)
        ]
        return sorted(found + extra, key=lambda b: (b.day, b.time))

    def get(self, booking_id: str) -> Booking | None:
        """Rule 3."""
        return self.store.get(booking_id) or self._pending.get(booking_id)

    def reschedule(self, booking_id: str, day: date, at: dtime) -> Booking | None:
        """Rule 3 (the booking table)."""
        return self.store.reschedule(booking_id, day, at)

    def cancel(self, booking_id: str) -> Booking | None:
        """Rule 3 (the booking table)."""
        return self.store.cancel(booking_id)
