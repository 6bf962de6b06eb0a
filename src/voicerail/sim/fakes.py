"""Cloud-like fake providers and agents for simulated load: the server side.

The simulator measures the runtime, not speech models: these fakes answer
with the latency distributions of cloud providers and cost almost no CPU.

* :class:`ScriptedSTT` — "recognizes" the simulated caller's speech by knowing
  the script: each caller sends the texts of its utterances in
  ``start.customParameters["sim_script"]``, and the server's instrumentation
  (:mod:`voicerail.sim.fake_server`) counts the utterances as their audio
  arrives (a caller's silence is the exact μ-law silence byte, so speech runs
  are exact). A request returns the text of the latest utterance whose audio
  had begun — robust to speculative requests made during pauses.
* :class:`EchoAgent` — an LLM-like dialog: waits for a fake LLM (latency
  distribution, injected faults) and echoes what it heard; the greeting
  discloses the AI and the recording.
* :class:`LeakyAgent` — a deliberately broken agent that shares state between
  calls, so that the contamination check can be shown to fail.

Latency distributions and faults come from :mod:`voicerail.testing.faults`
(``FaultProfile``, ``load_faults``) when it is importable; otherwise a minimal
fixed-latency stand-in in this module is used.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from voicerail.dialog.base import AgentReply, Dialog
from voicerail.events.model import Outcome
from voicerail.providers.base import (
    STTCapabilities,
    Transcript,
    TTSCapabilities,
    TTSChunk,
    Usage,
)


@dataclass
class ConnectionScript:
    """What the instrumentation knows about one media connection.

    Attributes:
        texts: the caller's utterances, in order (from ``sim_script``).
        utterance_index: index of the latest utterance whose audio began (-1: none).
    """

    texts: list[str] = field(default_factory=list)
    utterance_index: int = -1

    def current_text(self) -> str:
        """The latest utterance's text ("" when unknown)."""
        index = self.utterance_index
        return self.texts[index] if 0 <= index < len(self.texts) else ""


#: The script of the connection whose tasks are running (set per WebSocket).
current_script: contextvars.ContextVar[ConnectionScript | None] = contextvars.ContextVar(
    "voicerail_sim_script", default=None
)

GREETING = (
    "Hello, you're talking to an AI assistant, and this call may be recorded. How can I help?"
)


class ScriptedSTT:
    """A speech-to-text that returns the simulated caller's scripted words (see module).

    Latency and faults are added by wrapping it (``FaultySTT``).
    """

    name = "fake-stt"
    model = "scripted"
    capabilities = STTCapabilities(sample_rates_hz=(8000, 16000), partials=False)

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        num_bytes = 0
        async for chunk in audio:
            num_bytes += len(chunk)
        script = current_script.get()
        text = script.current_text() if script is not None else ""
        audio_s = num_bytes / 2 / sample_rate_hz
        usage = Usage(self.name, self.model, audio_s=audio_s)
        yield Transcript(text, is_final=True, confidence=0.95, end_s=audio_s, usage=usage)


class ToneTTS:
    """Minimal fake TTS (used only when ``voicerail.testing.faults`` is missing):
    a 500 Hz tone, 0.3 s per word, one chunk per word, 16 kHz."""

    name = "fake-tts"
    model = "tone"
    capabilities = TTSCapabilities(sample_rate_hz=16000)

    def __init__(self, first_byte_s: float = 0.15, seconds_per_word: float = 0.3) -> None:
        self.first_byte_s = first_byte_s
        self.seconds_per_word = seconds_per_word

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        await asyncio.sleep(self.first_byte_s)
        words = text.split()
        for index, word in enumerate(words):
            # a 500 Hz square wave at -30 dBFS: audible at the caller after resampling
            pcm = (b"\x00\x04" * 16 + b"\x00\xfc" * 16) * int(500 * self.seconds_per_word)
            yield TTSChunk(pcm, 16000, word if index == len(words) - 1 else "")


@dataclass(frozen=True)
class CloudLatency:
    """Default cloud-like latencies, seconds (medians of lognormal distributions).

    Attributes:
        stt_s: final transcript after the audio ends (streaming STT).
        llm_s: time to the first token.
        tts_s: time to the first audio byte.
        sigma: lognormal spread (0: fixed latencies).
        seconds_per_word: length of the fake speech per word.
    """

    stt_s: float = 0.12
    llm_s: float = 0.35
    tts_s: float = 0.15
    sigma: float = 0.3
    seconds_per_word: float = 0.3


def default_profiles(latency: CloudLatency = CloudLatency()) -> dict[str, Any]:
    """``FaultProfile``s named ``fake-stt``, ``fake-llm``, ``fake-tts`` with ``latency``.

    Returns an empty dict when ``voicerail.testing.faults`` is not importable.
    """
    try:
        from voicerail.testing.faults import Delay, FaultProfile
    except ImportError:
        return {}

    def lognormal(median_s: float, seed: int) -> Any:
        first = (
            Delay(kind="lognormal", median_s=median_s, sigma=latency.sigma)
            if latency.sigma
            else Delay(kind="fixed", value_s=median_s)
        )
        return FaultProfile(
            first_byte_delay=first,
            chunk_delay=Delay(kind="fixed", value_s=0.01),
            seed=seed,
        )

    return {
        "fake-stt": lognormal(latency.stt_s, 1),
        "fake-llm": lognormal(latency.llm_s, 2),
        "fake-tts": lognormal(latency.tts_s, 3),
    }


@dataclass
class CloudFakes:
    """The fake providers of one server.

    Attributes:
        stt: speech-to-text (scripted, with latency and faults).
        tts: text-to-speech (tone, with latency and faults).
        llm: a fake LLM for :class:`EchoAgent` (None with the minimal stand-ins).
        llm_delay_s: the LLM's latency when ``llm`` is None.
        source: ``voicerail.testing.faults`` or ``voicerail.sim.fakes`` (the stand-ins).
    """

    stt: Any
    tts: Any
    llm: Any
    llm_delay_s: float
    source: str


def build_fakes(profiles: dict[str, Any], latency: CloudLatency = CloudLatency()) -> CloudFakes:
    """Cloud-like providers; ``profiles`` (``load_faults`` output) override the defaults."""
    try:
        from voicerail.testing.faults import FakeLLM, FakeTTS, FaultySTT
    except ImportError:
        return CloudFakes(
            stt=_DelayedSTT(ScriptedSTT(), latency.stt_s),
            tts=ToneTTS(latency.tts_s, latency.seconds_per_word),
            llm=None,
            llm_delay_s=latency.llm_s,
            source="voicerail.sim.fakes",
        )
    merged = {**default_profiles(latency), **profiles}
    return CloudFakes(
        stt=FaultySTT(ScriptedSTT(), merged["fake-stt"]),
        tts=FakeTTS(
            "fake-tts", profile=merged["fake-tts"], seconds_per_word=latency.seconds_per_word
        ),
        llm=FakeLLM("fake-llm", reply="ok", profile=merged["fake-llm"]),
        llm_delay_s=0.0,
        source="voicerail.testing.faults",
    )


class _DelayedSTT:
    def __init__(self, inner: ScriptedSTT, delay_s: float) -> None:
        self.inner, self.delay_s = inner, delay_s
        self.name, self.model, self.capabilities = inner.name, inner.model, inner.capabilities

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        chunks = [chunk async for chunk in audio]
        await asyncio.sleep(self.delay_s)

        async def replay() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        async for transcript in self.inner.transcribe(replay(), sample_rate_hz=sample_rate_hz):
            yield transcript


# -- agents ------------------------------------------------------------------------


class EchoAgent:
    """An LLM-like agent: every reply waits for the (fake) LLM and echoes the caller.

    It says goodbye and hangs up when the caller says "goodbye", and hands off
    when the caller asks for a person. Same behaviour as the Pipecat bot of
    ``bench/vs_pipecat.py``.
    """

    name = "echo"

    def __init__(self, fakes: CloudFakes) -> None:
        self.fakes = fakes

    def new_dialog(self, call_id: str) -> Dialog:
        return EchoDialog(self)

    async def think(self, text: str) -> None:
        """Wait as long as the LLM takes to answer ``text`` (raises its injected faults)."""
        llm = self.fakes.llm
        if llm is None:
            await asyncio.sleep(self.fakes.llm_delay_s)
            return
        from voicerail.providers.base import ChatMessage

        async for _ in llm.chat([ChatMessage(role="user", content=text)]):
            pass


def echo_reply(text: str) -> tuple[str, bool, bool]:
    """(reply, end call, handoff) of the echo agent for caller ``text``."""
    lowered = text.lower()
    if "goodbye" in lowered or "bye" in lowered.split():
        return "Thank you for calling. Goodbye!", True, False
    if "person" in lowered or "human" in lowered:
        return "I'll transfer you to a colleague now.", True, True
    return f"You said: {text.strip().rstrip('.')}. What else can I do for you?", False, False


class EchoDialog:
    """One call of :class:`EchoAgent`."""

    def __init__(self, agent: EchoAgent) -> None:
        self.agent = agent
        self.history: list[str] = []

    async def start(self) -> AgentReply:
        return AgentReply(text=GREETING, node="greeting")

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        await self.agent.think(text)
        self.history.append(text)
        reply, end_call, handoff = echo_reply(text)
        outcome = Outcome.HANDOFF if handoff else (Outcome.COMPLETED if end_call else None)
        return AgentReply(
            text=reply, end_call=end_call, handoff=handoff, outcome=outcome, node="echo"
        )

    async def on_dtmf(self, digits: str) -> AgentReply:
        if digits == "0":
            return AgentReply(
                text="Transferring you now.", handoff=True, end_call=True, outcome=Outcome.HANDOFF
            )
        return AgentReply(text=f"You pressed {digits}.", node="dtmf")

    async def on_silence(self, count: int, final: bool = False) -> AgentReply:
        if final:
            return AgentReply(text="I'll end the call now. Goodbye!", end_call=True)
        return AgentReply(text="Are you still there?")

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        return None


class LeakyAgent(EchoAgent):
    """BROKEN ON PURPOSE: keeps the caller's name in a class attribute, shared by
    every call, and greets each new caller with the last name it heard. Exists to
    prove that the contamination check fails a server that shares state."""

    name = "leaky"
    remembered_name: str = ""  # class attribute: shared by every call, the bug

    def new_dialog(self, call_id: str) -> Dialog:
        return _LeakyDialog(self)


class _LeakyDialog(EchoDialog):
    async def start(self) -> AgentReply:
        name = LeakyAgent.remembered_name
        text = f"{GREETING} Welcome back, {name}." if name else GREETING
        return AgentReply(text=text, node="greeting")

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        _, found, rest = text.lower().partition("my name is")
        if found:
            LeakyAgent.remembered_name = text[len(text) - len(rest) :].strip(" .")
        return await super().on_user_turn(text, confidence)
