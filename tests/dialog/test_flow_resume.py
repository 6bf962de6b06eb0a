"""A flow dialog carried on by another worker: restored from its snapshot, it recaps
what was gathered, asks the pending question, and never books twice."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from voicerail.dialog.base import TEXT_NOT_KEPT
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.embeddings import MiniLMEmbedder
from voicerail.dialog.flows import FlowAgent, load_agent
from voicerail.errors import StoreError

CLINIC = Path(__file__).parents[2] / "examples" / "clinic.yaml"
SUNDAY = date(2026, 11, 22)


@pytest.fixture
def agent(embedder: MiniLMEmbedder, tmp_path: Path) -> FlowAgent:
    store = BookingStore(tmp_path / "bookings.sqlite3")
    return load_agent(CLINIC, bookings=store, embedder=embedder, today=lambda: SUNDAY)


def carried(snapshot: dict) -> dict:
    """What another worker reads back from the state store."""
    return json.loads(json.dumps(snapshot))


async def test_a_restored_dialog_recaps_the_slots_and_asks_the_pending_question(agent):
    first = agent.new_dialog("vr_1")
    await first.start()
    await first.on_user_turn("I'd like to book an appointment next Tuesday at 3 p.m.", 0.9)
    second = agent.new_dialog("vr_1")
    second.restore(carried(first.snapshot()))
    reply = await second.resume()
    assert reply.text == (
        "Sorry, I lost you for a moment. So far I have Tuesday, November 24 at 3 PM."
        " May I have your full name, please?"
    )
    confirm = await second.on_user_turn("My name is Maria Lopez.", 0.9)
    assert confirm.text.startswith("So that's Tuesday, November 24 at 3 PM for Maria Lopez.")


async def test_a_confirmation_replayed_after_a_resume_books_once(agent):
    """The worker died after booking, before its state write: the new worker holds the
    older snapshot, the caller says yes again, and the idempotency key finds the booking."""
    first = agent.new_dialog("vr_2")
    await first.start()
    await first.on_user_turn("Book me next Tuesday at 3 p.m., my name is Maria Lopez.", 0.9)
    before_yes = carried(first.snapshot())
    booked = await first.on_user_turn("Yes.", 0.9)
    second = agent.new_dialog("vr_2")
    second.restore(before_yes)
    assert "Shall I book it?" in (await second.resume()).text
    again = await second.on_user_turn("Yes.", 0.9)
    assert again.booking_id == booked.booking_id is not None
    assert len(agent.bookings.list_bookings()) == 1


async def test_a_fresh_dialog_resumes_with_its_first_question(agent):
    dialog = agent.new_dialog("vr_3")
    dialog.restore(carried(agent.new_dialog("vr_3").snapshot()))
    assert (await dialog.resume()).text == (
        "Sorry, I lost you for a moment. How can I help you today?"
    )


def test_a_snapshot_of_another_agent_is_refused(agent):
    dialog = agent.new_dialog("vr_4")
    with pytest.raises(StoreError, match="unknown node 'elsewhere'"):
        dialog.restore({**dialog.snapshot(), "node": "elsewhere"})
    with pytest.raises(StoreError, match="unreadable dialog snapshot"):
        dialog.restore({"node": "start"})


async def test_a_snapshot_without_free_text_keeps_the_slots_but_not_the_callers_words(agent):
    first = agent.new_dialog("vr_1")
    await first.start()
    await first.on_user_turn("I'd like to book an appointment next Tuesday at 3 p.m.", 0.9)
    snapshot = carried(first.snapshot(free_text=False))
    assert "next Tuesday" not in json.dumps(snapshot)
    assert {role for role, text in snapshot["history"] if text == TEXT_NOT_KEPT} == {"user"}
    second = agent.new_dialog("vr_1")
    second.restore(snapshot)
    reply = await second.resume()
    assert "Tuesday, November 24 at 3 PM" in reply.text
