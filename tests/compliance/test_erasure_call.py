"""End to end: two callers book by phone; `voicerail erase --phone` removes one of them
from every store (events, transcripts, outbox, CRM, bookings, Redis state) and leaves the
other; the receipt says what went where and the audit log records it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import date
from pathlib import Path

import redis
from starlette.testclient import TestClient

from voicerail.cli import main
from voicerail.compliance.audit import AuditLog, phone_ref
from voicerail.compliance.dialog import CompliantAgent
from voicerail.compliance.policy import load_policy
from voicerail.crm.embedded import EmbeddedCRM
from voicerail.crm.outbox import SQLiteOutbox
from voicerail.crm.relay import Relay
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, LLMAgentSpec
from voicerail.events.store import SQLiteEventStore
from voicerail.providers.base import LLMDelta, ToolCall
from voicerail.server.app import create_app
from voicerail.session.runtime import AudioConfig, Runtime
from voicerail.state.redis_store import RedisStateStore
from voicerail.testing.doubles import ScriptedLLM
from voicerail.wire import twilio

from .calls import Caller, RecordingTTS, ScriptedSTT

ADA, BOB = "+15551230000", "+15559870000"
GREETING = "Hi, you're talking to the clinic's AI assistant, and calls are recorded."
BOOKED = "You're booked for Monday at ten."


def book(name: str) -> list[list[LLMDelta]]:
    args = {"name": name, "day": "2026-12-07", "time": "10:00"}
    return [[LLMDelta(tool_call=ToolCall("b1", "book_appointment", args))], [LLMDelta(text=BOOKED)]]


def one_call(tmp_path: Path, redis_url: str, phone: str, name: str, sid: str) -> None:
    bookings = BookingStore(tmp_path / "bookings.sqlite3")
    crm = EmbeddedCRM(tmp_path / "crm.sqlite3", bookings=bookings)
    outbox = SQLiteOutbox(tmp_path / "outbox.sqlite3")
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    spec = LLMAgentSpec.model_validate(
        {"name": "Clinic", "greeting": GREETING,
         "llm": {"system_prompt": "Book.", "tools": ["book_appointment"]}}
    )  # fmt: skip
    inner = LLMAgent(spec, llm=ScriptedLLM(book(name)), bookings=bookings, crm=crm,
                     outbox=outbox, today=lambda: date(2026, 12, 6))  # fmt: skip
    state = RedisStateStore(redis_url)
    runtime = Runtime(
        agent=CompliantAgent(inner, load_policy({})),
        stt=ScriptedSTT([f"this is {name}, book me Monday at ten, my number is {phone}"]),
        tts=RecordingTTS(),
        events=events,
        state=state,
        audio=AudioConfig(speculative_stt_after_s=None),
    )
    with TestClient(create_app(runtime)) as client:
        with client.websocket_connect("/twilio/media") as ws:
            caller = Caller(ws, sid)
            caller.send(twilio.Connected("Call", "1.0.0"))
            caller.send(twilio.build_start("MZ1", sid, custom_parameters={"from": phone}))
            caller.heard(GREETING)
            caller.say()
            caller.heard(BOOKED)
            caller.hang_up()
        assert client.portal is not None
        client.portal.call(state.aclose)
    asyncio.run(Relay(outbox, crm, "r1").run_once())  # the CRM gets the booking and lead
    events.close()


def found(tmp_path: Path, redis_url: str, needles: list[str]) -> list[str]:
    """Where any of ``needles`` is still stored: files' bytes and Redis values."""
    where = []
    for path in sorted(tmp_path.iterdir()):
        if path.is_file() and path.suffix != ".log":
            raw = path.read_bytes().decode("latin-1")
            where += [f"{path.name}: {n}" for n in needles if n in raw]
    client = redis.Redis.from_url(redis_url)
    try:
        for key in client.scan_iter("voicerail:*"):
            kind = client.type(key).decode()
            value = repr(client.hgetall(key) if kind == "hash" else client.get(key))
            where += [f"redis {key!r}: {n}" for n in needles if n in value]
    finally:
        client.close()
    return where


def test_erase_removes_one_caller_from_every_store_and_keeps_the_other(tmp_path, redis_url, capsys):
    with redis.Redis.from_url(redis_url) as client:
        client.flushdb()  # the server is shared: earlier tests' calls (same numbers) are not ours
    crm = EmbeddedCRM(tmp_path / "crm.sqlite3")
    crm.add_contact(ADA, {"first_name": "Ada", "last_name": "Lovelace"})
    one_call(tmp_path, redis_url, ADA, "Ada Lovelace", "CA" + "a" * 32)
    one_call(tmp_path, redis_url, BOB, "Bob Marley", "CA" + "b" * 32)
    ada = [ADA, ADA[1:], "Lovelace", "CA" + "a" * 32]
    bob = [BOB[1:], "Marley"]
    assert found(tmp_path, redis_url, ada), "the call stored Ada's data to begin with"

    code = main(["erase", "--phone", "+1 (555) 123-0000", "--data-dir", str(tmp_path),
                 "--redis-url", redis_url, "--json"])  # fmt: skip
    assert code == 0
    receipt = json.loads(capsys.readouterr().out)
    removed = receipt["removed"]
    assert removed["events.sqlite3: calls"] == 1 and removed["events.sqlite3: events"] > 5
    assert removed["crm.sqlite3: crm_contacts"] == 1 and removed["bookings.sqlite3: bookings"] == 1
    assert removed["outbox.sqlite3: crm_outbox"] >= 1 and removed["redis: call state"] == 2

    assert found(tmp_path, redis_url, ada) == []
    assert len(found(tmp_path, redis_url, bob)) >= 3  # the other caller is untouched
    with sqlite3.connect(tmp_path / "events.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM calls").fetchone() == (1,)

    [entry] = AuditLog(tmp_path / "audit.sqlite3").entries()
    assert entry.action == "erasure" and entry.target == phone_ref(ADA)
    assert entry.detail == removed and entry.seq == receipt["audit_seq"]
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 0
