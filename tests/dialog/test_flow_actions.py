"""Flow actions against the booking store: keys, finding the booking to change, writes."""

from __future__ import annotations

from datetime import date, time

import pytest

from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.flow_actions import SlotValue, find_target, idempotency_key, run_action

TODAY = date(2026, 11, 22)


@pytest.fixture
def store() -> BookingStore:
    return BookingStore(":memory:")


def test_idempotency_keys_name_the_call_the_verb_and_the_count() -> None:
    assert idempotency_key("c1", "book_appointment", 1) == "c1:book:1"
    assert idempotency_key("c1", "cancel_appointment", 2) == "c1:cancel:2"


def test_the_earliest_upcoming_booking_is_the_target(store: BookingStore) -> None:
    store.create("c1", "Ana Ruiz", date(2026, 11, 1), time(9), "k1")
    friday = store.create("c2", "Ana Ruiz", date(2026, 11, 27), time(9), "k2")
    store.create("c3", "Ana Ruiz", date(2026, 12, 4), time(9), "k3")
    values: dict[str, SlotValue] = {
        "name": "ana ruiz",
        "day": date(2026, 12, 25),
    }  # a reschedule's new day
    assert find_target(store, "reschedule_appointment", values, TODAY) == friday


def test_cancel_narrows_by_the_day_said(store: BookingStore) -> None:
    store.create("c1", "Ana Ruiz", date(2026, 11, 27), time(9), "k1")
    later = store.create("c2", "Ana Ruiz", date(2026, 12, 4), time(9), "k2")
    values: dict[str, SlotValue] = {"name": "Ana Ruiz", "day": date(2026, 12, 4)}
    assert find_target(store, "cancel_appointment", values, TODAY) == later
    assert find_target(store, "cancel_appointment", {**values, "day": TODAY}, TODAY) is None


def test_with_only_past_bookings_the_latest_is_the_target(store: BookingStore) -> None:
    store.create("c1", "Ana Ruiz", date(2026, 10, 1), time(9), "k1")
    latest = store.create("c2", "Ana Ruiz", date(2026, 11, 1), time(9), "k2")
    assert find_target(store, "cancel_appointment", {"name": "Ana Ruiz"}, TODAY) == latest


def test_book_reschedule_cancel(store: BookingStore) -> None:
    values: dict[str, SlotValue] = {"name": "Ana Ruiz", "day": date(2026, 11, 24), "time": time(15)}
    booking = run_action(
        store, "book_appointment", call_id="c1", key="c1:book:1", values=values, target=None
    )
    assert booking is not None and booking.name == "Ana Ruiz"
    moved = run_action(
        store,
        "reschedule_appointment",
        call_id="c2",
        key="c2:reschedule:1",
        values={**values, "time": time(16)},
        target=booking,
    )
    assert moved is not None and moved.time == time(16)
    cancelled = run_action(
        store, "cancel_appointment", call_id="c3", key="c3:cancel:1", values=values, target=moved
    )
    assert cancelled is not None and cancelled.status == "cancelled"


def test_without_a_target_reschedule_and_cancel_write_nothing(store: BookingStore) -> None:
    values: dict[str, SlotValue] = {"name": "Ana Ruiz", "day": date(2026, 11, 24), "time": time(15)}
    for action in ("reschedule_appointment", "cancel_appointment"):
        assert run_action(store, action, call_id="c", key="k", values=values, target=None) is None
    assert store.list_bookings() == []


def test_unknown_actions_and_mistyped_values_are_refused(store: BookingStore) -> None:
    with pytest.raises(ValueError, match="unknown action 'launch'"):
        run_action(store, "launch", call_id="c", key="k", values={}, target=None)
    bad: dict[str, SlotValue] = {"name": "Ana Ruiz", "day": "Tuesday", "time": time(15)}
    with pytest.raises(TypeError, match="str is not a date"):
        run_action(store, "book_appointment", call_id="c", key="k", values=bad, target=None)
