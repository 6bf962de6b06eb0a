"""Small test doubles for the provider and dialog interfaces: a test that needs a
call to run, but not what a real model says, builds its Runtime from these.

All are deterministic and instant; none touches the network or a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import voicerail.wire.twilio as twilio
from voicerail.dialog.base import AgentReply
from voicerail.events.store import SQLiteEventStore
from voicerail.providers.base import (
    ChatMessage,
    LLMCapabilities,
    LLMDelta,
    STTCapabilities,
    ToolSpec,
    Transcript,
    TTSCapabilities,
    TTSChunk,
)
from voicerail.session.runtime import Runtime
from voicerail.state.session import MemoryStateStore
from voicerail.testing.clock import FakeClock


class SilentSTT:
    """Reads the whole utterance and hears nothing: one final, empty transcript."""

    name, model, capabilities = "silent", "none", STTCapabilities()

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        async for _ in audio:
            pass
        yield Transcript("", is_final=True)


class SilentTTS:
    """0.1 s of digital silence (s16le, 8 kHz) per request."""

    name, model, capabilities = "silent", "none", TTSCapabilities(sample_rate_hz=8000)

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        yield TTSChunk(b"\x00\x00" * 800, 8000, text)


class HearingSTT:
    """Reads the whole utterance and hears ``text``: one final transcript of it."""

    name, model, capabilities = "hearing", "none", STTCapabilities()

    def __init__(self, text: str, confidence: float = 0.9) -> None:
        self.text = text
        self.confidence = confidence

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        async for _ in audio:
            pass
        yield Transcript(self.text, is_final=True, confidence=self.confidence)


class ToneTTS:
    """``num_samples`` (default 160: 20 ms) of a quiet constant level (s16le, 8 kHz)
    per request."""

    name, model, capabilities = "tone", "none", TTSCapabilities(sample_rate_hz=8000)

    def __init__(self, num_samples: int = 160) -> None:
        self.num_samples = num_samples

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        yield TTSChunk(b"\x10\x00" * self.num_samples, 8000, text)


class ScriptedLLM:
    """Answers each chat with the next list of deltas of ``script``; keeps the prompts.

    Raises:
        IndexError: chatted more often than the script has replies.
    """

    name, model, capabilities = "scripted", "scripted-1", LLMCapabilities()

    def __init__(self, script: list[list[LLMDelta]]) -> None:
        self.script = list(script)
        self.prompts: list[list[ChatMessage]] = []

    async def chat(
        self, messages: Sequence[ChatMessage], *, tools: Sequence[ToolSpec] = ()
    ) -> AsyncIterator[LLMDelta]:
        self.prompts.append(list(messages))
        for delta in self.script.pop(0):
            yield delta


class QuietDialog:
    """Greets with "Hello." and says nothing afterwards."""

    async def start(self) -> AgentReply:
        return AgentReply("Hello.")

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        return AgentReply("")

    async def on_dtmf(self, digits: str) -> AgentReply:
        return AgentReply("")

    async def on_silence(self, count: int, final: bool = False) -> AgentReply:
        return AgentReply("")

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        pass


class QuietAgent:
    """Builds a :class:`QuietDialog` per call."""

    name = "quiet"

    def new_dialog(self, call_id: str) -> QuietDialog:
        return QuietDialog()


class KeyCountingDialog(QuietDialog):
    """Counts the keys pressed; can be snapshotted (``{"node": "keys", "keys": n}``),
    restored and resumed with a recap that names the count."""

    def __init__(self) -> None:
        self.keys = 0

    async def on_dtmf(self, digits: str) -> AgentReply:
        self.keys += 1
        return AgentReply(f"Key {self.keys}.")

    def snapshot(self) -> dict[str, Any]:
        return {"node": "keys", "keys": self.keys}

    def restore(self, snapshot: dict[str, Any]) -> None:
        self.keys = snapshot["keys"]

    async def resume(self) -> AgentReply:
        return AgentReply(f"Sorry, I lost you. {self.keys} keys so far.")


class KeyCountingAgent:
    """Builds a :class:`KeyCountingDialog` per call."""

    name = "keys"

    def new_dialog(self, call_id: str) -> KeyCountingDialog:
        return KeyCountingDialog()


def resumable_runtime(folder: Path) -> Runtime:
    """A Runtime whose calls can be carried on: :class:`KeyCountingAgent`, silent
    speech, a SQLite event store in ``folder`` and an in-memory state store (fake clock)."""
    return Runtime(
        agent=KeyCountingAgent(),
        stt=SilentSTT(),
        tts=SilentTTS(),
        events=SQLiteEventStore(folder / "events.sqlite3"),
        state=MemoryStateStore(monotonic=FakeClock().monotonic),
    )


def receive_until_mark(ws: Any) -> None:
    """Read a test WebSocket client's Twilio frames up to and with the next mark
    (a reply's audio, then its mark)."""
    while not isinstance(twilio.parse_outbound(ws.receive_text()), twilio.OutboundMark):
        pass
