"""The booking store: idempotent writes, lookups, reschedule and cancel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import date, time
from pathlib import Path

import pytest

from voicerail.dialog.bookings import BookingStore
from voicerail.errors import StoreError

TUESDAY = date(2026, 11, 24)


def test_same_idempotency_key_returns_the_first_booking_and_writes_once(tmp_path: Path) -> None:
    store = BookingStore(tmp_path / "b.sqlite3")
    first = store.create("c1", "Maria Lopez", TUESDAY, time(15), "c1:book:1")
    again = store.create("c1", "Maria Lopez", TUESDAY, time(15), "c1:book:1")
    assert again == first
    assert len(store.list_bookings()) == 1
    other = store.create("c1", "Maria Lopez", date(2026, 11, 25), time(9), "c1:book:2")
    assert other.booking_id != first.booking_id
    assert len(store.list_bookings()) == 2


def test_a_replay_with_other_values_still_returns_the_first_booking(tmp_path: Path) -> None:
    """The key decides: a replayed request that drifted (another time) changes nothing."""
    store = BookingStore(tmp_path / "b.sqlite3")
    first = store.create("c1", "Maria Lopez", TUESDAY, time(15), "c1:book:1")
    assert store.create("c1", "Maria Lopez", TUESDAY, time(16), "c1:book:1") == first
    assert [b.time for b in store.list_bookings()] == [time(15)]


def test_concurrent_replays_from_threads_and_a_second_connection_write_once(
    tmp_path: Path,
) -> None:
    """Eight threads on one store and a second store on the same file (another worker)."""
    path = tmp_path / "b.sqlite3"
    stores = [BookingStore(path), BookingStore(path)]

    def book(index: int) -> str:
        store = stores[index % 2]
        return store.create("c1", "Ana Ruiz", TUESDAY, time(10), "c1:book:1").booking_id

    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(book, range(16)))
    assert len(ids) == 1
    assert len(stores[0].list_bookings()) == 1


def test_find_by_name_ignores_case_and_can_narrow_by_day(tmp_path: Path) -> None:
    store = BookingStore(tmp_path / "b.sqlite3")
    later = store.create("c1", "Maria Lopez", date(2026, 11, 27), time(9), "k1")
    sooner = store.create("c2", "Maria Lopez", TUESDAY, time(15), "k2")
    store.create("c3", "Ana Ruiz", TUESDAY, time(15), "k3")
    assert store.find("maria lopez") == [sooner, later]
    assert store.find("MARIA LOPEZ", day=date(2026, 11, 27)) == [later]
    assert store.find("Nobody") == []
    assert store.get(later.booking_id) == later
    assert store.get("BK-NONE") is None


def test_reschedule_and_cancel(tmp_path: Path) -> None:
    store = BookingStore(tmp_path / "b.sqlite3")
    booking = store.create("c1", "Maria Lopez", TUESDAY, time(15), "k1")
    moved = store.reschedule(booking.booking_id, date(2026, 11, 26), time(10, 30))
    assert moved is not None and (moved.day, moved.time) == (date(2026, 11, 26), time(10, 30))
    cancelled = store.cancel(booking.booking_id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert store.cancel(booking.booking_id) == cancelled  # twice is harmless
    assert store.find("Maria Lopez") == []
    assert store.reschedule(booking.booking_id, TUESDAY, time(9)) is None  # cancelled
    assert store.reschedule("BK-NONE", TUESDAY, time(9)) is None
    assert store.cancel("BK-NONE") is None


def test_rows_keep_the_columns_the_simulator_reads(tmp_path: Path) -> None:
    """``voicerail simulate`` reads the table directly (sim/runner.py: read_bookings)."""
    store = BookingStore(tmp_path / "b.sqlite3")
    store.create("c1", "Maria Lopez", TUESDAY, time(15), "c1:book:1")
    row = store._db.execute("SELECT call_id, name, day, time, updated_at FROM bookings").fetchone()
    assert row[:4] == ("c1", "Maria Lopez", "2026-11-24", "15:00") and row[4] > 0


def test_an_unopenable_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="cannot open the booking store"):
        BookingStore(tmp_path / "file" / "b.sqlite3")


def test_a_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = BookingStore(tmp_path / "b.sqlite3")
    store.close()
    with pytest.raises(StoreError, match="booking write failed"):
        store.create("c1", "Maria Lopez", TUESDAY, time(15), "k1")
    with pytest.raises(StoreError, match="booking read failed"):
        store.find("Maria Lopez")
