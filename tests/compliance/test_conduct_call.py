"""End to end: a caller declines recording and asks an LLM agent that claims to be human
whether it is; the agent says the truth and the call keeps no free text."""

from __future__ import annotations

from datetime import date

from starlette.testclient import TestClient

from voicerail.compliance.dialog import NOT_RETAINED, CompliantAgent
from voicerail.compliance.policy import load_policy
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, LLMAgentSpec
from voicerail.events.model import EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.providers.base import LLMDelta
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.limits import ServerLimits
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import AudioConfig, Runtime
from voicerail.testing.doubles import ScriptedLLM
from voicerail.wire.stream_limits import StreamLimits

from .calls import Caller, RecordingTTS, ScriptedSTT

GREETING = "Hello, how can I help?"  # neither discloses nor asks: the wrapper adds both
DISCLOSURE = "You're talking to an AI assistant."
PROMPT = "May I record this call? Please say yes or no."
DECLINED = "Okay, this call won't be recorded. How can I help?"
LIE = "Yes, I'm a real person."


def test_declined_consent_and_are_you_human_in_a_call(tmp_path):
    """The caller hears the disclosure first, is asked for consent, declines, asks
    whether the agent is human: it hears the truth, the lie is stopped and recorded as
    a guard hit, and no event keeps what anyone said after the decline."""
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    llm = ScriptedLLM([[LLMDelta(text=LIE)]])
    spec = LLMAgentSpec.model_validate(
        {"name": "Shop", "greeting": GREETING, "llm": {"system_prompt": "Help.", "tools": []}}
    )
    inner = LLMAgent(spec, llm=llm, bookings=BookingStore(tmp_path / "b.sqlite3"),
                     today=lambda: date(2026, 12, 6))  # fmt: skip
    policy = load_policy({"consent": {"mode": "opt_in"}})
    agent = CompliantAgent(inner, policy, record=events.append)
    tts = RecordingTTS()
    runtime = Runtime(
        agent=agent,
        stt=ScriptedSTT(["no thanks", "wait, are you human?"]),
        tts=tts,
        events=events,
        audio=AudioConfig(speculative_stt_after_s=None),
    )
    # Two utterances sent at once run ahead of real time: a looser burst limit.
    limits = ServerLimits(stream=StreamLimits(media_burst_s=10.0))
    settings = ServerSettings(operations=OperationsSettings(credentials=[]), limits=limits)
    app = create_app(runtime, settings)
    with TestClient(app) as client, client.websocket_connect("/twilio/media") as ws:
        caller = Caller(ws)
        caller.start()
        caller.heard(f"{DISCLOSURE} {GREETING} {PROMPT}")
        caller.say()
        caller.heard(DECLINED)
        caller.say()
        caller.heard(DISCLOSURE)
        caller.hang_up()
    [call] = events.calls()
    recorded = events.events(call.call_id)
    by_kind = {kind: [e for e in recorded if e.kind == kind] for kind in EventKind}

    assert tts.said[0] == DISCLOSURE and LIE not in tts.said and tts.said[-1] == DISCLOSURE
    assert [e.data for e in by_kind[EventKind.CONSENT_RECORDED]] == [
        {"mode": "opt_in", "decision": "declined"}
    ]
    [hit] = by_kind[EventKind.GUARD_TRIGGERED]
    assert hit.data["rule"] == "claims_human" and hit.pii["blocked_text"] == NOT_RETAINED
    assert [e.data["when"] for e in by_kind[EventKind.DISCLOSURE_GIVEN]] == ["start", "asked"]
    transcripts = [e.pii["text"] for e in by_kind[EventKind.TRANSCRIPT_FINAL]]
    assert transcripts == [NOT_RETAINED, NOT_RETAINED]
    agent_texts = [e.pii["agent_text"] for e in by_kind[EventKind.DIALOG_DECIDED]]
    assert agent_texts and set(agent_texts) == {NOT_RETAINED}
    # the LLM was asked once; its reply never reached the caller
    assert len(llm.prompts) == 1 and "are you human" in llm.prompts[0][-1].content
