"""End to end: a simulated caller is recognized, asks for a person, and the human's leg,
dialled through a fake Twilio REST API, hears the summary before joining (warm)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import uvicorn

from voicerail.crm.embedded import EmbeddedCRM
from voicerail.crm.outbox import SQLiteOutbox
from voicerail.crm.relay import Relay
from voicerail.crm.service import CRMService
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, LLMAgentSpec
from voicerail.events.model import Event, EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.handoff.twilio_transfer import Fallback, TransferOutcome
from voicerail.providers.base import LLMDelta, ToolCall
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.handoff import HandoffSettings
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import Runtime
from voicerail.sim.caller import CallerTurn, CallResult, SimulatedTwilioCall
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


@dataclass
class HandoffRun:
    answer: str
    caller_sid: str
    fake: FakeTwilioREST
    desk: Any
    events: SQLiteEventStore
    outbox: SQLiteOutbox
    back: CallResult | None = None


async def follow_agent_fallback(twiml: str) -> CallResult:
    """What Twilio does with the agent fallback's TwiML: open its stream, with its
    parameters, for the same call."""
    stream = re.search(r'<Stream url="([^"]+)">', twiml)
    assert stream is not None, twiml
    params = dict(re.findall(r'<Parameter name="([^"]+)" value="([^"]*)" />', twiml))
    caller = SimulatedTwilioCall(
        stream.group(1), turn_gap_s=0.3, custom_parameters=params, call_sid=params["callsid"]
    )
    return await caller.run([])


def llm_agent(bookings: BookingStore, crm: EmbeddedCRM, outbox: SQLiteOutbox) -> LLMAgent:
    """An LLM agent whose model transfers at once."""
    llm = ScriptedLLM([[LLMDelta(tool_call=ToolCall("h1", "transfer_to_human", {}))]])
    spec = LLMAgentSpec.model_validate(
        {
            "name": "Clinic",
            "greeting": "Hi, you're talking to the clinic's AI assistant; calls are recorded.",
            "llm": {"system_prompt": "Help callers.", "tools": ["transfer_to_human"]},
            "context": {"must": ["first_name", "last_name"]},
        }
    )
    return LLMAgent(
        spec, llm=llm, bookings=bookings, crm=crm, outbox=outbox, today=lambda: date(2026, 12, 6)
    )


async def handoff_call(
    tmp_path, human: str, fallbacks=None, *, make_agent=llm_agent, state=None
) -> HandoffRun:
    """A simulated caller presses 0; the agent transfers; Twilio asks <Connect action>;
    when the caller is sent back to the agent, Twilio's new stream is opened.

    Args:
        make_agent: (bookings, crm, outbox) -> the agent.
        state: the call state store (None: none).
    """
    bookings = BookingStore(tmp_path / "bookings.sqlite3")
    crm = EmbeddedCRM(tmp_path / "crm.sqlite3", bookings=bookings)
    crm.add_contact(PHONE, {"first_name": "Ada", "last_name": "Lovelace", "diagnosis": "asthma"})
    outbox = SQLiteOutbox(tmp_path / "outbox.sqlite3")
    agent = make_agent(bookings, crm, outbox)
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    fake = FakeTwilioREST(human=human)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    public_url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    service = CRMService(crm, outbox, Relay(outbox, crm, "r1"))
    async with serve_app(build_twilio_rest_app(fake)) as twilio_url:
        handoff = HandoffSettings(
            number=HUMAN,
            mode="warm",
            from_number="+15550001111",
            account_sid=fake.account_sid,
            auth_token=fake.auth_token,
            api_base_url=twilio_url,
            fallbacks=fallbacks or {},
        )
        runtime = Runtime(agent=agent, stt=NoSTT(), tts=ToneTTS(), events=events, crm=service)
        runtime.state = state
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
            back = None
            given = fake.calls[result.call_sid].twiml
            if given and "<Connect" in given[-1]:
                back = await follow_agent_fallback(given[-1])
    run = HandoffRun(answer.text, result.call_sid, fake, app.state.handoff_desk, events, outbox)
    run.back = back
    return run


def transferred(run: HandoffRun) -> list[Event]:
    return [
        e
        for call in run.events.calls()
        for e in run.events.events(call.call_id)
        if e.kind is EventKind.CALL_TRANSFERRED
    ]


async def test_simulated_call_hands_off_warm_with_the_summary(tmp_path) -> None:
    """The human's leg says who is calling and why, then joins the caller's conference."""
    run = await handoff_call(tmp_path, "answer")
    assert "<Conference" in run.answer and 'startConferenceOnEnter="false"' in run.answer
    (human,) = [c for c in run.fake.calls.values() if c.to == HUMAN]
    assert len(human.said) == 1
    whisper = human.said[0]
    assert whisper.startswith("Incoming transfer: Ada Lovelace, a known customer.")
    assert "asthma" not in whisper
    assert f"handoff-{run.caller_sid}</Conference>" in human.twiml[0]
    transfer = await run.desk.transfer(run.caller_sid)
    assert transfer.outcome == TransferOutcome.ANSWERED
    events = transferred(run)
    assert [e.outcome for e in events] == ["answered"]
    assert events[0].latency_s is not None and events[0].latency_s >= 0
    run.events.close()


async def test_busy_human_books_a_callback_through_the_outbox(tmp_path) -> None:
    """Busy with a callback fallback: the caller is told, and a callback write is queued."""
    run = await handoff_call(tmp_path, "busy", {TransferOutcome.BUSY: Fallback.CALLBACK})
    assert [e.outcome for e in transferred(run)] == ["busy"]
    assert "call you back" in run.fake.calls[run.caller_sid].said[-1]
    keys = [row[0] for row in run.outbox.rows()]
    assert any(k.endswith(":callback") for k in keys)
    run.events.close()


async def test_no_answer_sends_the_caller_back_to_the_agent(tmp_path) -> None:
    """No human answered: the caller hears the apology and a new stream of the same call
    reaches the agent, with their number (the CRM recognizes them again) and the outcome."""
    run = await handoff_call(tmp_path, "no_answer")
    assert [e.outcome for e in transferred(run)] == ["no_answer"]
    assert "Sorry, nobody could take your call" in run.fake.calls[run.caller_sid].said[-1]
    assert run.back is not None and run.back.call_sid == run.caller_sid
    calls = run.events.calls()
    assert len(calls) == 2 and {c.call_sid for c in calls} == {run.caller_sid}
    again = next(c for c in calls if "handoff" in c.data["custom_parameters"])
    kinds = [e.kind for e in run.events.events(again.call_id)]
    assert EventKind.TTS_FIRST_AUDIO in kinds  # the agent answered on the new stream
    started = next(
        e for e in run.events.events(again.call_id) if e.kind is EventKind.STREAM_STARTED
    )
    assert started.pii["custom_parameters"]["from"] == PHONE
    assert started.pii["custom_parameters"]["handoff"] == "no_answer"
    run.events.close()
