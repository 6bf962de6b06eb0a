"""End to end: a caller says and keys 4111 1111 1111 1111 in a call with an LLM agent;
the number is then searched for in every store the call wrote (issue 14, PCI pause)."""

from __future__ import annotations

import json
import logging
import sqlite3
from datetime import date
from pathlib import Path

import pytest
import redis
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from voicerail.compliance.dialog import CompliantAgent
from voicerail.compliance.policy import load_policy
from voicerail.crm.outbox import SQLiteOutbox
from voicerail.dialog.bookings import BookingStore
from voicerail.dialog.llm_agent import LLMAgent, LLMAgentSpec
from voicerail.events.model import EventKind
from voicerail.events.redaction import install_log_redaction
from voicerail.events.store import SQLiteEventStore
from voicerail.providers.base import LLMDelta, ToolCall
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import AudioConfig, Runtime
from voicerail.state.redis_store import RedisStateStore
from voicerail.testing.doubles import ScriptedLLM, ToneTTS

from .calls import Caller, ScriptedSTT

CARD = "4111111111111111"
GREETING = "Hi, you're talking to the shop's AI assistant, and calls are recorded."
ASK = "Please key in your card number, then press pound."
THANKS = "Thank you, your card is saved."
SPOKEN = [
    "my card number is 4111 1111 1111 1111",
    "four one one one one one one one one one one one one one one one",
]


def card_in(text: str) -> bool:
    """The card's digits in ``text``, whatever separates them."""
    digits = "".join(ch for ch in text if ch.isdigit())
    words = " ".join(text.lower().split())
    return CARD in digits or "four one one one one one one one" in words


def llm_script() -> list[list[LLMDelta]]:
    """Turn 1 (a spoken card): start the payment; turn 2 (the keyed card's token): thank."""
    return [
        [LLMDelta(tool_call=ToolCall("c1", "collect_payment", {}))],
        [LLMDelta(text=ASK)],
        [LLMDelta(text=THANKS)],
        [LLMDelta(tool_call=ToolCall("c2", "end_call", {}))],
    ]


def every_store_text(tmp_path: Path, redis_url: str, prefix: str) -> dict[str, str]:
    """Everything the call left behind, as text per store."""
    stores: dict[str, str] = {}
    for path in sorted(tmp_path.iterdir()):
        if path.is_file():
            stores[f"file {path.name}"] = path.read_bytes().decode("latin-1")
    for name in ("events.sqlite3", "outbox.sqlite3"):
        with sqlite3.connect(tmp_path / name) as db:
            stores[f"dump {name}"] = "\n".join(db.iterdump())
    client = redis.Redis.from_url(redis_url)
    try:
        values = []
        for key in client.scan_iter(f"{prefix}*"):
            kind = client.type(key).decode()
            if kind == "string":
                values.append(repr(client.get(key)))
            elif kind == "hash":
                values.append(repr(client.hgetall(key)))
            elif kind == "list":
                values.append(repr(client.lrange(key, 0, -1)))
            elif kind == "zset":
                values.append(repr(client.zrange(key, 0, -1)))
            else:
                values.append(repr(client.smembers(key)))
        stores["redis"] = "\n".join(values)
    finally:
        client.close()
    return stores


@pytest.mark.parametrize("spoken", SPOKEN, ids=["digits", "words"])
def test_a_card_said_and_keyed_in_a_call_is_found_in_no_store(tmp_path, caplog, redis_url, spoken):
    """The card reaches the tokenizer only: no event, log, span, prompt, state or CRM write."""
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    outbox = SQLiteOutbox(tmp_path / "outbox.sqlite3")
    bookings = BookingStore(tmp_path / "bookings.sqlite3")
    llm = ScriptedLLM(llm_script())
    spec = LLMAgentSpec.model_validate(
        {
            "name": "Shop",
            "greeting": GREETING,
            "llm": {"system_prompt": "Take payments.", "tools": ["collect_payment", "end_call"]},
        }
    )
    inner = LLMAgent(
        spec, llm=llm, bookings=bookings, outbox=outbox, today=lambda: date(2026, 12, 6)
    )
    agent = CompliantAgent(inner, load_policy({}))
    prefix = f"pci{abs(hash(spoken))}:"
    state = RedisStateStore(redis_url, prefix=prefix)
    exporter = InMemorySpanExporter()
    operations = OperationsSettings(span_processor=SimpleSpanProcessor(exporter), credentials=[])
    runtime = Runtime(
        agent=agent,
        stt=ScriptedSTT([spoken]),
        tts=ToneTTS(),
        events=events,
        state=state,
        audio=AudioConfig(speculative_stt_after_s=None),
    )
    app = create_app(runtime, ServerSettings(operations=operations))
    log_file = tmp_path / "server.log"
    handler = logging.FileHandler(log_file)
    logging.getLogger().addHandler(handler)
    uninstall = install_log_redaction()
    try:
        with caplog.at_level(logging.DEBUG), TestClient(app) as client:
            with client.websocket_connect("/twilio/media") as ws:
                caller = Caller(ws)
                caller.start()
                caller.heard(GREETING)
                caller.say()  # the card, aloud
                caller.heard(ASK)
                caller.key(CARD + "#")
                caller.heard(THANKS)
                caller.hang_up()
            [call] = events.calls()
            api = client.get(f"/api/calls/{call.call_id}").text
            assert client.portal is not None
            client.portal.call(state.aclose)  # its connections live on the app's loop
    finally:
        uninstall()
        logging.getLogger().removeHandler(handler)
        handler.close()

    recorded = events.events(call.call_id)
    decided = [e for e in recorded if e.kind == EventKind.DIALOG_DECIDED]
    assert any(e.data.get("pci") == "paused" for e in decided)
    captured = next(e for e in decided if e.data.get("pci") == "captured")
    assert captured.data["card_token"].startswith("tok_")
    assert captured.pii["card_last4"] == "1111"
    keys = [e for e in recorded if e.kind == EventKind.DTMF_RECEIVED]
    assert len(keys) == 17 and all(e.data == {"pci": True} and not e.pii for e in keys)
    transcript = next(e for e in recorded if e.kind == EventKind.TRANSCRIPT_FINAL)
    assert "[redacted:card]" in transcript.pii["text"]
    # what the LLM provider was sent: the redacted turn, then only the token
    prompts = json.dumps([[m.content for m in p] for p in llm.prompts])
    assert "[redacted:card]" in prompts and "tok_" in prompts

    where = {
        "llm prompts": prompts,
        "logs": caplog.text + log_file.read_text(),
        "spans": json.dumps([dict(s.attributes or {}) for s in exporter.get_finished_spans()]),
        "api": api,
        "events": json.dumps([e.to_dict() for e in recorded]),
        **every_store_text(tmp_path, redis_url, prefix),
    }
    assert where["redis"], "the call state was written to Redis"
    assert [name for name, text in where.items() if card_in(text)] == []
