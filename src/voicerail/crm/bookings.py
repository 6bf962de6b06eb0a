"""Bookings through the CRM outbox, for the flow engine (the LLM agent has its own path).

Rules kept here:

1. :meth:`OutboxBookings.create` records the booking as a ``booking`` CRM write
   in the outbox (with the call's state) instead of writing the booking table;
   the relay delivers it, and the embedded CRM writes the table under the same
   idempotency key (``crm/embedded.py`` rule 3).
2. The confirmation number is derived from the idempotency key
   (``"BK-"`` and 8 hex digits of its SHA-256), so the number the caller hears
   is the one the relay writes, however often the turn is replayed.
3. Every booking write names its booking as the entity
   (``booking:<confirmation number>``, ``crm/model.py`` rule 3) and carries
   the booking's whole state (name, day, time, status), never a change.
   :meth:`OutboxBookings.reschedule` and :meth:`OutboxBookings.cancel` are
   such writes too, so the outbox delivers a booking's writes in order and a
   newer one supersedes an older one not yet delivered (``crm/outbox.py``
   rule 6): a booking rescheduled or cancelled before its first delivery
   reaches the CRM in its final state only, never live after a cancel.
4. Reads go to the booking table, overlaid with this process's writes the
   relay has not applied yet (the relay runs continuously; its first attempt
   follows within its idle interval), so the dialog names and changes a
   booking made moments ago. A reschedule or cancel is keyed by its booking,
   its action and a random part: replaying one queues the same whole state
   again, which changes nothing at the CRM.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import OrderedDict
from dataclasses import replace
from datetime import date
from datetime import time as dtime

from voicerail.clock import Clock, SystemClock
from voicerail.crm.model import CRMWrite, WriteAction
from voicerail.crm.outbox import Outbox
from voicerail.dialog.bookings import Booking, BookingStore

#: Rule 4's overlay keeps this process's latest writes of at most this many bookings.
MAX_PENDING = 10_000


def booking_id_for(idempotency_key: str) -> str:
    """Rule 2's confirmation number."""
    return "BK-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:8].upper()


def booking_entity(booking_id: str) -> str:
    """Rule 3's entity of a booking."""
    return f"booking:{booking_id}"


class OutboxBookings:
    """A :class:`~voicerail.dialog.bookings.Bookings` whose writes go through the outbox.

    Args:
        store: the booking table (reads; the embedded CRM applies the writes).
        outbox: where the writes are recorded.
        clock: the wall clock of the outbox's times.
    """

    def __init__(self, store: BookingStore, outbox: Outbox, clock: Clock | None = None) -> None:
        self.store = store
        self.outbox = outbox
        self.clock = clock or SystemClock()
        # Rule 4: by booking id, the latest state, newest last. Bounded: with a cloud
        # CRM the table never receives the booking, so entries are not cleared by it.
        self._pending: OrderedDict[str, Booking] = OrderedDict()

    def create(
        self,
        call_id: str,
        name: str,
        day: date,
        at: dtime,
        idempotency_key: str,
        booking_id: str | None = None,
    ) -> Booking:
        """Rules 1-3.

        Raises:
            StoreError: the outbox failed; nothing was recorded.
        """
        booking = Booking(booking_id or booking_id_for(idempotency_key), call_id, name, day, at)
        self._record(booking, idempotency_key)
        return booking

    def _record(self, booking: Booking, key: str) -> None:
        properties = {
            "name": booking.name,
            "day": booking.day.isoformat(),
            "time": booking.time.isoformat("minutes"),
            "booking_id": booking.booking_id,
            "status": booking.status,
        }
        entity = booking_entity(booking.booking_id)
        write = CRMWrite(key, booking.call_id, WriteAction.BOOKING, properties, entity=entity)
        state = json.dumps({"booking_id": booking.booking_id, "status": booking.status})
        self.outbox.record(booking.call_id, state, [write], self.clock.wall())
        self._pending[booking.booking_id] = booking
        self._pending.move_to_end(booking.booking_id)
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)

    def _change(self, booking: Booking, action: str) -> Booking:
        key = f"{booking_entity(booking.booking_id)}:{action}:{uuid.uuid4().hex[:12]}"
        self._record(booking, key)
        return booking

    def _latest(self, booking_id: str) -> Booking | None:
        """Rule 4: this process's latest write of the booking, until the table has it."""
        pending = self._pending.get(booking_id)
        stored = self.store.get(booking_id)
        if pending is None:
            return stored
        if stored is not None and (stored.day, stored.time, stored.status) == (
            pending.day,
            pending.time,
            pending.status,
        ):
            del self._pending[booking_id]
            return stored
        return pending

    def find(self, name: str, day: date | None = None) -> list[Booking]:
        """Rule 4: active bookings under ``name`` (optionally on ``day``), earliest first."""
        found = {b.booking_id: b for b in self.store.find(name, day)}
        for booking_id in list(self._pending):
            latest = self._latest(booking_id)
            if latest is not None:
                found[booking_id] = latest
        return sorted(
            (
                b
                for b in found.values()
                if b.status == "booked"
                and b.name.casefold() == name.casefold()
                and (day is None or b.day == day)
            ),
            key=lambda b: (b.day, b.time),
        )

    def get(self, booking_id: str) -> Booking | None:
        """Rule 4."""
        return self._latest(booking_id)

    def reschedule(self, booking_id: str, day: date, at: dtime) -> Booking | None:
        """Rule 3: the booking at its new time, through the outbox.

        Returns:
            The booking moved, or None when there is no active booking ``booking_id``.

        Raises:
            StoreError: the table or the outbox failed.
        """
        booking = self._latest(booking_id)
        if booking is None or booking.status != "booked":
            return None
        return self._change(replace(booking, day=day, time=at), "reschedule")

    def cancel(self, booking_id: str) -> Booking | None:
        """Rule 3: the booking cancelled, through the outbox (cancelling twice is harmless).

        Returns:
            The booking, now cancelled, or None when there is no booking ``booking_id``.

        Raises:
            StoreError: the table or the outbox failed.
        """
        booking = self._latest(booking_id)
        if booking is None or booking.status == "cancelled":
            return booking
        return self._change(replace(booking, status="cancelled"), "cancel")
