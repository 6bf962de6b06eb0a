"""The LLM dialog mode: tools, idempotent writes on replay, barge-in truncation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date
from pathlib import Path

import pytest

from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, load_llm_agent_spec
from voicerail.errors import ConfigError
from voicerail.events.model import Outcome
from voicerail.providers.base import (
    ChatMessage,
    LLMCapabilities,
    LLMDelta,
    ToolCall,
    ToolSpec,
)

AGENT = """
name: Clinic (LLM)
greeting: Hi, you're talking to the clinic's AI assistant, and this call may be recorded.
llm:
  system_prompt: You book appointments for a clinic.
  tools: [book_appointment, cancel_appointment, transfer_to_human, end_call]
"""


class ScriptedLLM:
    """Answers each chat() with the next scripted list of deltas; records requests."""

    name, model, capabilities = "scripted", "scripted-1", LLMCapabilities()

    def __init__(self, script: list[list[LLMDelta]]) -> None:
        self.script = list(script)
        self.requests: list[tuple[list[ChatMessage], list[str]]] = []

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        self.requests.append((list(messages), [t.name for t in tools]))
        for delta in self.script.pop(0):
            yield delta


def book_call(call_id: str) -> LLMDelta:
    args = {"name": "Maria Lopez", "day": "2026-11-24", "time": "15:00"}
    return LLMDelta(tool_call=ToolCall(call_id, "book_appointment", args))


@pytest.fixture
def agent_file(tmp_path) -> Path:
    path = tmp_path / "llm.yaml"
    path.write_text(AGENT)
    return path


def make_agent(path: Path, llm: ScriptedLLM, store: BookingStore) -> LLMAgent:
    spec = load_llm_agent_spec(path)
    return LLMAgent(spec, llm=llm, bookings=store, today=lambda: date(2026, 11, 22))


async def test_tool_call_books_and_the_model_speaks_the_result(agent_file, tmp_path):
    store = BookingStore(tmp_path / "b.sqlite3")
    llm = ScriptedLLM(
        [
            [book_call("call_1"), LLMDelta(finish_reason="tool_calls")],
            [LLMDelta(text="You're booked for Tuesday at 3 PM."), LLMDelta(finish_reason="stop")],
        ]
    )
    dialog = make_agent(agent_file, llm, store).new_dialog("c1")
    await dialog.start()
    reply = await dialog.on_user_turn("Book me Tuesday at 3pm, Maria Lopez.", 0.9)
    assert reply.text == "You're booked for Tuesday at 3 PM."
    assert reply.outcome is Outcome.COMPLETED and reply.booking_id
    second_request = llm.requests[1][0]
    assert second_request[-1].role == "tool" and reply.booking_id in second_request[-1].content
    assert "2026-11-22" in second_request[0].content  # the model is told today's date
    assert llm.requests[0][1] == [
        "book_appointment",
        "cancel_appointment",
        "transfer_to_human",
        "end_call",
    ]


async def test_replayed_reply_with_a_tool_call_writes_once(agent_file, tmp_path):
    """A worker that replays the same turn (new tool-call id) finds the first booking."""
    store = BookingStore(tmp_path / "b.sqlite3")
    done = [LLMDelta(text="Booked."), LLMDelta(finish_reason="stop")]
    first = make_agent(agent_file, ScriptedLLM([[book_call("call_A")], done]), store)
    replay = make_agent(agent_file, ScriptedLLM([[book_call("call_B")], done]), store)
    a = await first.new_dialog("c1").on_user_turn("book it", 0.9)
    b = await replay.new_dialog("c1").on_user_turn("book it", 0.9)
    assert a.booking_id == b.booking_id
    assert len(store.list_bookings()) == 1
    other_call = make_agent(agent_file, ScriptedLLM([[book_call("call_C")], done]), store)
    await other_call.new_dialog("c2").on_user_turn("book it", 0.9)
    assert len(store.list_bookings()) == 2


async def test_transfer_tool_hands_off(agent_file, tmp_path):
    llm = ScriptedLLM([[LLMDelta(tool_call=ToolCall("t1", "transfer_to_human", {}))]])
    dialog = make_agent(agent_file, llm, BookingStore(":memory:")).new_dialog("c1")
    reply = await dialog.on_user_turn("I want a person", 0.9)
    assert reply.handoff and reply.end_call and reply.outcome is Outcome.HANDOFF


async def test_bad_tool_arguments_are_reported_back_to_the_model(agent_file):
    bad = LLMDelta(tool_call=ToolCall("t1", "book_appointment", {"name": "X", "day": "soon"}))
    llm = ScriptedLLM([[bad], [LLMDelta(text="Which day exactly?")]])
    dialog = make_agent(agent_file, llm, BookingStore(":memory:")).new_dialog("c1")
    reply = await dialog.on_user_turn("book me soon", 0.9)
    assert reply.text == "Which day exactly?"
    assert "invalid arguments" in llm.requests[1][0][-1].content


async def test_barge_in_keeps_only_the_heard_words_in_history(agent_file):
    llm = ScriptedLLM([[LLMDelta(text="Tuesday works. Shall I book it for 3 PM?")]])
    dialog = make_agent(agent_file, llm, BookingStore(":memory:")).new_dialog("c1")
    reply = await dialog.on_user_turn("Tuesday?", 0.9)
    dialog.on_agent_heard("Tuesday works.", reply.text)
    assert dialog.messages[-1] == ChatMessage("assistant", "Tuesday works.")


def test_unknown_tool_is_a_config_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(AGENT.replace("end_call]", "launch_rockets]"))
    with pytest.raises(ConfigError, match="launch_rockets"):
        load_llm_agent_spec(path)
