"""A handoff through the ASGI app: the summary is stored, sent to the CRM, and shown."""

from __future__ import annotations

import time
from datetime import date

from starlette.testclient import TestClient

from voicerail.crm.embedded import EmbeddedCRM
from voicerail.crm.service import open_crm
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, LLMAgentSpec
from voicerail.events.store import SQLiteEventStore
from voicerail.providers.base import (
    LLMDelta,
    ToolCall,
)
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import Runtime
from voicerail.testing.doubles import ScriptedLLM, ToneTTS
from voicerail.testing.doubles import SilentSTT as NoSTT
from voicerail.wire import twilio

PHONE = "+15551230000"


def tool(call_id: str, tool_name: str, **args: str) -> list[LLMDelta]:
    return [LLMDelta(tool_call=ToolCall(call_id, tool_name, args))]


def test_handoff_summary_reaches_the_api_the_dashboard_and_the_crm(tmp_path) -> None:
    """Book, then ask for a person: GET /api/calls/{id} has handoff.summary with who,
    why, what was done and the caller's words; the call page shows it; the CRM has it."""
    bookings = BookingStore(tmp_path / "bookings.sqlite3")
    service = open_crm(tmp_path, bookings, environ={"VOICERAIL_CRM": "embedded"})
    assert service is not None and isinstance(service.connector, EmbeddedCRM)
    service.connector.add_contact(PHONE, {"first_name": "Ada", "diagnosis": "asthma"})
    llm = ScriptedLLM(
        [
            tool("b1", "book_appointment", name="Ada Lovelace", day="2026-12-10", time="10:00"),
            [LLMDelta(text="Booked.")],
            tool("h1", "transfer_to_human", reason="billing question"),
        ]
    )
    spec = LLMAgentSpec.model_validate(
        {
            "name": "Clinic",
            "greeting": "Hi, you're talking to the clinic's AI assistant; calls are recorded.",
            "llm": {
                "system_prompt": "Book appointments.",
                "tools": ["book_appointment", "transfer_to_human"],
            },
            "context": {"must": ["first_name"]},
        }
    )
    agent = LLMAgent(
        spec,
        llm=llm,
        bookings=bookings,
        crm=service.connector,
        outbox=service.outbox,
        today=lambda: date(2026, 12, 6),
        dashboard_url="https://voice.example.com",
    )
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    runtime = Runtime(agent=agent, stt=NoSTT(), tts=ToneTTS(), events=events, crm=service)
    app = create_app(runtime, ServerSettings(operations=OperationsSettings(credentials=[])))
    with TestClient(app) as client:
        with client.websocket_connect("/twilio/media") as ws:
            ws.send_text(twilio.serialize_inbound(twilio.Connected("Call", "1.0.0")))
            start = twilio.build_start("MZ1", "CA1", custom_parameters={"from": PHONE})
            ws.send_text(twilio.serialize_inbound(start))
            # One key per reply: a key pressed while the previous key's reply is still
            # being decided (the CRM lookup runs in a thread) replaces that reply.
            for n, (digit, prompts) in enumerate((("1", 2), ("2", 3)), start=2):
                ws.send_text(
                    twilio.serialize_inbound(twilio.DTMF(n, "MZ1", "inbound_track", digit))
                )
                deadline = time.monotonic() + 10.0
                while len(llm.prompts) < prompts and time.monotonic() < deadline:
                    ws.receive_text()
            ws.send_text(twilio.serialize_inbound(twilio.Stop(9, "MZ1", "AC" + "0" * 32, "CA1")))
        deadline = time.monotonic() + 10.0
        while service.outbox.stats(time.time()).delivered < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        call_id = events.calls()[0].call_id
        body = client.get(f"/api/calls/{call_id}").json()
        page = client.get(f"/dashboard/calls/{call_id}").text
    summary = body["handoff"]["summary"]
    assert body["handoff"]["reason"] == "tool"
    assert summary["caller"] == {"first_name": "Ada"} and summary["known_caller"] is True
    assert (
        summary["actions"][0].startswith("booked BK-")
        and "2026-12-10 10:00" in summary["actions"][0]
    )
    assert summary["caller_expects"] == "(the caller pressed the key 2)"
    assert summary["transcript_url"] == f"https://voice.example.com/dashboard/calls/{call_id}"
    assert '<section id="handoff">' in page and "first_name: Ada" in page
    assert "asthma" not in page and "asthma" not in str(body)
    actions = [action for _, action, _, _ in service.connector.records()]
    assert sorted(actions) == ["booking", "call_summary", "disposition", "handoff_summary"]
    assert body["outcome"] == "handoff"
    events.close()
