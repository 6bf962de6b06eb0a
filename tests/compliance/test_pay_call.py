"""End to end: an agent whose card capture is Twilio's <Pay> sends a live call out of
its stream to <Pay> and back; the resumed stream's dialog hears the token
(compliance/pay_http.py, compliance/dialog.py rule 8)."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from datetime import date

import pytest
from starlette.testclient import TestClient

from voicerail.compliance.dialog import CompliantAgent
from voicerail.compliance.pay_http import check_workers, provide_state
from voicerail.compliance.policy import load_policy
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, LLMAgentSpec
from voicerail.errors import ConfigError
from voicerail.events.model import EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.providers.base import LLMDelta, ToolCall
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.limits import ServerLimits
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import AudioConfig, Runtime
from voicerail.state.session import MemoryStateStore
from voicerail.testing.clock import FakeClock
from voicerail.testing.doubles import ScriptedLLM
from voicerail.wire import twilio
from voicerail.wire.stream_limits import StreamLimits

from .calls import Caller, RecordingTTS, ScriptedSTT

GREETING = "Hi, you're talking to the shop's AI assistant, and calls are recorded."
ASK = "I'll connect you to our secure keypad now."
THANKS = "Thank you, your card ending in 1111 is saved."
FORM = {"CallSid": "CA1", "From": "+15550001111", "To": "+15550002222"}


def runtime_for(tmp_path, llm: ScriptedLLM) -> Runtime:
    spec = LLMAgentSpec.model_validate(
        {
            "name": "Shop",
            "greeting": GREETING,
            "llm": {"system_prompt": "Take payments.", "tools": ["collect_payment", "end_call"]},
        }
    )
    inner = LLMAgent(spec, llm=llm, bookings=BookingStore(tmp_path / "b.sqlite3"),
                     today=lambda: date(2026, 12, 6))  # fmt: skip
    policy = load_policy({"pci": {"capture": "twilio_pay", "pay_connector": "Stripe_Prod"}})
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    return Runtime(
        agent=CompliantAgent(inner, policy, record=events.append),
        stt=ScriptedSTT(["I'd like to pay my bill."]),
        tts=RecordingTTS(),
        events=events,
        state=MemoryStateStore(monotonic=FakeClock().monotonic),
        audio=AudioConfig(speculative_stt_after_s=None),
    )


def test_a_call_goes_to_twilio_pay_and_comes_back_with_the_token(tmp_path):
    llm = ScriptedLLM(
        [
            [LLMDelta(tool_call=ToolCall("c1", "collect_payment", {}))],
            [LLMDelta(text=ASK)],
            [LLMDelta(text=THANKS)],
        ]
    )
    runtime = runtime_for(tmp_path, llm)
    limits = ServerLimits(stream=StreamLimits(media_burst_s=10.0))
    settings = ServerSettings(operations=OperationsSettings(credentials=[]), limits=limits)
    with TestClient(create_app(runtime, settings)) as client:
        with client.websocket_connect("/twilio/media") as first:
            caller = Caller(first)
            caller.start()
            caller.heard(GREETING)
            caller.say()
            caller.heard(ASK)
            while (message := first.receive())["type"] != "websocket.close":
                pass
            assert message["code"] == 1000  # the stream ends; the call does not
        # Twilio asks the <Connect action> URL: <Pay>, tokenizing only.
        [pay] = list(ET.fromstring(client.post("/twilio/connect-action", data=FORM).text))
        assert pay.tag == "Pay" and pay.attrib["action"] == "/twilio/pay-action"
        assert pay.attrib["chargeAmount"] == "0"
        assert pay.attrib["paymentConnector"] == "Stripe_Prod"
        result = {**FORM, "Result": "success", "PaymentToken": "tok_pay_1",
                  "PaymentCardNumber": "xxxx-xxxx-xxxx-1111"}  # fmt: skip
        [connect] = list(ET.fromstring(client.post("/twilio/pay-action", data=result).text))
        [stream] = list(connect)
        params = {p.attrib["name"]: p.attrib["value"] for p in stream}
        assert connect.tag == "Connect" and params["resume"] == "2"
        replayed = client.post("/twilio/pay-action", data=result)  # written once, resumed again
        assert "Connect" in replayed.text
        with client.websocket_connect("/twilio/media") as second:
            back = Caller(second)
            back.send(twilio.Connected("Call", "1.0.0"))
            back.send(twilio.build_start("MZ2", "CA1", custom_parameters=params))
            back.heard(THANKS)
            back.hang_up()
    events = runtime.events
    [call] = events.calls()
    recorded = events.events(call.call_id)
    decided = [e for e in recorded if e.kind is EventKind.DIALOG_DECIDED]
    assert [e.data.get("pci") for e in decided if e.data.get("pci")] == ["twilio_pay", "captured"]
    captured = decided[-1]
    assert captured.data["card_token"] == "tok_pay_1" and captured.pii["card_last4"] == "1111"
    assert sum(e.kind is EventKind.CALL_RESUMED for e in recorded) == 1
    assert [e.kind for e in recorded].count(EventKind.CALL_ENDED) == 1
    assert "tok_pay_1" in llm.prompts[-1][-1].content  # the dialog knows the token
    assert runtime.state is not None
    state = asyncio.run(runtime.state.load_by_call_sid("CA1"))
    assert state is not None and state.dialog["_compliance"]["pay"] is None
    assert call.outcome is not None


def test_a_pay_result_for_no_waiting_call_is_not_written_and_a_bad_one_is_400(tmp_path):
    runtime = runtime_for(tmp_path, ScriptedLLM([]))
    with TestClient(create_app(runtime)) as client:
        bad = client.post("/twilio/pay-action", data={**FORM, "Result": "maybe"})
        unknown = client.post("/twilio/pay-action", data={**FORM, "Result": "success"})
        connect = client.post("/twilio/connect-action", data=FORM)
    assert bad.status_code == 400 and bad.text == "unknown <Pay> result 'maybe'"
    assert "<Hangup" in unknown.text  # no state for CA1: nothing to come back to
    assert "<Pay" not in connect.text
    runtime.events.close()


def test_pay_capture_gets_a_state_store_alone_and_needs_redis_on_several_workers(tmp_path):
    runtime = runtime_for(tmp_path, ScriptedLLM([]))
    runtime.state = None
    provide_state(runtime)
    assert isinstance(runtime.state, MemoryStateStore)
    check_workers("twilio_pay", workers=2, shared_state=True)
    check_workers("keypad", workers=2, shared_state=False)
    with pytest.raises(ConfigError, match="twilio_pay on several workers needs --redis-url"):
        check_workers("twilio_pay", workers=2, shared_state=False)
    runtime.events.close()
