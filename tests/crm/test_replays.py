"""Replays never write twice: failover, barge-in after a tool call, resumed worker, relay death."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import date

from voicerail.crm.embedded import EmbeddedCRM
from voicerail.crm.outbox import SQLiteOutbox
from voicerail.crm.relay import Relay
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, LLMAgentSpec
from voicerail.dialog.llm_tools import TOOLS
from voicerail.providers.base import ChatMessage, LLMCapabilities, LLMDelta, ToolCall, ToolSpec
from voicerail.testing.clock import FakeClock

ARGS = {"name": "Ada Lovelace", "day": "2026-12-10", "time": "10:00"}
SPEC = LLMAgentSpec.model_validate(
    {
        "name": "Clinic",
        "greeting": "Hi, you're talking to the clinic's AI assistant; calls are recorded.",
        "llm": {"system_prompt": "You book appointments.", "tools": ["book_appointment"]},
    }
)


class ScriptedLLM:
    """Each chat() streams the next scripted deltas."""

    name, model, capabilities = "scripted", "scripted-1", LLMCapabilities()

    def __init__(self, script: list[list[LLMDelta]]) -> None:
        self.script = list(script)

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        for delta in self.script.pop(0):
            yield delta


def book(call_id: str, **changes: str) -> list[LLMDelta]:
    return [LLMDelta(tool_call=ToolCall(call_id, "book_appointment", {**ARGS, **changes}))]


def said(text: str) -> list[LLMDelta]:
    return [LLMDelta(text=text)]


class Setup:
    def __init__(self, tmp_path, script: list[list[LLMDelta]]) -> None:
        self.clock = FakeClock(wall_offset_s=1_800_000_000.0)
        self.bookings = BookingStore(tmp_path / "b.sqlite3")
        self.crm = EmbeddedCRM(tmp_path / "crm.sqlite3", bookings=self.bookings)
        self.outbox = SQLiteOutbox(tmp_path / "o.sqlite3")
        self.llm = ScriptedLLM(script)
        self.agent = LLMAgent(
            SPEC,
            llm=self.llm,
            bookings=self.bookings,
            outbox=self.outbox,
            clock=self.clock,
            today=lambda: date(2026, 12, 6),
        )

    async def relay_all(self, owner: str = "r1") -> Relay:
        relay = Relay(self.outbox, self.crm, owner, clock=self.clock)
        for _ in range(3):
            await relay.run_once()
            self.clock.advance(1.0)
        return relay


async def test_barge_in_after_the_tool_call_books_once(tmp_path) -> None:
    """The caller interrupts the confirmation and says yes; the model books again: one booking."""
    s = Setup(tmp_path, [book("t1"), said("You're booked, number"), book("t2"), said("Booked.")])
    dialog = s.agent.new_dialog("call-1")
    first = await dialog.on_user_turn("book me Thursday at ten, Ada Lovelace", 0.9)
    dialog.on_agent_heard("You're", first.text)  # barge-in
    second = await dialog.on_user_turn("yes please book it", 0.9)
    await s.relay_all()
    assert first.booking_id == second.booking_id
    assert len(s.outbox.rows()) == 1
    assert len(s.bookings.list_bookings()) == 1
    assert s.crm.records()[0][3] == 1  # delivered once


async def test_a_different_argument_is_a_different_write(tmp_path) -> None:
    """Rule 6 does not swallow a real second booking (another time)."""
    s = Setup(tmp_path, [book("t1"), said("Booked."), book("t2", time="11:00"), said("Booked.")])
    dialog = s.agent.new_dialog("call-1")
    await dialog.on_user_turn("book me at ten", 0.9)
    await dialog.on_user_turn("and another one at eleven", 0.9)
    await s.relay_all()
    assert len(s.bookings.list_bookings()) == 2


async def test_failover_replay_of_the_same_turn_books_once(tmp_path) -> None:
    """A failover restarts the turn's reply on another provider: same key, queued once."""
    s = Setup(tmp_path, [book("a1"), said("Booked."), book("b1"), said("Booked.")])
    dialog = s.agent.new_dialog("call-1")
    first = await dialog.on_user_turn("book me at ten", 0.9)
    # A worker resumes the call from its recorded state: a new dialog replays turn 1.
    resumed = s.agent.new_dialog("call-1")
    replay = await resumed.on_user_turn("book me at ten", 0.9)
    relay = await s.relay_all()
    assert first.booking_id == replay.booking_id
    assert len(s.outbox.rows()) == 1 and relay.counts.delivered == 1
    assert [b.booking_id for b in s.bookings.list_bookings()] == [first.booking_id]


async def test_relay_restart_mid_delivery_writes_once(tmp_path) -> None:
    """A relay dies after the CRM committed but before marking the row; its successor updates."""
    s = Setup(tmp_path, [book("a1"), said("Booked.")])
    dialog = s.agent.new_dialog("call-1")
    reply = await dialog.on_user_turn("book me at ten", 0.9)
    (entry,) = s.outbox.claim("dead-relay", 10, s.clock.wall(), 5.0)
    await s.crm.upsert(entry.write)  # committed at the CRM; the relay dies here
    s.clock.advance(6.0)
    await s.relay_all(owner="successor")
    assert [b.booking_id for b in s.bookings.list_bookings()] == [reply.booking_id]
    ((_, _, _, deliveries),) = s.crm.records()
    assert deliveries == 2  # the second delivery updated the same record
    assert s.outbox.stats(s.clock.wall()).delivered == 1


async def test_call_end_writes_summary_disposition_and_lead_once(tmp_path) -> None:
    """An unknown caller's call ends twice (a resumed worker): one summary, disposition, lead."""
    s = Setup(tmp_path, [book("t1"), said("Booked.")])
    s.agent.crm = s.crm  # knows no contact: the caller is unknown
    dialog = s.agent.new_dialog("call-9")
    dialog.caller_known("+1 555 000 1234")
    reply = await dialog.on_user_turn("book me at ten", 0.9)
    dialog.on_call_ended("completed", 1)
    dialog.on_call_ended("completed", 1)
    await s.relay_all()
    records = {action: props for _, action, props, _ in s.crm.records()}
    assert set(records) == {"booking", "call_summary", "disposition", "lead"}
    assert records["call_summary"]["bookings"] == [reply.booking_id]
    assert records["disposition"] == {"disposition": "completed"}
    assert records["lead"]["phone"] == "+15550001234"
    assert len(s.outbox.rows()) == 4


async def test_an_llm_cancel_before_delivery_reaches_the_crm_cancelled(tmp_path) -> None:
    """The model books, then cancels before the relay ran: the cancel goes through the
    outbox too, so the CRM's one booking record and the table end cancelled."""
    cancel = [LLMDelta(tool_call=ToolCall("c1", "cancel_appointment", {"name": "Ada Lovelace"}))]
    s = Setup(tmp_path, [book("t1"), said("Booked."), cancel, said("Cancelled.")])
    s.agent.tools.append(TOOLS["cancel_appointment"])
    dialog = s.agent.new_dialog("call-1")
    booked = await dialog.on_user_turn("book me at ten", 0.9)
    await dialog.on_user_turn("actually, cancel it", 0.9)
    await s.relay_all()
    ((key, action, props, deliveries),) = s.crm.records()
    assert (key, action, props["status"], deliveries) == (
        f"booking:{booked.booking_id}",
        "booking",
        "cancelled",
        1,
    )
    (row,) = s.bookings.list_bookings()
    assert (row.booking_id, row.status) == (booked.booking_id, "cancelled")
