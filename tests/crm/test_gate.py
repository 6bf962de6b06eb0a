"""The context gate: deny by default, conditional fields, and denied data nowhere in a call."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict
from datetime import date

import pytest

from voicerail.crm.embedded import EmbeddedCRM
from voicerail.crm.gate import ContextGate, ContextPolicy
from voicerail.crm.lookup import CallerLookup
from voicerail.crm.model import CustomerRecord
from voicerail.crm.outbox import SQLiteOutbox
from voicerail.crm.relay import Relay
from voicerail.dialog.base import AgentReply
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, LLMAgentSpec
from voicerail.errors import ConfigError, CRMError
from voicerail.events.model import Event, EventKind, Stage
from voicerail.events.store import CallRecord, SQLiteEventStore
from voicerail.providers.base import LLMDelta, ToolCall
from voicerail.server.pages import call_body
from voicerail.testing.clock import FakeClock
from voicerail.testing.doubles import ScriptedLLM

PHONE = "+15551230000"
RECORD = {
    "first_name": "Ada",
    "upcoming_appointment": "2026-12-09 09:00",
    "date_of_birth": "1985-03-14",
    "account_balance": "120.50 USD",
    "diagnosis": "Type 2 diabetes mellitus",
    "card_number": "4111 1111 1111 1111",
}
DENIED = ("Type 2 diabetes", "diabetes", "4111 1111 1111 1111", "4111111111111111", "1985-03-14")
POLICY = {
    "must": ["first_name", "upcoming_appointment"],
    "when": {"account_balance": "verified:dob"},
    "verify": {"dob": "date_of_birth"},
}


def test_policy_denies_by_default_and_opens_conditional_fields() -> None:
    """Only `must` fields at first; a `when` field once one of its conditions holds."""
    policy = ContextPolicy.from_mapping(
        {"must": ["a"], "when": {"b": "verified:dob", "c": ["intent:billing", "verified:dob"]}}
    )
    assert policy.allowed([]) == {"a"}
    assert policy.allowed(["intent:billing"]) == {"a", "c"}
    assert policy.allowed(["verified:dob"]) == {"a", "b", "c"}
    assert ContextPolicy.from_mapping(None).allowed(["verified:dob"]) == frozenset()


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"must": "first_name"}, "context.must"),
        ({"when": {"x": "verified"}}, "context.when.x"),
        ({"when": {"x": "mood:happy"}}, "context.when.x"),
        ({"verify": {"dob": 3}}, "context.verify"),
        ({"allow": ["x"]}, "context"),
        ({"must": ["a"], "fill": {"name": ["a", "diagnosis"]}}, "context.fill.name"),
        ({"fill": ["a"]}, "context.fill"),
    ],
)
def test_policy_errors_name_the_field(raw: dict[str, object], field: str) -> None:
    """A malformed context section is refused at load, naming the bad field."""
    with pytest.raises(ConfigError) as caught:
        ContextPolicy.from_mapping(raw, source="clinic.yaml")
    assert caught.value.field == field and caught.value.source == "clinic.yaml"


def test_verification_compares_inside_the_gate() -> None:
    """A right answer opens the conditional fields; a wrong one opens nothing."""
    gate = ContextGate(ContextPolicy.from_mapping(POLICY), CustomerRecord("c1", RECORD))
    assert gate.context().field_names == ["first_name", "upcoming_appointment"]
    assert not gate.verify("dob", "1985-03-15")
    assert not gate.verify("ssn", "1985-03-14")
    assert "account_balance" not in gate.context().fields
    assert gate.verify("dob", " 1985-03-14 ")
    assert gate.context().fields["account_balance"] == "120.50 USD"
    assert "date_of_birth" not in gate.context().fields


def test_three_wrong_answers_lock_the_check() -> None:
    """After three wrong dates of birth even the right one fails for this call."""
    gate = ContextGate(ContextPolicy.from_mapping(POLICY), CustomerRecord("c1", RECORD))
    for wrong in ("1985-03-15", "1985-03-16", "1985-03-17"):
        assert not gate.verify("dob", wrong)
    assert not gate.verify("dob", "1985-03-14")
    assert "account_balance" not in gate.context().fields


def test_unknown_caller_sees_nothing_and_verifies_nothing() -> None:
    """No record: no fields, and a verification cannot pass."""
    gate = ContextGate(ContextPolicy.from_mapping(POLICY), None)
    assert not gate.verify("dob", "1985-03-14")
    context = gate.context()
    assert not context.known_caller and context.fields == {}
    assert context.prompt_text() == "The caller is not in the CRM."


def test_customer_record_repr_hides_fields() -> None:
    """A stray log of the raw record prints no values."""
    assert "diabetes" not in repr(CustomerRecord("c1", RECORD))


class _HangingCRM:
    name = "hanging"

    async def lookup_phone(self, phone_e164: str) -> CustomerRecord | None:
        await asyncio.Event().wait()
        return None

    async def upsert(self, write: object) -> object:
        raise AssertionError("not used")


class _FailingCRM(_HangingCRM):
    async def lookup_phone(self, phone_e164: str) -> CustomerRecord | None:
        raise CRMError("down", provider="failing", status=503)


async def test_lookup_past_its_deadline_is_an_unknown_caller() -> None:
    """A CRM that never answers: after the deadline the call goes on without it."""
    lookup = CallerLookup(_HangingCRM(), ContextPolicy.from_mapping(POLICY), PHONE, 0.01)
    lookup.start()
    context = await lookup.context(wait_s=1.0)
    assert not context.known_caller and lookup.reason == "timeout"


async def test_lookup_not_yet_answered_is_not_waited_for() -> None:
    """Asked with no time to wait, a pending lookup is given up (the greeting never waits)."""
    lookup = CallerLookup(_HangingCRM(), ContextPolicy.from_mapping(POLICY), PHONE, 30.0)
    lookup.start()
    assert not (await lookup.context(wait_s=0.0)).known_caller
    assert lookup.reason == "pending"
    await lookup.aclose()


async def test_lookup_failure_is_recorded_without_personal_data() -> None:
    """A CRM error makes an unknown caller; the reason holds only the status."""
    lookup = CallerLookup(_FailingCRM(), ContextPolicy.from_mapping(POLICY), PHONE, 1.0)
    assert not (await lookup.context(wait_s=1.0)).known_caller
    assert lookup.reason == "error:503"


def _call(tool: str, call_id: str, **args: str) -> list[LLMDelta]:
    return [LLMDelta(tool_call=ToolCall(call_id, tool, args))]


async def test_denied_fields_appear_nowhere_in_a_call(tmp_path, caplog) -> None:
    """A diagnosis, a card number and the date of birth in the CRM record reach no prompt,
    reply, event, log line, outbox row, CRM write or dashboard page; allowed fields do
    reach the prompt, and the balance only after the caller verified."""
    caplog.set_level(logging.DEBUG)
    clock = FakeClock(wall_offset_s=1_800_000_000.0)
    bookings = BookingStore(tmp_path / "bookings.sqlite3")
    crm = EmbeddedCRM(tmp_path / "crm.sqlite3", bookings=bookings)
    crm.add_contact(PHONE, RECORD)
    outbox = SQLiteOutbox(tmp_path / "outbox.sqlite3")
    llm = ScriptedLLM(
        [
            [LLMDelta(text="Hi Ada! What can I do for you?")],
            # The caller's own words, in another format than the CRM's "1985-03-14".
            _call("verify_caller", "v1", check="dob", value="1985 03 14"),
            [LLMDelta(text="Thanks, you're verified. Your balance is 120.50 USD.")],
            _call("book_appointment", "b1", name="Ada Lovelace", day="2026-12-10", time="10:00"),
            [LLMDelta(text="Booked.")],
        ]
    )
    spec = LLMAgentSpec.model_validate(
        {
            "name": "Clinic",
            "greeting": "Hi, you're talking to the clinic's AI assistant; calls are recorded.",
            "llm": {
                "system_prompt": "You are the clinic's assistant.",
                "tools": ["verify_caller", "book_appointment"],
            },
            "context": POLICY,
        }
    )
    agent = LLMAgent(
        spec,
        llm=llm,
        bookings=bookings,
        crm=crm,
        outbox=outbox,
        clock=clock,
        today=lambda: date(2026, 12, 6),
    )
    dialog = agent.new_dialog("call-1")
    dialog.caller_known("+1 (555) 123-0000")
    replies: list[AgentReply] = [await dialog.start()]
    replies.append(await dialog.on_user_turn("hello", 0.9))
    replies.append(await dialog.on_user_turn("my date of birth is march 14 1985", 0.9))
    replies.append(await dialog.on_user_turn("book me for Thursday at ten", 0.9))
    relay = Relay(outbox, crm, "r1", clock=clock)
    await relay.run_once()

    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    events.save_call(CallRecord("call-1", "Clinic", clock.wall(), data={"booking_id": "x"}))
    for n, reply in enumerate(replies):
        events.append(
            Event(
                "call-1",
                EventKind.DIALOG_DECIDED,
                clock.wall() + n,
                float(n),
                stage=Stage.DIALOG,
                data=dict(reply.data),
                pii={"agent_text": reply.text, **reply.pii},
            )
        )
    stored = events.events("call-1")
    page = call_body(events.call("call-1"), stored)
    events.close()

    prompts = [json.dumps([asdict(m) for m in p], default=str) for p in llm.prompts]
    everything = "\n".join(
        [
            *prompts,
            *(json.dumps(asdict(r), default=str) for r in replies),
            *(json.dumps(e.to_dict(), default=str) for e in stored),
            caplog.text,
            json.dumps(crm.records()),
            json.dumps(outbox.rows()),
            page,
        ]
    )
    for value in DENIED:
        assert value not in everything, value
    assert "first_name: Ada" in prompts[0]
    assert "120.50" not in prompts[0]
    assert "120.50" in prompts[-1]  # after verification
    assert replies[1].data["crm_fields"] == ["first_name", "upcoming_appointment"]
    assert replies[1].data["crm_known_caller"] is True
    # The booking went through the outbox and reached the embedded CRM and the booking table.
    assert relay.counts.delivered == 1
    assert replies[3].booking_id is not None
    booking = bookings.get(replies[3].booking_id)
    assert booking is not None and booking.name == "Ada Lovelace"
    crm.close()
    outbox.close()
    bookings.close()
