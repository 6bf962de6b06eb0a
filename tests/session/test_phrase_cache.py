"""The phrase cache: fixed sentences synthesized once, keyed by voice and model version."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.testclient import TestClient

import voicerail.wire.twilio as twilio
from voicerail.dialog.base import AgentReply
from voicerail.errors import ProviderError
from voicerail.events.store import SQLiteEventStore
from voicerail.providers.base import TTSCapabilities, TTSChunk
from voicerail.server.app import create_app
from voicerail.session.phrase_cache import PhraseCache, fixed_sentences
from voicerail.session.runtime import Runtime
from voicerail.testing.doubles import QuietDialog, SilentSTT


class CountingTTS:
    """A 16 kHz tone per request; counts what it was asked to say."""

    capabilities = TTSCapabilities(sample_rate_hz=16000)

    def __init__(self, name="piper", model="joe", model_version="1", fail_on=()):
        self.name, self.model, self.model_version = name, model, model_version
        self.requests: list[str] = []
        self.fail_on = set(fail_on)

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        self.requests.append(text)
        if text in self.fail_on:
            raise ProviderError("voice failed", provider=self.name)
        yield TTSChunk(b"\x10\x00" * 3300, 16000, text)  # 206 ms: not whole 20 ms frames


def test_fixed_sentences_drop_caller_placeholders_and_repeats():
    texts = ["Hello. How can I help?", "Thanks, {name}. How can I help?", "Yes. {n} more"]
    assert fixed_sentences(texts) == ["Hello.", "How can I help?"]


@pytest.mark.asyncio
async def test_warm_synthesizes_each_fixed_sentence_once_in_whole_frames(tmp_path):
    tts = CountingTTS()
    cache = PhraseCache(tts, tmp_path)
    result = await cache.warm(["Hello there. Is that right?", "Is that right? {name}, yes."])
    assert (result.synthesized, result.loaded, result.failed) == (2, 0, 0)
    assert tts.requests == ["Hello there.", "Is that right?"]
    audio = cache.get("Hello there.")
    assert audio is not None and len(audio) % 160 == 0 and len(audio) >= 1600
    assert cache.get("{name}, yes.") is None
    assert (await cache.warm(["Hello there."])).synthesized == 0  # already in memory


@pytest.mark.asyncio
async def test_a_later_start_loads_from_disk_and_a_new_voice_or_version_misses(tmp_path):
    await PhraseCache(CountingTTS(), tmp_path).warm(["Hello there."])
    same = CountingTTS()
    assert (await PhraseCache(same, tmp_path).warm(["Hello there."])).loaded == 1
    assert same.requests == []
    for changed in (CountingTTS(model_version="2"), CountingTTS(model="amy")):
        assert (await PhraseCache(changed, tmp_path).warm(["Hello there."])).synthesized == 1
        assert changed.requests == ["Hello there."]


@pytest.mark.asyncio
async def test_a_sentence_that_fails_to_synthesize_is_left_uncached(tmp_path):
    tts = CountingTTS(fail_on={"Broken."})
    cache = PhraseCache(tts, None)
    result = await cache.warm(["Broken. Fine."])
    assert (result.synthesized, result.failed) == (1, 1)
    assert "Broken." not in cache and "Fine." in cache


class GreetingAgent:
    name = "greeter"

    def fixed_texts(self) -> list[str]:
        return ["Hello, thanks for calling. How can I help?"]

    def new_dialog(self, call_id: str) -> QuietDialog:
        dialog = QuietDialog()

        async def start() -> AgentReply:
            return AgentReply("Hello, thanks for calling. How can I help?")

        dialog.start = start  # type: ignore[method-assign]
        return dialog


def test_calls_greet_from_the_cache_without_asking_the_tts(tmp_path):
    tts = CountingTTS()
    store = SQLiteEventStore(tmp_path / "events.sqlite3")
    runtime = Runtime(
        agent=GreetingAgent(),
        stt=SilentSTT(),
        tts=tts,
        events=store,
        phrases=PhraseCache(tts, tmp_path / "phrases"),
    )
    assert runtime.phrases is not None
    with TestClient(create_app(runtime)) as client:
        client.portal.call(runtime.phrases.warm, GreetingAgent().fixed_texts())
        warmed = list(tts.requests)
        for n in (1, 2):
            with client.websocket_connect("/twilio/media") as ws:
                ws.send_text(twilio.serialize_inbound(twilio.Connected("Call", "1.0.0")))
                ws.send_text(twilio.serialize_inbound(twilio.build_start(f"MZ{n}", f"CA{n}")))
                first = twilio.parse_outbound(ws.receive_text())
                assert isinstance(first, twilio.OutboundMedia)
                stop = twilio.Stop(3, f"MZ{n}", "AC" + "0" * 32, f"CA{n}")
                ws.send_text(twilio.serialize_inbound(stop))
    store.close()
    assert warmed == ["Hello, thanks for calling.", "How can I help?"]
    assert tts.requests == warmed  # neither call asked the TTS for its greeting
    assert runtime.phrases.hits >= 2
