"""Fault-injecting fakes: deterministic audio, seeded faults, the fault file."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicerail.errors import ConfigError, ErrorClass, ProviderError, ProviderTimeout
from voicerail.providers.base import ChatMessage, ToolCall
from voicerail.routing.faults import (
    Delay,
    FakeLLM,
    FakeSTT,
    FakeTTS,
    FaultProfile,
    FaultyLLM,
    FaultySTT,
    FaultyTTS,
    load_faults,
    with_faults,
)


class SleepRecorder:
    """An injected sleep that returns at once and remembers what it was asked."""

    def __init__(self) -> None:
        self.slept_s: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.slept_s.append(seconds)


async def one_chunk() -> AsyncIterator[bytes]:
    yield b"\x00\x00" * 800


async def test_fake_tts_yields_one_chunk_per_word_with_pcm_proportional_to_words():
    tts = FakeTTS("t", sample_rate_hz=16000, words_per_second=2.5)
    chunks = [c async for c in tts.synthesize("three short words")]
    assert [c.text for c in chunks] == ["three", "short", "words"]
    assert all(len(c.pcm) == 2 * 6400 and c.sample_rate_hz == 16000 for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.audio_s == pytest.approx(1.2)
    assert chunks[-1].usage.characters == len("three short words")


async def test_fake_tts_without_chunk_texts_names_the_text_on_the_last_chunk():
    tts = FakeTTS("t", chunk_texts=False)
    assert [c.text async for c in tts.synthesize("a b c")] == ["", "", "a b c"]


@pytest.mark.parametrize(
    ("kind", "status", "error_class"),
    [
        ("503", 503, ErrorClass.TRANSIENT),
        ("429", 429, ErrorClass.TRANSIENT),
        ("401", 401, ErrorClass.PERMANENT),
    ],
)
async def test_error_rates_raise_classified_provider_errors(
    kind: str, status: int, error_class: ErrorClass
):
    tts = FakeTTS("t", profile=FaultProfile(error_rates={kind: 1.0}))
    with pytest.raises(ProviderError) as caught:
        _ = [c async for c in tts.synthesize("hi")]
    assert caught.value.status == status and caught.value.error_class is error_class


async def test_timeout_rate_raises_provider_timeout():
    stt = FakeSTT("s", profile=FaultProfile(error_rates={"timeout": 1.0}))
    with pytest.raises(ProviderTimeout):
        _ = [t async for t in stt.transcribe(one_chunk(), sample_rate_hz=16000)]


async def test_hang_never_answers():
    llm = FakeLLM("l", profile=FaultProfile(hang_rate=1.0))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(llm.chat([]).__anext__(), 0.02)


async def test_first_byte_slow_and_chunk_delays_go_through_the_injected_sleep():
    sleep = SleepRecorder()
    profile = FaultProfile(
        first_byte_delay=Delay(value_s=0.1),
        slow_rate=1.0,
        slow_first_byte=Delay(value_s=2.0),
        chunk_delay=Delay(value_s=0.01),
    )
    tts = FakeTTS("t", profile=profile, sleep=sleep)
    _ = [c async for c in tts.synthesize("one two three")]
    assert sleep.slept_s == pytest.approx([2.1, 0.01, 0.01])


async def test_drop_after_n_chunks_fails_mid_stream():
    tts = FakeTTS("t", profile=FaultProfile(drop_rate=1.0, drop_after_chunks=2))
    heard: list[str] = []
    with pytest.raises(ProviderError, match="drop after 2 chunks"):
        async for chunk in tts.synthesize("a b c d"):
            heard.append(chunk.text)
    assert heard == ["a", "b"]


async def test_hang_after_n_chunks_hangs_mid_stream():
    tts = FakeTTS("t", profile=FaultProfile(hang_after_chunks=1))
    stream = tts.synthesize("a b")
    assert (await stream.__anext__()).text == "a"
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stream.__anext__(), 0.02)


def test_delays_are_seeded_and_within_their_distribution():
    lognormal = Delay(kind="lognormal", median_s=0.2, sigma=0.5)
    first = [lognormal.draw(random.Random(7)) for _ in range(3)]
    assert first == [lognormal.draw(random.Random(7)) for _ in range(3)]
    rng = random.Random(1)
    uniform = Delay(kind="uniform", low_s=0.1, high_s=0.2)
    assert all(0.1 <= uniform.draw(rng) <= 0.2 for _ in range(100))
    assert Delay(value_s=-1.0).draw(rng) == 0.0
    with pytest.raises(ValueError, match="unknown delay kind"):
        Delay(kind="gamma")  # type: ignore[arg-type]


def test_profiles_reject_bad_rates_and_kinds():
    with pytest.raises(ValueError, match=r"hang_rate must be within 0\.\.1, got 2"):
        FaultProfile(hang_rate=2)
    with pytest.raises(ValueError, match="neither a status nor 'timeout'"):
        FaultProfile(error_rates={"boom": 0.5})


async def test_reported_model_version_and_stt_llm_outputs():
    profile = FaultProfile(model_version="v9")
    stt = FakeSTT("s", "book me tuesday", profile=profile)
    transcripts = [t async for t in stt.transcribe(one_chunk(), sample_rate_hz=16000)]
    assert [(t.text, t.is_final) for t in transcripts] == [
        ("book", False),
        ("book me tuesday", True),
    ]
    assert transcripts[-1].usage is not None and transcripts[-1].usage.model_version == "v9"
    assert stt.received_num_bytes == [1600]
    call = ToolCall("c1", "book", {"day": "tuesday"})
    llm = FakeLLM("l", "ok then", (call,), profile=profile)
    deltas = [d async for d in llm.chat([ChatMessage("user", "hi")])]
    assert "".join(d.text for d in deltas) == "ok then"
    assert deltas[-2].tool_call == call and deltas[-1].finish_reason == "tool_calls"
    assert deltas[-1].usage is not None and deltas[-1].usage.model_version == "v9"


async def test_fake_stt_rejects_unsupported_rates():
    with pytest.raises(ValueError, match="44100 Hz"):
        _ = [t async for t in FakeSTT("s").transcribe(one_chunk(), sample_rate_hz=44100)]


async def test_probe_fails_while_the_profile_always_fails():
    tts = FakeTTS("t", profile=FaultProfile(error_rates={"503": 1.0}))
    with pytest.raises(ProviderError):
        await tts.probe()
    tts.profile = FaultProfile()
    await tts.probe()
    assert tts.probes == 2


async def test_with_faults_wraps_each_kind_by_name():
    profiles = {
        "t": FaultProfile(error_rates={"503": 1.0}),
        "s": FaultProfile(),
        "l": FaultProfile(),
    }
    assert isinstance(with_faults(FakeTTS("t"), profiles), FaultyTTS)
    assert isinstance(with_faults(FakeSTT("s"), profiles), FaultySTT)
    assert isinstance(with_faults(FakeLLM("l"), profiles), FaultyLLM)
    plain = FakeTTS("other")
    assert with_faults(plain, profiles) is plain
    wrapped = with_faults(FakeTTS("t"), profiles)
    with pytest.raises(ProviderError):
        _ = [c async for c in wrapped.synthesize("hi")]
    stt = with_faults(FakeSTT("s", "yes"), profiles)
    assert [t.text async for t in stt.transcribe(one_chunk(), sample_rate_hz=8000)][-1] == "yes"
    llm = with_faults(FakeLLM("l", "fine"), profiles)
    assert "".join([d.text async for d in llm.chat([])]) == "fine"
    with pytest.raises(TypeError, match="cannot inject faults into X"):
        with_faults(type("X", (), {"name": "t"})(), profiles)


def test_load_faults_reads_the_documented_format(tmp_path: Path):
    path = tmp_path / "faults.yaml"
    path.write_text(
        """
piper:
  hang_rate: 1.0
faster-whisper:
  error_rates: {"503": 0.3, "429": 0.1, "timeout": 0.05}
  first_byte_delay: {kind: lognormal, median_s: 0.2, sigma: 0.5}
  drop_rate: 0.2
  drop_after_chunks: 2
deepgram:
  model_version: "2026-11-01"
  slow_rate: 0.1
  slow_first_byte: {kind: uniform, low_s: 1.0, high_s: 3.0}
""",
        encoding="utf-8",
    )
    profiles = load_faults(path)
    assert profiles["piper"].hang_rate == 1.0
    whisper = profiles["faster-whisper"]
    assert whisper.error_rates == {"503": 0.3, "429": 0.1, "timeout": 0.05}
    assert whisper.first_byte_delay == Delay(kind="lognormal", median_s=0.2, sigma=0.5)
    assert profiles["deepgram"].slow_first_byte.high_s == 3.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("piper: {hang: 1}", "unknown fault field 'hang'"),
        ("piper: {hang_rate: 3}", "hang_rate must be within 0..1"),
        ("piper: 3", "must be a mapping"),
        ("- piper", "maps provider names"),
        ("piper: {error_rates: {oops: 1}}", "neither a status"),
        ("piper: [", "cannot read fault file"),
    ],
)
def test_load_faults_rejects_bad_files(tmp_path: Path, text: str, message: str):
    path = tmp_path / "faults.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_faults(path)
