"""The LLM dialog carried on in another stream: snapshot, restore and resume
(dialog/llm_agent.py rule 9, dialog/llm_state.py), and the handoff wrapper's
counters with it (handoff/contextual.py rule 5)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import date
from typing import Any

import pytest

from voicerail.crm.gate import ContextPolicy
from voicerail.dialog.base import TEXT_NOT_KEPT, AgentReply
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, LLMAgentSpec
from voicerail.errors import StoreError
from voicerail.events.model import Outcome
from voicerail.handoff.contextual import SNAPSHOT_KEY, ContextualAgent
from voicerail.handoff.rules import HandoffPolicy
from voicerail.providers.base import ChatMessage, LLMCapabilities, LLMDelta, ToolCall, ToolSpec
from voicerail.state.resume import resumable
from voicerail.state.session import SessionState
from voicerail.testing.doubles import QuietDialog

SPEC = LLMAgentSpec.model_validate(
    {
        "name": "Clinic (LLM)",
        "greeting": "Hi, you're talking to the clinic's AI assistant.",
        "llm": {"system_prompt": "Book visits.", "tools": ["book_appointment", "end_call"]},
    }
)
BOOK = {"name": "Maria Lopez", "day": "2026-11-24", "time": "15:00"}


class ScriptedLLM:
    """Answers each chat() with the next scripted deltas; keeps the requests."""

    name, model, capabilities = "scripted", "scripted-1", LLMCapabilities()

    def __init__(self, *script: list[LLMDelta]) -> None:
        self.script = list(script)
        self.requests: list[list[ChatMessage]] = []

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        self.requests.append(list(messages))
        for delta in self.script.pop(0):
            yield delta


def agent(llm: ScriptedLLM, store: BookingStore) -> LLMAgent:
    return LLMAgent(SPEC, llm=llm, bookings=store, today=lambda: date(2026, 11, 22))


def book(call_id: str) -> list[LLMDelta]:
    return [LLMDelta(tool_call=ToolCall(call_id, "book_appointment", dict(BOOK)))]


def stored(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Through the session store's JSON, as another worker reads it."""
    state = SessionState("c1", version=1, dialog=snapshot)
    return SessionState.from_json(state.to_json(), call_id="c1").dialog


async def test_a_restored_llm_call_recaps_its_booking_and_never_books_twice(tmp_path):
    store = BookingStore(tmp_path / "b.sqlite3")
    first = agent(
        ScriptedLLM(book("t1"), [LLMDelta(text="Booked. Anything else?")]), store
    ).new_dialog("c1")
    await first.start()
    booked = await first.on_user_turn("Book Tuesday at 3pm for Maria Lopez.", 0.9)
    snapshot = stored(first.snapshot())

    llm = ScriptedLLM(book("t9"), [LLMDelta(text="That's already booked.")])
    second = agent(llm, store).new_dialog("c1")
    second.restore(snapshot)
    recap = await second.resume()
    assert recap.text == (
        "Sorry, I lost you for a moment. I have booked Tuesday, November 24 at 3 PM "
        "for Maria Lopez. Booked. Anything else?"
    )
    again = await second.on_user_turn("Please book Tuesday at 3 for Maria Lopez.", 0.9)
    assert again.booking_id == booked.booking_id and again.outcome is Outcome.COMPLETED
    assert len(store.list_bookings()) == 1  # llm_agent.py rule 6 across the resume
    history = llm.requests[0]
    assert history[0].role == "system" and "2026-11-22" in history[0].content
    assert [m.role for m in history[1:]] == [
        "assistant", "user", "assistant", "tool", "assistant", "assistant", "user",
    ]  # fmt: skip
    assert history[2].content == "Book Tuesday at 3pm for Maria Lopez."
    assert history[3].tool_calls[0].arguments == BOOK
    assert history[6].content == recap.text  # the model sees what the caller heard
    assert second.turn == 2  # idempotency keys go on from the first stream's turns


async def test_without_free_text_no_caller_words_are_kept_but_the_slots_are(tmp_path):
    dialog = agent(ScriptedLLM(book("t1"), [LLMDelta(text="Booked.")]), BookingStore(":memory:"))
    d = dialog.new_dialog("c1")
    await d.on_user_turn("I'm Maria Lopez, book Tuesday at three.", 0.9)
    snapshot = d.snapshot(free_text=False)
    text = json.dumps(snapshot)
    assert "book Tuesday at three" not in text
    [user] = [m for m in snapshot["messages"] if m["role"] == "user"]
    assert user["content"] == TEXT_NOT_KEPT
    assert snapshot["messages"][1]["tool_calls"][0]["arguments"] == BOOK


async def test_an_ended_llm_call_is_not_resumable_and_a_bad_snapshot_is_refused():
    llm = ScriptedLLM([LLMDelta(tool_call=ToolCall("t1", "end_call", {}))])
    d = agent(llm, BookingStore(":memory:")).new_dialog("c1")
    assert resumable(SessionState("c1", version=1, dialog=d.snapshot()))
    reply = await d.on_user_turn("That's all, bye.", 0.9)
    assert reply.end_call
    assert not resumable(SessionState("c1", version=1, dialog=d.snapshot()))
    fresh = agent(ScriptedLLM(), BookingStore(":memory:")).new_dialog("c1")
    with pytest.raises(StoreError, match="call c1: unreadable llm snapshot"):
        fresh.restore({"node": "greeting"})  # a flow dialog's snapshot


class Plain(QuietDialog):
    """Answers every turn the same; its snapshot is a counter."""

    def __init__(self) -> None:
        self.turns = 0

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        self.turns += 1
        return AgentReply("I see.")

    def snapshot(self) -> dict[str, Any]:
        return {"turns": self.turns}

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.turns = snapshot["turns"]


class PlainAgent:
    name = "plain"

    def new_dialog(self, call_id: str) -> Plain:
        return Plain()


def wrapped() -> ContextualAgent:
    rules = HandoffPolicy.from_mapping({"sentiment": {"below": -0.5, "turns": 2}})
    return ContextualAgent(
        PlainAgent(), crm=None, policy=ContextPolicy(), rules=rules, sentiment=lambda t: -0.9
    )


async def test_the_handoff_rule_counters_come_back_with_a_resumed_call():
    """One angry turn before the break and one after hand off, as two in a row would."""
    first = wrapped().new_dialog("c1")
    assert not (await first.on_user_turn("This is useless.", 0.9)).handoff
    snapshot = stored(first.snapshot())
    assert snapshot["turns"] == 1 and snapshot[SNAPSHOT_KEY]["negative"] == 1
    second = wrapped().new_dialog("c1")
    second.restore(snapshot)
    assert second.inner.turns == 1  # the inner dialog got its own part only
    reply = await second.on_user_turn("Still useless.", 0.9)
    assert reply.handoff and reply.data["handoff_reason"] == "sentiment"
    fresh = wrapped().new_dialog("c2")
    assert not (await fresh.on_user_turn("Still useless.", 0.9)).handoff
