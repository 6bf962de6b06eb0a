"""A flow dialog's state survives a trip through JSON (what a session store keeps)."""

from __future__ import annotations

import json
from datetime import date, time

from voicerail.dialog.bookings import Booking
from voicerail.dialog.flow_state import CONFIRM, CallState, from_snapshot, to_snapshot


def test_slots_target_and_history_round_trip_through_json():
    state = CallState(
        node="book",
        awaiting=CONFIRM,
        slots={"date": date(2026, 12, 8), "time": time(15, 0), "name": "Maria Lopez"},
        target=Booking("BK-0000abcd", "vr_1", "Maria Lopez", date(2026, 12, 8), time(15, 0)),
        misunderstandings=1,
        actions_done={"book": 1},
        history=[("user", "Tuesday at three"), ("agent", "Tuesday at 3 PM?")],
        confirm_heard=False,
    )
    assert from_snapshot(json.loads(json.dumps(to_snapshot(state)))) == state


def test_a_fresh_state_round_trips_too():
    state = CallState(node="start")
    assert from_snapshot(json.loads(json.dumps(to_snapshot(state)))) == state
