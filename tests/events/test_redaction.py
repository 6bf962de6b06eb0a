"""Personal data stays in marked fields: never in logs, traces, metrics or unmarked fields."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterable, AsyncIterator

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.testclient import TestClient

from voicerail.audio.g711 import pcm16_to_ulaw
from voicerail.dialog.base import AgentReply
from voicerail.events.model import Event, EventKind
from voicerail.events.redaction import (
    RedactingFilter,
    install_log_redaction,
    luhn_valid,
    redacted_dict,
    scrub_event,
    scrub_text,
)
from voicerail.events.store import SQLiteEventStore
from voicerail.providers.base import STTCapabilities, Transcript, TTSCapabilities, TTSChunk
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import AudioConfig, Runtime
from voicerail.wire import twilio

CARD = "4111 1111 1111 1111"
PHONE = "+1 415 555 0132"
SAID = f"my card is {CARD} and my number is {PHONE}"
FORBIDDEN = (CARD, "4111111111111111", "4111-1111", "415 555 0132", "4155550132", "555 0132")


def leaks(text: str) -> list[str]:
    return [f for f in FORBIDDEN if f in text]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"pay {CARD} now", "pay [redacted:card] now"),
        ("card 4111-1111-1111-1111.", "card [redacted:card]."),
        (f"call {PHONE}", "call [redacted:phone]"),
        ("call (415) 555-0132 or 415.555.0132", "call [redacted:phone] or [redacted:phone]"),
        ("ssn 078-05-1120, mail jo.doe@example.org", "ssn [redacted:ssn], mail [redacted:email]"),
        ("at 2026-01-05 10:00:00 took 0.123456789012 s", None),
        ("sid CA1234567890abcdef1234567890abcd uuid 123e4567-e89b-12d3-a456-426614174000", None),
        ("HTTP 503 after 1.2 s, 12 words", None),
    ],
)
def test_scrub_text(text, expected):
    assert scrub_text(text) == (text if expected is None else expected)


def test_luhn_separates_card_numbers_from_other_long_digit_runs():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert scrub_text("ref 4111111111111112") == "ref 4111111111111112"  # 16 digits, not a card


def test_scrub_event_moves_personal_data_to_the_marked_field():
    event = Event(
        "c1",
        EventKind.PROVIDER_ATTEMPTED,
        1.0,
        1.0,
        data={"error": f"400: cannot say '{SAID}'", "attempt": 1, "slots": {"phone": PHONE}},
        pii={"text": "hello"},
    )
    clean = scrub_event(event)
    assert not leaks(json.dumps(clean.data))
    assert clean.data["attempt"] == 1
    assert clean.pii["data.error"] == event.data["error"]
    assert clean.pii["data.slots"] == {"phone": PHONE}
    assert clean.pii["text"] == "hello"
    plain = Event("c1", EventKind.MARK_PLAYED, 1.0, 1.0, data={"mark": "r1.s0"})
    assert scrub_event(plain) is plain
    assert redacted_dict(clean)["pii"] == {
        "text": "[redacted]",
        "data.error": "[redacted]",
        "data.slots": "[redacted]",
    }


def test_installed_redaction_reaches_every_handler_and_uninstalls(caplog):
    uninstall = install_log_redaction()
    assert install_log_redaction()() is None  # a second install is a no-op
    logger = logging.getLogger("voicerail.test_redaction")
    with caplog.at_level(logging.INFO, logger="voicerail.test_redaction"):
        logger.info("caller said %s", SAID)
        uninstall()
        logger.info("after: %s", PHONE)
    assert not leaks(caplog.records[0].getMessage())
    assert PHONE in caplog.records[1].getMessage()


def test_log_filter_scrubs_messages_arguments_and_tracebacks(caplog):
    logger = logging.getLogger("voicerail.test_redaction")
    caplog.handler.addFilter(RedactingFilter())
    with caplog.at_level(logging.DEBUG, logger="voicerail.test_redaction"):
        logger.info("caller said %s", SAID)
        try:
            raise RuntimeError(f"could not book {PHONE}")
        except RuntimeError:
            logger.exception("booking failed")
    text = caplog.text
    assert not leaks(text)
    assert "[redacted:card]" in text and "[redacted:phone]" in text and "RuntimeError" in text


# -- a whole call over the media WebSocket -----------------------------------------------


class EchoingSTT:
    """Hears the card and phone number whatever the audio."""

    name, model, capabilities = "fake-stt", "none", STTCapabilities()

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        async for _ in audio:
            pass
        yield Transcript(SAID, is_final=True, confidence=0.9)


class FailingTTS:
    """Says the greeting; fails on text with digits, with the text in the error."""

    name, model, capabilities = "fake-tts", "none", TTSCapabilities(sample_rate_hz=8000)

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        if any(ch.isdigit() for ch in text):
            raise RuntimeError(f"cannot synthesize {text!r}")
        yield TTSChunk(b"\x00\x00" * 800, 8000, text)


class LeakyDialog:
    """Echoes what it heard and puts the slots in unmarked data (a careless agent)."""

    async def start(self) -> AgentReply:
        return AgentReply("Hello.")

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        return AgentReply(f"You said {text}.", data={"slots": {"card": CARD, "phone": PHONE}})

    async def on_dtmf(self, digits: str) -> AgentReply:
        return AgentReply("")

    async def on_silence(self, count: int, final: bool = False) -> AgentReply:
        return AgentReply("")

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        pass


class LeakyAgent:
    name = "leaky"

    def new_dialog(self, call_id: str) -> LeakyDialog:
        return LeakyDialog()


def tone_frame() -> bytes:
    """20 ms of a 400 Hz tone at about -15 dBFS, μ-law."""
    samples = [int(8000 * math.sin(2 * math.pi * 400 * n / 8000)) for n in range(160)]
    pcm = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
    return pcm16_to_ulaw(pcm)


def run_call(client: TestClient) -> None:
    """Greeting heard, one spoken turn, then the agent's reply fails."""
    with client.websocket_connect("/twilio/media") as ws:
        ws.send_text(twilio.serialize_inbound(twilio.Connected("Call", "1.0.0")))
        ws.send_text(twilio.serialize_inbound(twilio.build_start("MZ1", "CA1")))
        while True:  # the greeting, up to its mark
            message = twilio.parse_outbound(ws.receive_text())
            if isinstance(message, twilio.OutboundMark):
                ws.send_text(twilio.serialize_inbound(twilio.Mark(None, "MZ1", message.name)))
                break
        frames = [tone_frame()] * 30 + [b"\xff" * 160] * 60
        for chunk, payload in enumerate(frames, start=1):
            media = twilio.Media(None, "MZ1", "inbound", chunk, chunk * 20, payload)
            ws.send_text(twilio.serialize_inbound(media))
        with pytest.raises(Exception):  # noqa: B017 - the server closes the socket (1011)
            for _ in range(200):
                ws.receive_text()


def test_a_call_that_says_a_card_and_a_phone_number_leaks_neither(tmp_path, caplog):
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    exporter = InMemorySpanExporter()
    operations = OperationsSettings(span_processor=SimpleSpanProcessor(exporter), credentials=[])
    runtime = Runtime(
        agent=LeakyAgent(),
        stt=EchoingSTT(),
        tts=FailingTTS(),
        events=store,
        audio=AudioConfig(speculative_stt_after_s=None),
    )
    app = create_app(runtime, ServerSettings(operations=operations))
    uninstall = install_log_redaction()  # every record of the process, at creation
    try:
        with caplog.at_level(logging.DEBUG), TestClient(app) as client:
            run_call(client)
            metrics = client.get("/metrics").text
    finally:
        uninstall()
    [call] = store.calls()
    events = store.events(call.call_id)
    assert call.outcome == "failed"
    # the personal data was captured, in the marked fields only
    transcript = next(e for e in events if e.kind == EventKind.TRANSCRIPT_FINAL)
    assert transcript.pii["text"] == SAID
    decided = [e for e in events if e.kind == EventKind.DIALOG_DECIDED][-1]
    assert decided.pii["data.slots"] == {"card": CARD, "phone": PHONE}
    unmarked = [
        json.dumps({k: v for k, v in e.to_dict().items() if k != "pii"}) for e in events
    ] + [json.dumps(call.to_dict())]
    assert [leaks(text) for text in unmarked if leaks(text)] == []
    assert "[redacted:card]" in (call.error or "")
    # logs: the event log (DEBUG) and the driver's traceback of the failed reply
    assert "agent job failed" in caplog.text and "event {" in caplog.text
    assert not leaks(caplog.text)
    # traces
    spans = exporter.get_finished_spans()
    assert {s.name for s in spans} >= {"call", "turn", "stt", "dialog"}
    exported = json.dumps([json.loads(s.to_json()) for s in spans])
    assert not leaks(exported)
    assert not leaks(metrics) and "voicerail_calls_total" in metrics
    store.close()
