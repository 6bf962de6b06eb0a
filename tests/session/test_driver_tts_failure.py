"""A sentence no TTS can speak is skipped with an event; the call is not failed."""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.testclient import TestClient

import voicerail.wire.twilio as twilio
from voicerail.errors import ProviderUnavailable
from voicerail.events.model import EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.providers.base import TTSCapabilities, TTSChunk
from voicerail.server.app import create_app
from voicerail.session.runtime import Runtime
from voicerail.testing.doubles import QuietAgent, SilentSTT


class DeadTTS:
    name, model, capabilities = "dead", "none", TTSCapabilities(sample_rate_hz=8000)

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        raise ProviderUnavailable("no tts provider available", provider="router")
        yield  # pragma: no cover  (makes this an async generator)


def test_a_call_whose_greeting_cannot_be_synthesized_is_not_failed(tmp_path):
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    runtime = Runtime(agent=QuietAgent(), stt=SilentSTT(), tts=DeadTTS(), events=store)
    with TestClient(create_app(runtime)) as client, client.websocket_connect("/twilio/media") as ws:
        ws.send_text(twilio.serialize_inbound(twilio.Connected("Call", "1.0.0")))
        ws.send_text(twilio.serialize_inbound(twilio.build_start("MZ1", "CA1")))
        mark = twilio.parse_outbound(ws.receive_text())  # the greeting's mark, without audio
        assert isinstance(mark, twilio.OutboundMark)
        ws.send_text(twilio.serialize_inbound(twilio.Stop(3, "MZ1", "AC" + "0" * 32, "CA1")))
    [call] = store.calls()
    events = store.events(call.call_id)
    store.close()
    assert call.outcome == "abandoned" and call.error is None
    skipped = [e for e in events if e.kind == EventKind.PROVIDER_ATTEMPTED]
    assert [(e.outcome, e.data["sentence_skipped"]) for e in skipped] == [("error", 0)]
