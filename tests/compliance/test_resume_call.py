"""End to end: a caller declines recording consent; the call's state in a real Redis
keeps none of their words; a second stream for the call carries it on with the consent
still declined (compliance/dialog.py rule 7, state/recorder.py rule 4)."""

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
from voicerail.state.redis_store import RedisStateStore
from voicerail.testing.doubles import ScriptedLLM
from voicerail.wire.stream_limits import StreamLimits

from .calls import Caller, RecordingTTS, ScriptedSTT
from .test_pci_call import every_store_text

GREETING = "Hi, you're talking to the shop's AI assistant."
PROMPT = "May I record this call? Please say yes or no."
DECLINED = "Okay, this call won't be recorded. Hi, you're talking to the shop's AI assistant."
ANSWER = "I can help with that. What is the order number?"
SECRET = "my husband ordered it behind my back"


def test_a_declined_consent_keeps_no_words_in_redis_and_holds_after_a_resume(tmp_path, redis_url):
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    llm = ScriptedLLM([[LLMDelta(text=ANSWER)], [LLMDelta(text="Thanks, I found it.")]])
    spec = LLMAgentSpec.model_validate(
        {"name": "Shop", "greeting": GREETING, "llm": {"system_prompt": "Help.", "tools": []}}
    )
    inner = LLMAgent(spec, llm=llm, bookings=BookingStore(tmp_path / "b.sqlite3"),
                     today=lambda: date(2026, 12, 6))  # fmt: skip
    agent = CompliantAgent(inner, load_policy({"consent": {"mode": "opt_in"}}),
                           record=events.append)  # fmt: skip
    prefix = "consent-resume:"
    state = RedisStateStore(redis_url, prefix=prefix)
    tts = RecordingTTS()
    runtime = Runtime(
        agent=agent,
        stt=ScriptedSTT(["no thanks", SECRET, "it is 4 4 7"]),
        tts=tts,
        events=events,
        state=state,
        audio=AudioConfig(speculative_stt_after_s=None),
    )
    limits = ServerLimits(stream=StreamLimits(media_burst_s=10.0))
    settings = ServerSettings(operations=OperationsSettings(credentials=[]), limits=limits)
    with TestClient(create_app(runtime, settings)) as client:
        with client.websocket_connect("/twilio/media") as first:
            caller = Caller(first)
            caller.start()
            caller.heard(f"{GREETING} {PROMPT}")
            caller.say()
            caller.heard(DECLINED)
            caller.say()
            caller.heard(ANSWER)
            live = every_store_text(tmp_path, redis_url, prefix)["redis"]
            with client.websocket_connect("/twilio/media") as second:  # the call goes on
                again = Caller(second)
                again.start()
                again.heard(f"Sorry, I lost you for a moment. {ANSWER}")
                again.say()
                again.heard("Thanks, I found it.")
                again.hang_up()
        after = every_store_text(tmp_path, redis_url, prefix)["redis"]
        assert client.portal is not None
        client.portal.call(state.aclose)
    [call] = events.calls()
    recorded = events.events(call.call_id)
    assert ANSWER in live and "free_text" in live  # the state was written, without words
    for text in (live, after):
        assert "no thanks" not in text and "behind my back" not in text and "4 4 7" not in text
    assert [e.kind for e in recorded].count(EventKind.CONSENT_RECORDED) == 1
    assert any(e.kind is EventKind.CALL_RESUMED for e in recorded)
    transcripts = [e.pii["text"] for e in recorded if e.kind is EventKind.TRANSCRIPT_FINAL]
    assert transcripts == [NOT_RETAINED] * 3  # the resumed stream keeps none either
    # The live model heard the caller; the resumed one has only the agent's side and
    # what was said since (the price of keeping no words: compliance/dialog.py rule 7).
    assert llm.prompts[0][-1].content == SECRET
    resumed = [(m.role, m.content) for m in llm.prompts[1][1:]]
    assert SECRET not in str(resumed) and ("user", NOT_RETAINED) in resumed
    assert resumed[-1] == ("user", "it is 4 4 7")
