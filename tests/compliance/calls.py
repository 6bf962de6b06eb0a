"""A Twilio media stream driven by hand, for the compliance call tests."""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator

from voicerail.audio.g711 import pcm16_to_ulaw
from voicerail.providers.base import STTCapabilities, Transcript, TTSCapabilities, TTSChunk
from voicerail.session.runtime import AudioConfig
from voicerail.session.text import split_for_speech
from voicerail.wire import twilio


class ScriptedSTT:
    """Hears the next of ``texts`` for each utterance (a remote STT's final transcript)."""

    name, model, capabilities = "scripted-stt", "none", STTCapabilities()

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(texts)

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        async for _ in audio:
            pass
        yield Transcript(self.texts.pop(0), is_final=True, confidence=0.9)


class RecordingTTS:
    """20 ms of a quiet level per sentence; keeps every sentence it was asked to say."""

    name, model, capabilities = "recording-tts", "none", TTSCapabilities(sample_rate_hz=8000)

    def __init__(self) -> None:
        self.said: list[str] = []

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        self.said.append(text)
        yield TTSChunk(b"\x10\x00" * 160, 8000, text)


def tone_frame() -> bytes:
    """20 ms of a 400 Hz tone at about -15 dBFS, μ-law (speech for the energy VAD)."""
    samples = [int(8000 * math.sin(2 * math.pi * 400 * n / 8000)) for n in range(160)]
    return pcm16_to_ulaw(b"".join(s.to_bytes(2, "little", signed=True) for s in samples))


class Caller:
    """The caller's side of one media stream over a test client's WebSocket."""

    def __init__(self, ws, call_sid: str = "CA1") -> None:
        self.ws = ws
        self.call_sid = call_sid
        self.chunk = 0

    def send(self, message) -> None:
        self.ws.send_text(twilio.serialize_inbound(message))

    def start(self) -> None:
        self.send(twilio.Connected("Call", "1.0.0"))
        self.send(twilio.build_start("MZ1", self.call_sid))

    def heard(self, text: str) -> None:
        """Read the reply ``text`` up to its last mark, echoing each mark (played)."""
        marks = len(split_for_speech(text, AudioConfig().first_clause_min_words))
        while marks:
            message = twilio.parse_outbound(self.ws.receive_text())
            if isinstance(message, twilio.OutboundMark):
                self.send(twilio.Mark(None, "MZ1", message.name))
                marks -= 1

    def say(self) -> None:
        """One utterance: 0.6 s of tone, then 1.2 s of silence (the turn ends)."""
        for payload in [tone_frame()] * 30 + [b"\xff" * 160] * 60:
            self.chunk += 1
            self.send(twilio.Media(None, "MZ1", "inbound", self.chunk, self.chunk * 20, payload))

    def key(self, digits: str) -> None:
        for digit in digits:
            self.send(twilio.DTMF(None, "MZ1", "inbound_track", digit))

    def hang_up(self) -> None:
        self.send(twilio.Stop(None, "MZ1", "AC" + "0" * 32, self.call_sid))
