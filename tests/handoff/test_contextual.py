"""The clinic flow agent, wrapped: the caller is recognized and each flow handoff is summarized."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from voicerail.crm.embedded import EmbeddedCRM
from voicerail.crm.gate import ContextPolicy
from voicerail.crm.outbox import SQLiteOutbox
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.embeddings import MiniLMEmbedder
from voicerail.dialog.flows import load_agent
from voicerail.handoff.contextual import ContextualAgent, ContextualDialog
from voicerail.handoff.rules import HandoffPolicy

CLINIC = Path(__file__).parents[2] / "examples" / "clinic.yaml"
SUNDAY = date(2026, 11, 22)
PHONE = "+15551230000"


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def clinic(
    tmp_path: Path, embedder: MiniLMEmbedder, **kwargs: Any
) -> tuple[ContextualAgent, SQLiteOutbox]:
    store = BookingStore(tmp_path / "bookings.sqlite3")
    crm = EmbeddedCRM(tmp_path / "crm.sqlite3", bookings=store)
    crm.add_contact(
        PHONE,
        {"first_name": "Ana", "customer_tier": "Platinum", "card_number": "4111 1111 1111 1111"},
    )
    outbox = SQLiteOutbox(tmp_path / "outbox.sqlite3")
    flows = load_agent(CLINIC, bookings=store, embedder=embedder, today=lambda: SUNDAY)
    policy = ContextPolicy(must=("first_name", "customer_tier"))
    agent = ContextualAgent(flows, crm=crm, policy=policy, outbox=outbox, **kwargs)
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
    assert reply.data["crm_fields"] == ["customer_tier", "first_name"]
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
    assert summary["reason"] == "explicit" and summary["caller"]["first_name"] == "Ana"
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


async def test_rule_intent_hands_off_a_listed_intent(tmp_path, embedder) -> None:
    """handoff_rules.intents: asking about opening hours goes to a person."""
    rules = HandoffPolicy.from_mapping({"intents": ["hours"]})
    agent, _ = clinic(tmp_path, embedder, rules=rules, handoff_text="Transferring you.")
    d = await dialog(agent, "c5")
    reply = await d.on_user_turn("Are you open on Saturday?", 0.9)
    assert reply.handoff and reply.end_call and reply.text == "Transferring you."
    summary = reply.pii["handoff_summary"]
    assert summary["reason"] == "intent" and "raised hours" in summary["reason_text"]


async def test_rule_tier_hands_off_a_platinum_caller_at_the_first_miss(tmp_path, embedder) -> None:
    """The flow alone waits for a second miss; a platinum customer goes at the first."""
    rules = HandoffPolicy.from_mapping({"tier": {"field": "customer_tier", "values": ["platinum"]}})
    agent, _ = clinic(tmp_path, embedder, rules=rules)
    d = await dialog(agent, "c6")
    reply = await d.on_user_turn("purple elephant bicycle", 0.9)
    assert reply.handoff
    summary = reply.pii["handoff_summary"]
    assert summary["reason"] == "tier" and "a Platinum customer" in summary["reason_text"]


async def test_rule_sentiment_with_a_scorer(tmp_path, embedder) -> None:
    """With a scorer, one turn below the threshold (turns: 1) hands off."""
    rules = HandoffPolicy.from_mapping({"sentiment": {"below": -0.5, "turns": 1}})
    scorer = lambda text: -0.9 if "terrible" in text else 0.0  # noqa: E731
    agent, _ = clinic(tmp_path, embedder, rules=rules, sentiment=scorer)
    d = await dialog(agent, "c7")
    assert not (await d.on_user_turn("I'd like to book an appointment.", 0.9)).handoff
    reply = await d.on_user_turn("This is terrible, I want to book Tuesday.", 0.9)
    assert reply.handoff and reply.pii["handoff_summary"]["reason"] == "sentiment"


def test_the_wrapper_passes_the_fixed_texts_on_to_the_phrase_cache(tmp_path, embedder) -> None:
    """Without them the phrase cache warmed nothing and every greeting hit piper."""
    from voicerail.session.phrase_cache import fixed_sentences

    agent, _ = clinic(tmp_path, embedder)
    sentences = fixed_sentences(agent.fixed_texts())
    assert "Hello, thanks for calling Riverside Family Clinic." in sentences
    assert agent.handoff_text in agent.fixed_texts()
    assert len(sentences) >= 20


async def test_a_known_callers_name_is_filled_from_the_crm(tmp_path, embedder) -> None:
    """With ``fill: {name: [first_name, last_name]}`` the agent confirms the booking under
    the CRM's name without asking for it; the reply names the slot, not the value."""
    store = BookingStore(tmp_path / "bookings.sqlite3")
    crm = EmbeddedCRM(tmp_path / "crm.sqlite3", bookings=store)
    crm.add_contact(PHONE, {"first_name": "Ana", "last_name": "Ruiz", "diagnosis": "asthma"})
    flows = load_agent(CLINIC, bookings=store, embedder=embedder, today=lambda: SUNDAY)
    policy = ContextPolicy.from_mapping(
        {"must": ["first_name", "last_name"], "fill": {"name": ["first_name", "last_name"]}}
    )
    d = await dialog(ContextualAgent(flows, crm=crm, policy=policy), "c9")
    reply = await d.on_user_turn("I'd like to book next Tuesday at 3 PM.", 0.9)
    assert reply.data["crm_filled"] == ["name"]
    assert "for Ana Ruiz" in reply.text and "Shall I book it?" in reply.text
    assert "Ana" not in str(reply.data)


async def test_a_name_the_caller_said_is_not_overwritten(tmp_path, embedder) -> None:
    """The caller named someone else in their first words: that name is booked."""
    store = BookingStore(tmp_path / "bookings.sqlite3")
    crm = EmbeddedCRM(tmp_path / "crm.sqlite3", bookings=store)
    crm.add_contact(PHONE, {"first_name": "Ana", "last_name": "Ruiz"})
    flows = load_agent(CLINIC, bookings=store, embedder=embedder, today=lambda: SUNDAY)
    policy = ContextPolicy.from_mapping(
        {"must": ["first_name", "last_name"], "fill": {"name": ["first_name", "last_name"]}}
    )
    d = await dialog(ContextualAgent(flows, crm=crm, policy=policy), "c10")
    await d.on_user_turn("Book Tuesday at 3pm, my name is Maria Lopez.", 0.9)
    reply = await d.on_user_turn("Yes.", 0.9)
    assert reply.booking_id is not None
    (booking,) = store.list_bookings()
    assert booking.name == "Maria Lopez"
