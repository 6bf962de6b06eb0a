"""The booking store's idempotent writes."""

from datetime import date, time

from voicerail.dialog.bookings import BookingStore


def test_same_idempotency_key_returns_the_first_booking_and_writes_once(tmp_path):
    store = BookingStore(tmp_path / "b.sqlite3")
    first = store.create("c1", "Maria Lopez", date(2026, 11, 24), time(15), "c1:book:1")
    again = store.create("c1", "Maria Lopez", date(2026, 11, 24), time(15), "c1:book:1")
    assert again == first
    assert len(store.list_bookings()) == 1
    other = store.create("c1", "Maria Lopez", date(2026, 11, 25), time(9), "c1:book:2")
    assert other.booking_id != first.booking_id
    assert len(store.list_bookings()) == 2


def test_find_reschedule_cancel(tmp_path):
    store = BookingStore(tmp_path / "b.sqlite3")
    booking = store.create("c1", "Maria Lopez", date(2026, 11, 24), time(15), "k1")
    assert store.find("maria lopez") == [booking]
    moved = store.reschedule(booking.booking_id, date(2026, 11, 26), time(10, 30))
    assert moved is not None and moved.time == time(10, 30)
    cancelled = store.cancel(booking.booking_id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert store.find("Maria Lopez") == []
    assert store.reschedule("BK-NONE", date(2026, 11, 26), time(10)) is None
