"""Small test doubles for the provider and dialog interfaces: a test that needs a
call to run, but not what a real model says, builds its Runtime from these.

All are deterministic and instant; none touches the network or a model.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence

from voicerail.dialog.base import AgentReply
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


class ToneTTS:
    """20 ms of a quiet constant level (s16le, 8 kHz) per request."""

    name, model, capabilities = "tone", "none", TTSCapabilities(sample_rate_hz=8000)

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        yield TTSChunk(b"\x10\x00" * 160, 8000, text)


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
