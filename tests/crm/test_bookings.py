"""The clinic flow agent books through the CRM outbox: same confirmation number, one booking."""

from __future__ import annotations

import asyncio
from datetime import date
from datetime import time as dtime
from pathlib import Path

import pytest

from voicerail.crm.bookings import OutboxBookings, booking_id_for
from voicerail.crm.embedded import EmbeddedCRM
from voicerail.crm.outbox import SQLiteOutbox
from voicerail.crm.relay import Relay
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.embeddings import MiniLMEmbedder
from voicerail.dialog.flows import FlowAgent, load_agent
from voicerail.testing.clock import FakeClock

CLINIC = Path(__file__).parents[2] / "examples" / "clinic.yaml"
SUNDAY = date(2026, 11, 22)


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


class Clinic:
    def __init__(self, tmp_path: Path, embedder: MiniLMEmbedder) -> None:
        self.clock = FakeClock(wall_offset_s=1_800_000_000.0)
        self.store = BookingStore(tmp_path / "bookings.sqlite3")
        self.outbox = SQLiteOutbox(tmp_path / "outbox.sqlite3")
        self.crm = EmbeddedCRM(tmp_path / "crm.sqlite3", bookings=self.store)
        self.bookings = OutboxBookings(self.store, self.outbox, self.clock)
        self.agent: FlowAgent = load_agent(
            CLINIC, bookings=self.bookings, embedder=embedder, today=lambda: SUNDAY
        )

    async def book(self, call_id: str) -> str | None:
        dialog = self.agent.new_dialog(call_id)
        await dialog.on_user_turn("Book Tuesday at 3pm, my name is Ana Ruiz.", 0.9)
        return (await dialog.on_user_turn("Yes.", 0.9)).booking_id

    async def relay(self) -> None:
        relay = Relay(self.outbox, self.crm, "r1", clock=self.clock)
        for _ in range(3):
            await relay.run_once()
            self.clock.advance(1.0)


async def test_flow_booking_goes_through_the_outbox(tmp_path, embedder) -> None:
    """The caller hears the key-derived number; the table gets it once the relay ran."""
    clinic = Clinic(tmp_path, embedder)
    booking_id = await clinic.book("c1")
    assert booking_id == booking_id_for("c1:book:1")
    assert clinic.store.list_bookings() == []  # not written by the dialog
    assert [b.booking_id for b in clinic.bookings.find("ana ruiz")] == [booking_id]
    await clinic.relay()
    (booking,) = clinic.store.list_bookings()
    assert (booking.booking_id, booking.name, booking.day) == (
        booking_id,
        "Ana Ruiz",
        date(2026, 11, 24),
    )
    assert clinic.bookings.get(booking_id) == booking


async def test_a_replayed_flow_call_books_once(tmp_path, embedder) -> None:
    """The same call walked again (a resumed worker): one outbox row, one booking."""
    clinic = Clinic(tmp_path, embedder)
    first = await clinic.book("c2")
    again = await clinic.book("c2")
    await clinic.relay()
    assert first == again
    assert len(clinic.outbox.rows()) == 1 and len(clinic.store.list_bookings()) == 1


def test_a_booking_cancelled_before_its_delivery_lands_cancelled(tmp_path) -> None:
    """Booked and cancelled before the relay ran: the table and the CRM record agree on
    cancelled, and no live booking was ever written."""
    clock = FakeClock(wall_offset_s=1_800_000_000.0)
    store = BookingStore(tmp_path / "bookings.sqlite3")
    outbox = SQLiteOutbox(tmp_path / "outbox.sqlite3")
    crm = EmbeddedCRM(tmp_path / "crm.sqlite3", bookings=store)
    bookings = OutboxBookings(store, outbox, clock)
    made = bookings.create("c1", "Ana Ruiz", date(2026, 11, 24), dtime(15, 0), "c1:book:1")
    assert bookings.cancel(made.booking_id) is not None
    assert bookings.find("ana ruiz") == []
    asyncio.run(relay_all(outbox, crm, clock))
    (row,) = store.list_bookings()
    assert (row.booking_id, row.status) == (made.booking_id, "cancelled")
    ((key, _, props, deliveries),) = crm.records()
    assert (key, props["status"], deliveries) == (f"booking:{made.booking_id}", "cancelled", 1)


def test_a_delivered_booking_is_moved_through_the_outbox(tmp_path) -> None:
    """A reschedule after delivery updates the one CRM record and the table."""
    clock = FakeClock(wall_offset_s=1_800_000_000.0)
    store = BookingStore(tmp_path / "bookings.sqlite3")
    outbox = SQLiteOutbox(tmp_path / "outbox.sqlite3")
    crm = EmbeddedCRM(tmp_path / "crm.sqlite3", bookings=store)
    bookings = OutboxBookings(store, outbox, clock)
    made = bookings.create("c1", "Ana Ruiz", date(2026, 11, 24), dtime(15, 0), "c1:book:1")
    asyncio.run(relay_all(outbox, crm, clock))
    moved = bookings.reschedule(made.booking_id, date(2026, 11, 25), dtime(9, 30))
    assert moved is not None and bookings.get(made.booking_id) == moved
    asyncio.run(relay_all(outbox, crm, clock))
    (row,) = store.list_bookings()
    assert (row.day, row.time, row.status) == (date(2026, 11, 25), dtime(9, 30), "booked")
    ((_, _, props, deliveries),) = crm.records()
    assert (props["time"], deliveries) == ("09:30", 2)


async def relay_all(outbox: SQLiteOutbox, crm: EmbeddedCRM, clock: FakeClock) -> None:
    relay = Relay(outbox, crm, "r1", clock=clock)
    for _ in range(3):
        await relay.run_once()
        clock.advance(1.0)


def test_the_overlay_of_undelivered_bookings_is_bounded(tmp_path, monkeypatch) -> None:
    """With a cloud CRM the table never gets the bookings: the overlay keeps the newest."""
    import voicerail.crm.bookings as module

    monkeypatch.setattr(module, "MAX_PENDING", 2)
    store = BookingStore(tmp_path / "bookings.sqlite3")
    bookings = OutboxBookings(store, SQLiteOutbox(tmp_path / "outbox.sqlite3"), FakeClock())
    made = [
        bookings.create(f"c{n}", "Ana Ruiz", date(2026, 11, 24), dtime(9 + n, 0), f"c{n}:book:1")
        for n in range(3)
    ]
    assert bookings.get(made[0].booking_id) is None
    assert [b.booking_id for b in bookings.find("ana ruiz")] == [b.booking_id for b in made[1:]]
