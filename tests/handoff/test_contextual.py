"""The clinic flow agent, wrapped: the caller is recognized and each flow handoff is summarized."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from voicerail.crm.embedded import EmbeddedCRM
from voicerail.crm.gate import ContextPolicy
from voicerail.crm.outbox import SQLiteOutbox
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.embeddings import MiniLMEmbedder
from voicerail.dialog.flows import load_agent
from voicerail.handoff.contextual import ContextualAgent, ContextualDialog

CLINIC = Path(__file__).parents[2] / "examples" / "clinic.yaml"
SUNDAY = date(2026, 11, 22)
PHONE = "+15551230000"


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def clinic(tmp_path: Path, embedder: MiniLMEmbedder) -> tuple[ContextualAgent, SQLiteOutbox]:
    store = BookingStore(tmp_path / "bookings.sqlite3")
    crm = EmbeddedCRM(tmp_path / "crm.sqlite3", bookings=store)
    crm.add_contact(PHONE, {"first_name": "Ana", "card_number": "4111 1111 1111 1111"})
    outbox = SQLiteOutbox(tmp_path / "outbox.sqlite3")
    flows = load_agent(CLINIC, bookings=store, embedder=embedder, today=lambda: SUNDAY)
    agent = ContextualAgent(
        flows, crm=crm, policy=ContextPolicy(must=("first_name",)), outbox=outbox
    )
    return agent, outbox


async def dialog(agent: ContextualAgent, call_id: str) -> ContextualDialog:
    d = agent.new_dialog(call_id)
    d.caller_known(PHONE)
    await d.start()
    return d


async def test_the_caller_is_recognized_on_the_first_turn(tmp_path, embedder) -> None:
    """The first reply says the CRM knew the caller and which fields the agent may see."""
    agent, _ = clinic(tmp_path, embedder)
    d = await dialog(agent, "c1")
    reply = await d.on_user_turn("Hi, I'd like to book an appointment.", 0.9)
    assert reply.data["crm_known_caller"] is True
    assert reply.data["crm_fields"] == ["first_name"]
    assert "crm_fields" not in (await d.on_user_turn("Next Tuesday.", 0.9)).data


async def test_asking_for_a_person_after_booking_is_summarized(tmp_path, embedder) -> None:
    """Explicit request: the summary names the caller, the booking and the caller's words."""
    agent, outbox = clinic(tmp_path, embedder)
    d = await dialog(agent, "c2")
    await d.on_user_turn("Book Tuesday at 3pm, my name is Ana Ruiz.", 0.9)
    booked = await d.on_user_turn("Yes.", 0.9)
    reply = await d.on_user_turn("Can I talk to a real person please?", 0.9)
    assert reply.handoff
    summary = reply.pii["handoff_summary"]
    assert summary["reason"] == "explicit" and summary["caller"] == {"first_name": "Ana"}
    assert summary["actions"] == [f"booked {booked.booking_id}"]
    assert summary["collected"]["name"] == "Ana Ruiz"
    assert summary["caller_expects"] == "Can I talk to a real person please?"
    assert "4111" not in str(reply.pii) and "4111" not in str(reply.data)
    assert reply.pii["handoff_whisper"].startswith("Incoming transfer: Ana, a known customer.")
    assert [r[0] for r in outbox.rows()] == ["c2:t3:handoff_summary"]


async def test_two_misunderstandings_are_summarized(tmp_path, embedder) -> None:
    """Today's second rule: the reason says the assistant did not understand twice."""
    agent, _ = clinic(tmp_path, embedder)
    d = await dialog(agent, "c3")
    await d.on_user_turn("purple elephant bicycle", 0.9)
    reply = await d.on_user_turn("zebra quantum marmalade", 0.9)
    assert reply.handoff
    summary = reply.pii["handoff_summary"]
    assert summary["reason"] == "misunderstanding"
    assert "did not understand the caller 2 times" in summary["reason_text"]


async def test_keypad_zero_is_an_explicit_request(tmp_path, embedder) -> None:
    """Pressing 0 hands off as an explicit request."""
    agent, _ = clinic(tmp_path, embedder)
    d = await dialog(agent, "c4")
    reply = await d.on_dtmf("0")
    assert reply.handoff and reply.pii["handoff_summary"]["reason"] == "explicit"
