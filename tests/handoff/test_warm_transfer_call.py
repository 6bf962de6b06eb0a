"""End to end: a simulated caller is recognized, asks for a person, and the human's leg,
dialled through a fake Twilio REST API, hears the summary before joining (warm)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from datetime import date

import httpx
import uvicorn

from voicerail.crm.embedded import EmbeddedCRM
from voicerail.crm.outbox import SQLiteOutbox
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, LLMAgentSpec
from voicerail.events.model import EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.handoff.twilio_transfer import TransferOutcome
from voicerail.providers.base import LLMDelta, ToolCall
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.handoff import HandoffSettings
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import Runtime
from voicerail.sim.caller import CallerTurn, SimulatedTwilioCall
from voicerail.testing.fake_servers.crm import run_fake_crm as serve_app
from voicerail.testing.fake_servers.openai import _Server
from voicerail.testing.fake_servers.twilio_rest import FakeTwilioREST, build_twilio_rest_app

from .test_handoff_call import NoSTT, ScriptedLLM, ToneTTS

PHONE = "+15551230000"
HUMAN = "+15559990000"


@contextlib.asynccontextmanager
async def serve_voicerail(app, listener: socket.socket) -> AsyncIterator[str]:
    """The app on ``listener`` with WebSockets (the media stream) and no lifespan."""
    port = listener.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, ws="websockets-sansio"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    try:
        while not server.started:
            if task.done():
                await task  # it failed to start: raise why
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop.set()
        await task
        listener.close()


async def test_simulated_call_hands_off_warm_with_the_summary(tmp_path) -> None:
    """The human's leg says who is calling and why, then joins the caller's conference."""
    bookings = BookingStore(tmp_path / "bookings.sqlite3")
    crm = EmbeddedCRM(tmp_path / "crm.sqlite3", bookings=bookings)
    crm.add_contact(PHONE, {"first_name": "Ada", "last_name": "Lovelace", "diagnosis": "asthma"})
    llm = ScriptedLLM([[LLMDelta(tool_call=ToolCall("h1", "transfer_to_human", {}))]])
    spec = LLMAgentSpec.model_validate(
        {
            "name": "Clinic",
            "greeting": "Hi, you're talking to the clinic's AI assistant; calls are recorded.",
            "llm": {"system_prompt": "Help callers.", "tools": ["transfer_to_human"]},
            "context": {"must": ["first_name", "last_name"]},
        }
    )
    agent = LLMAgent(
        spec,
        llm=llm,
        bookings=bookings,
        crm=crm,
        outbox=SQLiteOutbox(tmp_path / "outbox.sqlite3"),
        today=lambda: date(2026, 12, 6),
    )
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    fake = FakeTwilioREST(human="answer")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    public_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    async with serve_app(build_twilio_rest_app(fake)) as twilio_url:
        handoff = HandoffSettings(
            number=HUMAN,
            mode="warm",
            from_number="+15550001111",
            account_sid=fake.account_sid,
            auth_token=fake.auth_token,
            api_base_url=twilio_url,
        )
        runtime = Runtime(agent=agent, stt=NoSTT(), tts=ToneTTS(), events=events)
        app_settings = ServerSettings(
            operations=OperationsSettings(credentials=[]), handoff=handoff, public_url=public_url
        )
        app = create_app(runtime, app_settings)
        async with serve_voicerail(app, listener) as base_url:
            caller = SimulatedTwilioCall(
                base_url.replace("http://", "ws://") + "/twilio/media",
                turn_gap_s=0.3,
                custom_parameters={"from": PHONE},
            )
            result = await caller.run([CallerTurn(label="press 0", dtmf="0")])
            fake.add_live_call(result.call_sid)
            async with httpx.AsyncClient() as client:
                answer = await client.post(
                    base_url + "/twilio/connect-action", data={"CallSid": result.call_sid}
                )
            await app.state.handoff_desk.drain()
            await fake.drain()
    assert "<Conference" in answer.text and 'startConferenceOnEnter="false"' in answer.text
    (human,) = [c for c in fake.calls.values() if c.to == HUMAN]
    assert len(human.said) == 1
    whisper = human.said[0]
    assert whisper.startswith("Incoming transfer: Ada Lovelace, a known customer.")
    assert "asthma" not in whisper
    assert f"handoff-{result.call_sid}</Conference>" in human.twiml[0]
    transfer = app.state.handoff_desk.transfers[result.call_sid]
    assert transfer.outcome is TransferOutcome.ANSWERED
    call = events.calls()[0]
    transferred = [e for e in events.events(call.call_id) if e.kind is EventKind.CALL_TRANSFERRED]
    assert [e.outcome for e in transferred] == ["answered"]
    assert transferred[0].latency_s is not None and transferred[0].latency_s >= 0
    events.close()
