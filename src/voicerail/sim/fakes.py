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

Latency distributions and faults come from :mod:`voicerail.routing.faults`
(``FaultProfile``, ``load_faults``). The fakes are registered in the provider
registry (:func:`fake_registry`), so a simulated server builds its chains and
its Router exactly as ``voicerail serve`` does, and fails over as it does.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from voicerail.dialog.base import AgentReply, Dialog
from voicerail.events.model import Outcome, Stage
from voicerail.providers.base import (
    ChatMessage,
    LanguageModel,
    STTCapabilities,
    Transcript,
    Usage,
    closing_stream,
)
from voicerail.providers.registry import ProviderFactory, ProviderRegistry, ProviderSpec


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

    Args:
        name: provider name in routing and events.
    """

    model = "scripted"
    capabilities = STTCapabilities(sample_rates_hz=(8000, 16000), partials=False)

    def __init__(self, name: str = "fake-stt") -> None:
        self.name = name

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
    """``FaultProfile``s named ``fake-stt``, ``fake-llm``, ``fake-tts`` with ``latency``."""
    from voicerail.routing.faults import Delay, FaultProfile

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


class FakeOptions(BaseModel):
    """Options of ``fake-stt``, ``fake-tts`` and ``fake-llm`` in a deployment file.

    Their latencies and faults come from the fault profiles of their names (the
    ``--faults`` file over :func:`default_profiles`), as for any provider.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, min_length=1)


#: The chains of a simulated server without a deployment file.
FAKE_DEFAULTS = {
    Stage.STT: [ProviderSpec("fake-stt", {}, "defaults.stt[0]")],
    Stage.TTS: [ProviderSpec("fake-tts", {}, "defaults.tts[0]")],
    Stage.LLM: [ProviderSpec("fake-llm", {}, "defaults.llm[0]")],
}


def fake_registry(
    profiles: dict[str, Any],
    latency: CloudLatency = CloudLatency(),
    base: ProviderRegistry | None = None,
) -> ProviderRegistry:
    """``base`` (the built-in registry by default) with the cloud-like fakes added.

    A fake's latency and faults are the profile of its name in ``profiles``, else
    the default of its kind (:func:`default_profiles`); every other provider the
    registry builds is wrapped with the faults of ``profiles`` (as ``serve --faults``).
    """
    from voicerail.providers.builtin import default_registry
    from voicerail.routing.faults import FakeLLM, FakeTTS, FaultySTT, with_faults

    defaults = default_profiles(latency)
    merged = {**defaults, **profiles}
    built: set[int] = set()

    def fake(kind: str, make: Callable[[str, Any], Any]) -> Callable[[Any, str | None], Any]:
        def build(options: Any, secret: str | None) -> Any:
            name = options.name or kind
            provider = make(name, merged.get(name, defaults[kind]))
            built.add(id(provider))
            return provider

        return build

    registry = (base or default_registry()).copy()
    stt = fake("fake-stt", lambda name, profile: FaultySTT(ScriptedSTT(name), profile))
    tts = fake(
        "fake-tts",
        lambda name, profile: FakeTTS(
            name, profile=profile, seconds_per_word=latency.seconds_per_word
        ),
    )
    llm = fake("fake-llm", lambda name, profile: FakeLLM(name, reply="ok", profile=profile))
    registry.register(ProviderFactory("fake-stt", Stage.STT, FakeOptions, stt))
    registry.register(ProviderFactory("fake-tts", Stage.TTS, FakeOptions, tts))
    registry.register(ProviderFactory("fake-llm", Stage.LLM, FakeOptions, llm))
    return registry.wrapped(lambda p: p if id(p) in built else with_faults(p, profiles))


# -- agents ------------------------------------------------------------------------


class EchoAgent:
    """An LLM-like agent: every reply waits for the (fake) LLM and echoes the caller.

    It says goodbye and hangs up when the caller says "goodbye", and hands off
    when the caller asks for a person. Same behaviour as the Pipecat bot of
    ``bench/vs_pipecat.py``.
    """

    name = "echo"

    def __init__(self, llm: LanguageModel) -> None:
        self.llm = llm

    def new_dialog(self, call_id: str) -> Dialog:
        return EchoDialog(self)

    async def think(self, text: str) -> None:
        """Wait as long as the LLM takes to answer ``text`` (raises what the chain raises)."""
        stream = self.llm.chat([ChatMessage(role="user", content=text)])
        async with closing_stream(stream):
            async for _ in stream:
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
