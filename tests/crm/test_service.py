"""The server's CRM from the environment, and a call through the real ASGI app and relay."""

from __future__ import annotations

import time
from datetime import date

import pytest
from starlette.testclient import TestClient

from voicerail.crm.embedded import EmbeddedCRM
from voicerail.crm.hubspot import HubSpotCRM
from voicerail.crm.service import open_crm
from voicerail.crm.webhook import WebhookCRM
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, LLMAgentSpec
from voicerail.errors import ConfigError
from voicerail.events.model import EventKind
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


def test_no_crm_unless_the_environment_names_one(tmp_path) -> None:
    """Unset VOICERAIL_CRM keeps today's direct booking writes."""
    assert open_crm(tmp_path, BookingStore(":memory:"), environ={}) is None


async def test_embedded_crm_with_a_sqlite_outbox(tmp_path) -> None:
    """`embedded`: the CRM and the outbox are files in the data dir."""
    service = open_crm(tmp_path, BookingStore(":memory:"), environ={"VOICERAIL_CRM": "embedded"})
    assert service is not None and isinstance(service.connector, EmbeddedCRM)
    assert (tmp_path / "outbox.sqlite3").exists() and (tmp_path / "crm.sqlite3").exists()
    await service.aclose()


async def test_cloud_crms_from_their_settings(tmp_path) -> None:
    """HubSpot with a private app token; a webhook with its URL and secret."""
    hubspot = open_crm(
        tmp_path,
        BookingStore(":memory:"),
        environ={"VOICERAIL_CRM": "hubspot", "VOICERAIL_HUBSPOT_TOKEN": "pat-1"},
    )
    assert hubspot is not None and isinstance(hubspot.connector, HubSpotCRM)
    await hubspot.aclose()
    webhook = open_crm(
        tmp_path,
        BookingStore(":memory:"),
        environ={
            "VOICERAIL_CRM": "webhook",
            "VOICERAIL_CRM_WEBHOOK_URL": "http://127.0.0.1:9/hook",
            "VOICERAIL_CRM_WEBHOOK_SECRET": "s",
        },
    )
    assert webhook is not None and isinstance(webhook.connector, WebhookCRM)
    await webhook.aclose()


@pytest.mark.parametrize(
    ("environ", "source"),
    [
        ({"VOICERAIL_CRM": "zoho"}, "$VOICERAIL_CRM"),
        ({"VOICERAIL_CRM": "hubspot"}, "$VOICERAIL_HUBSPOT_TOKEN"),
        ({"VOICERAIL_CRM": "salesforce"}, "$VOICERAIL_SALESFORCE_INSTANCE_URL"),
        ({"VOICERAIL_CRM": "webhook"}, "$VOICERAIL_CRM_WEBHOOK_URL"),
    ],
)
def test_missing_settings_name_the_variable(tmp_path, environ, source) -> None:
    """A CRM that cannot work is refused at start-up, naming what is missing."""
    with pytest.raises(ConfigError) as caught:
        open_crm(tmp_path, BookingStore(":memory:"), environ=environ)
    assert caught.value.source == source


def test_a_call_is_recognized_and_books_through_the_outbox(tmp_path) -> None:
    """Through the ASGI app: the caller's number finds the CRM contact, the prompt gets
    only the allowed fields, and the booking reaches the CRM and the booking table by
    the relay the server runs."""
    bookings = BookingStore(tmp_path / "bookings.sqlite3")
    service = open_crm(tmp_path, bookings, environ={"VOICERAIL_CRM": "embedded"})
    assert service is not None and isinstance(service.connector, EmbeddedCRM)
    service.connector.add_contact(PHONE, {"first_name": "Ada", "diagnosis": "asthma"})
    args = {"name": "Ada Lovelace", "day": "2026-12-10", "time": "10:00"}
    llm = ScriptedLLM(
        [
            [LLMDelta(tool_call=ToolCall("b1", "book_appointment", args))],
            [LLMDelta(text="You're booked, Ada.")],
        ]
    )
    spec = LLMAgentSpec.model_validate(
        {
            "name": "Clinic",
            "greeting": "Hi, you're talking to the clinic's AI assistant; calls are recorded.",
            "llm": {"system_prompt": "Book appointments.", "tools": ["book_appointment"]},
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
    )
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    runtime = Runtime(agent=agent, stt=NoSTT(), tts=ToneTTS(), events=events, crm=service)
    app = create_app(runtime, ServerSettings(operations=OperationsSettings(credentials=[])))
    with TestClient(app) as client:  # the lifespan runs the relay
        with client.websocket_connect("/twilio/media") as ws:
            ws.send_text(twilio.serialize_inbound(twilio.Connected("Call", "1.0.0")))
            start = twilio.build_start("MZ1", "CA1", custom_parameters={"from": PHONE})
            ws.send_text(twilio.serialize_inbound(start))
            assert isinstance(twilio.parse_outbound(ws.receive_text()), twilio.OutboundMedia)
            ws.send_text(twilio.serialize_inbound(twilio.DTMF(2, "MZ1", "inbound_track", "1")))
            deadline = time.monotonic() + 10.0
            while not llm.prompts[1:] and time.monotonic() < deadline:
                ws.receive_text()  # the agent's audio and marks
            ws.send_text(twilio.serialize_inbound(twilio.Stop(9, "MZ1", "AC" + "0" * 32, "CA1")))
        deadline = time.monotonic() + 10.0
        while service.outbox.stats(time.time()).delivered < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        metrics = client.get("/metrics").text
    prompt = "\n".join(m.content for m in llm.prompts[0])
    assert "first_name: Ada" in prompt and "asthma" not in prompt
    (booking,) = bookings.list_bookings()
    assert booking.name == "Ada Lovelace"
    records = service.connector.records()
    # A booking's record is its entity (crm/model.py rule 3); the others the call's keys.
    assert all(
        key == f"booking:{booking.booking_id}" if action == "booking" else key.startswith("vr_")
        for key, action, _, _ in records
    )
    assert sorted(action for _, action, _, _ in records) == [
        "booking",
        "call_summary",
        "disposition",
    ]
    call = events.calls()[0]
    decided = [e for e in events.events(call.call_id) if e.kind is EventKind.DIALOG_DECIDED]
    assert any(e.data.get("crm_fields") == ["first_name"] for e in decided)
    assert 'voicerail_crm_outbox_rows{state="delivered"} 3.0' in metrics
    events.close()


def test_flow_agent_file_sections_reach_the_wrapper(tmp_path) -> None:
    """`context` and `handoff_rules` in a flow agent file configure the gate and the rules;
    a bad section is refused naming the file."""
    from pathlib import Path

    from voicerail.crm.service import flow_bookings, with_crm
    from voicerail.dialog.embeddings import MiniLMEmbedder
    from voicerail.dialog.flows import load_agent

    clinic = Path(__file__).parents[2] / "examples" / "clinic.yaml"
    path = tmp_path / "clinic.yaml"
    extra = "\ncontext: {must: [first_name]}\nhandoff_rules: {intents: [hours]}\n"
    path.write_text(clinic.read_text() + extra)
    store = BookingStore(":memory:")
    assert flow_bookings(store, None) is store
    flows = load_agent(path, bookings=store, embedder=MiniLMEmbedder())
    agent = with_crm(flows, None, source=str(path))
    assert agent.policy.must == ("first_name",)
    assert agent.rules is not None and agent.rules.intents == ("hours",)
    path.write_text(clinic.read_text() + "\nhandoff_rules: {misunderstandings: many}\n")
    with pytest.raises(ConfigError) as caught:
        with_crm(load_agent(path, bookings=store, embedder=MiniLMEmbedder()), None, str(path))
    assert caught.value.source == str(path)
