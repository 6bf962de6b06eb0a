"""A reply that is late gets the cached holding phrase first; a prompt one does not."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterable, AsyncIterator

import numpy as np
import pytest
from starlette.testclient import TestClient

import voicerail.wire.twilio as twilio
from voicerail.audio.g711 import pcm16_to_ulaw
from voicerail.dialog.base import AgentReply
from voicerail.events.model import EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.providers.base import STTCapabilities, Transcript
from voicerail.server.app import create_app
from voicerail.session.phrase_cache import HOLDING_PHRASE, PhraseCache
from voicerail.session.runtime import AudioConfig, Runtime
from voicerail.testing.doubles import QuietAgent
from voicerail.turns.policy import TurnConfig

from .test_phrase_cache import CountingTTS

TONE = pcm16_to_ulaw(
    (np.sin(np.arange(160) * 2 * math.pi * 440 / 8000) * 8000).astype("<i2").tobytes()
)
SILENCE = b"\xff" * 160


class SlowSTT:
    name, model, capabilities = "slow", "none", STTCapabilities()

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        async for _ in audio:
            pass
        await asyncio.sleep(self.delay_s)
        yield Transcript("hello", is_final=True)


class ReplyingAgent(QuietAgent):
    def new_dialog(self, call_id: str):
        dialog = super().new_dialog(call_id)

        async def on_user_turn(text: str, confidence: float | None) -> AgentReply:
            return AgentReply("Sure.")

        dialog.on_user_turn = on_user_turn  # type: ignore[method-assign]
        return dialog


def outbound_after_a_turn(tmp_path, stt_delay_s: float) -> tuple[list[str], list]:
    tts = CountingTTS()
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    runtime = Runtime(
        agent=ReplyingAgent(),
        stt=SlowSTT(stt_delay_s),
        tts=tts,
        events=store,
        phrases=PhraseCache(tts, None),
        audio=AudioConfig(
            endpoint_silence_s=0.2, speculative_stt_after_s=None, holding_after_s=0.3
        ),
        turns=TurnConfig(barge_in_s=5.0),
    )
    marks: list[str] = []
    with TestClient(create_app(runtime)) as client:
        assert runtime.phrases is not None
        client.portal.call(runtime.phrases.warm, [HOLDING_PHRASE])
        with client.websocket_connect("/twilio/media") as ws:
            send = ws.send_text
            send(twilio.serialize_inbound(twilio.Connected("Call", "1.0.0")))
            send(twilio.serialize_inbound(twilio.build_start("MZ1", "CA1")))
            seq = 2

            def read_until(mark: str) -> None:
                nonlocal seq
                while mark not in marks:
                    message = twilio.parse_outbound(ws.receive_text())
                    if isinstance(message, twilio.OutboundMark):
                        marks.append(message.name)  # played at once: echo it as Twilio does
                        send(twilio.serialize_inbound(twilio.Mark(seq, "MZ1", message.name)))
                        seq += 1

            read_until("r1.s0")  # the greeting
            for n, payload in enumerate([TONE] * 40 + [SILENCE] * 30):
                media = twilio.Media(seq, "MZ1", "inbound", n + 1, 20 * n, payload)
                send(twilio.serialize_inbound(media))
                seq += 1
            read_until("r2.s0")  # the reply to the turn
            send(twilio.serialize_inbound(twilio.Stop(99, "MZ1", "AC" + "0" * 32, "CA1")))
    [call] = store.calls()
    events = store.events(call.call_id)
    store.close()
    return marks, events


@pytest.mark.slow
def test_a_late_reply_is_preceded_by_the_holding_phrase(tmp_path):
    marks, events = outbound_after_a_turn(tmp_path, stt_delay_s=1.0)
    assert marks == ["r1.s0", "hold1", "r2.s0"]
    assert [e.data["turn"] for e in events if e.kind == EventKind.HOLDING_PHRASE_PLAYED] == [1]


@pytest.mark.slow
def test_a_prompt_reply_has_no_holding_phrase(tmp_path):
    marks, events = outbound_after_a_turn(tmp_path, stt_delay_s=0.0)
    assert marks == ["r1.s0", "r2.s0"]
    assert not [e for e in events if e.kind == EventKind.HOLDING_PHRASE_PLAYED]
