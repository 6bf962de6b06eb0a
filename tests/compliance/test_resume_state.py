"""The compliance wrapper's state goes with a resumed call (compliance/dialog.py rule 7,
conduct.py rule 6), and a call without recording consent keeps no caller words in its
live state (state/recorder.py rule 4)."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from voicerail.compliance.dialog import NOT_RETAINED, SNAPSHOT_KEY, CompliantAgent, KeyPress
from voicerail.compliance.policy import load_policy
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, LLMAgentSpec
from voicerail.events.model import Event, EventKind
from voicerail.providers.base import LLMDelta, ToolCall
from voicerail.state.recorder import CallStateRecorder
from voicerail.state.session import MemoryStateStore, SessionState
from voicerail.testing.clock import FakeClock
from voicerail.testing.doubles import ScriptedLLM

GREETING = "Hi, you're talking to the shop's AI assistant."
PROMPT = "May I record this call? Please say yes or no."
PAY = [[LLMDelta(tool_call=ToolCall("c1", "collect_payment", {}))], [LLMDelta(text="Key it in.")]]


def compliant(script: list[list[LLMDelta]], policy: dict[str, Any], events: list[Event]):
    spec = LLMAgentSpec.model_validate(
        {
            "name": "Shop",
            "greeting": GREETING,
            "llm": {"system_prompt": "Help.", "tools": ["collect_payment", "end_call"]},
        }
    )
    inner = LLMAgent(spec, llm=ScriptedLLM(script), bookings=BookingStore(":memory:"),
                     today=lambda: date(2026, 12, 6))  # fmt: skip
    return CompliantAgent(inner, load_policy(policy), record=events.append).new_dialog("c1")


def stored(snapshot: dict[str, Any]) -> dict[str, Any]:
    """Through the session store's JSON, as another worker reads it."""
    state = SessionState("c1", version=1, dialog=snapshot)
    return SessionState.from_json(state.to_json(), call_id="c1").dialog


async def test_a_declined_consent_stays_declined_and_no_caller_words_are_kept():
    events: list[Event] = []
    first = compliant([[LLMDelta(text="Sure, what is it?")]], {"consent": {"mode": "opt_in"}},
                      events)  # fmt: skip
    await first.start()
    await first.on_user_turn("no thanks", 0.9)
    await first.on_user_turn("my card was stolen yesterday", 0.9)
    snapshot = stored(first.snapshot())
    text = json.dumps(snapshot)
    assert "no thanks" not in text and "stolen" not in text
    assert snapshot["free_text"] is False
    assert snapshot[SNAPSHOT_KEY]["conduct"]["consent"] == "declined"
    assert "Sure, what is it?" in text  # the agent's pending question goes on

    resumed_events: list[Event] = []
    second = compliant([], {"consent": {"mode": "opt_in"}}, resumed_events)
    second.restore(snapshot)
    assert not second.conduct.retain
    assert second.screen_transcript("my name is Ada")[0] == NOT_RETAINED
    recap = await second.resume()
    assert recap.text == "Sorry, I lost you for a moment. Sure, what is it?"
    assert resumed_events == []  # the decision was recorded by the first stream
    consents = [e for e in events if e.kind is EventKind.CONSENT_RECORDED]
    assert [e.data["decision"] for e in consents] == ["declined"]


async def test_a_consent_still_pending_at_the_break_is_asked_again():
    first = compliant([], {"consent": {"mode": "opt_in"}}, [])
    assert (await first.start()).text.endswith(PROMPT)
    second = compliant([], {"consent": {"mode": "opt_in"}}, [])
    second.restore(stored(first.snapshot()))
    recap = await second.resume()
    assert recap.text.startswith("Sorry, I lost you for a moment.") and recap.text.endswith(PROMPT)
    granted = await second.on_user_turn("yes", 0.9)
    assert granted.data == {"consent": "granted"} and second.conduct.retain


async def test_a_call_resumed_in_the_pci_pause_keys_its_card_again_and_no_key_is_stored():
    first = compliant(PAY, {}, [])
    await first.start()
    asked = await first.on_user_turn("I'd like to pay", 0.9)
    assert asked.data["pci"] == "paused"
    for key in "41111111":
        assert first.receive_dtmf(key).paused
    snapshot = stored(first.snapshot())
    assert "4111" not in json.dumps(snapshot)
    assert snapshot[SNAPSHOT_KEY]["paused"] is True

    second = compliant([[LLMDelta(text="Thanks, saved.")]], {}, [])
    second.restore(snapshot)
    assert second.paused
    recap = await second.resume()
    policy = second.agent.policy.pci
    assert recap.text == f"{policy.resumed} {policy.prompt}" and recap.data == {"pci": "resumed"}
    for key in "4111111111111111#":
        assert second.receive_dtmf(key).paused
    done = await second.on_dtmf("pci")
    assert done.data["pci"] == "captured" and done.pii["card_last4"] == "1111"


async def test_the_recorder_keeps_no_turn_text_once_the_snapshot_says_no_free_text():
    clock = FakeClock()
    store = MemoryStateStore(monotonic=clock.monotonic)
    recorder = CallStateRecorder(store, SessionState("c1", call_sid="CA1"), clock.wall)
    recorder.turn(caller_text="", agent_text=GREETING, outcome=None, booking_id=None,
                  dialog={"node": "greeting"})  # fmt: skip
    recorder.turn(caller_text="no thanks", agent_text="Okay. How can I help?", outcome=None,
                  booking_id=None, dialog={"node": "x", "free_text": False})  # fmt: skip
    recorder.heard("Okay.")  # nothing to correct: no text is kept
    await recorder.aclose()
    state = await store.load("c1")
    assert state is not None and state.version == 2
    assert [(t.caller_text, t.agent_text, t.heard_text) for t in state.turns] == [
        ("", NOT_RETAINED, NOT_RETAINED),
        (NOT_RETAINED, NOT_RETAINED, NOT_RETAINED),
    ]


async def test_keys_pressed_while_the_call_waits_for_twilio_pay_reach_no_dialog():
    d = compliant(PAY, {"pci": {"capture": "twilio_pay"}}, [])
    await d.start()
    asked = await d.on_user_turn("I'd like to pay", 0.9)
    assert asked.data["pci"] == "twilio_pay" and not d.paused  # no keypad entry here
    assert d.receive_dtmf("4") == KeyPress("pci", True)
    assert (await d.on_dtmf("pci")).text == ""  # nothing said, nothing delivered
    assert d.snapshot()[SNAPSHOT_KEY]["pay"] == "pending"
