"""pocketsphinx streaming STT: real recorded speech, fed in 20 ms chunks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import jiwer
import pytest

from voicerail.errors import ConfigError, ErrorClass, ProviderError
from voicerail.providers.base import SpeechToText, Transcript
from voicerail.providers.pocketsphinx_stt import PocketsphinxSTT
from voicerail.testing.speech_corpus import (
    CorpusUnavailable,
    Sample,
    asterisk_prompts,
    normalize_text,
    pocketsphinx_clips,
    read_pcm,
)

pytest.importorskip("pocketsphinx")

CHUNK_NUM_BYTES = 640  # 20 ms at 16000 Hz
# Multi-second asterisk prompts: 8 kHz telephone recordings, resampled to 16 kHz.
ASTERISK_PROMPTS = (
    "agent-pass",
    "agent-newlocation",
    "cannot-complete-as-dialed",
    "conf-getconfno",
    "conf-invalid",
    "conf-onlyperson",
    "conf-waitforleader",
    "demo-echodone",
    "dir-nomatch",
    "feature-not-avail-line",
    "pls-hold-while-try",
    "pm-invalid-option",
)
# Measured here, in 20 ms chunks: 0.22-0.24 on the 16 kHz pocketsphinx test clips;
# 0.53-0.62 on these telephone prompts (depending on what the decoder heard
# before), where whisper tiny.en makes about 0.04. The bounds leave a margin.
MAX_WER_WIDEBAND = 0.3
MAX_WER_TELEPHONE = 0.7


@pytest.fixture(scope="session")
def stt() -> Iterator[PocketsphinxSTT]:
    provider = PocketsphinxSTT()
    provider.preload()
    yield provider
    provider.close()


def corpus(load) -> list[Sample]:
    try:
        return load()
    except CorpusUnavailable as error:
        pytest.skip(str(error))


async def chunked(pcm: bytes, num_bytes: int = CHUNK_NUM_BYTES) -> AsyncIterator[bytes]:
    for start in range(0, len(pcm), num_bytes):
        yield pcm[start : start + num_bytes]


async def transcripts(stt: PocketsphinxSTT, pcm: bytes) -> list[Transcript]:
    return [t async for t in stt.transcribe(chunked(pcm), sample_rate_hz=16000)]


async def corpus_wer(stt: PocketsphinxSTT, samples: list[Sample]) -> float:
    references, hypotheses = [], []
    for sample in samples:
        final = (await transcripts(stt, read_pcm(sample, 16000)))[-1]
        references.append(normalize_text(sample.transcript))
        hypotheses.append(normalize_text(final.text))
    return jiwer.wer(references, hypotheses)


def test_is_a_streaming_speech_to_text_with_partials():
    stt = PocketsphinxSTT(name="fallback")
    assert isinstance(stt, SpeechToText)
    assert stt.name == "fallback"
    assert stt.capabilities.streaming and stt.capabilities.partials
    assert stt.capabilities.sample_rates_hz == (16000,)


async def test_rejects_other_sample_rates_and_languages():
    stt = PocketsphinxSTT()
    with pytest.raises(ValueError, match="accepts 16000 Hz audio, got 8000 Hz"):
        await anext(stt.transcribe(chunked(b""), sample_rate_hz=8000))
    with pytest.raises(ValueError, match="English only, got 'fr-FR'"):
        await anext(stt.transcribe(chunked(b""), sample_rate_hz=16000, language="fr-FR"))


def test_model_dir_without_model_files_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="has no 'en-us'") as caught:
        PocketsphinxSTT(model_dir=tmp_path)
    assert caught.value.field == "stt.model_dir"


@pytest.mark.slow
async def test_librivox_and_card_clips_within_wer_bound(stt: PocketsphinxSTT):
    assert await corpus_wer(stt, corpus(pocketsphinx_clips)) <= MAX_WER_WIDEBAND


@pytest.mark.slow
async def test_resampled_telephone_prompts_within_wer_bound(stt: PocketsphinxSTT):
    samples = corpus(lambda: asterisk_prompts(ASTERISK_PROMPTS))
    assert await corpus_wer(stt, samples) <= MAX_WER_TELEPHONE


@pytest.mark.slow
async def test_partials_arrive_before_one_final_with_usage(stt: PocketsphinxSTT):
    sample = corpus(lambda: pocketsphinx_clips(("librivox",)))[1]  # 3 s
    pcm = read_pcm(sample)
    results = await transcripts(stt, pcm)
    *partials, final = results
    assert len(partials) >= 3 and not any(t.is_final for t in partials)
    assert [t.end_s for t in partials] == sorted(t.end_s for t in partials)
    assert partials[0].end_s < 2.0  # the first words arrive while the clip still plays
    assert final.is_final and final.text
    assert final.confidence is not None and 0.0 < final.confidence <= 1.0
    assert final.usage is not None
    assert final.usage.audio_s == pytest.approx(len(pcm) / 32000)
    assert final.usage.provider == "pocketsphinx"


@pytest.mark.slow
async def test_silence_yields_one_empty_final(stt: PocketsphinxSTT):
    results = await transcripts(stt, bytes(32000))
    assert [(t.text, t.is_final, t.confidence) for t in results] == [("", True, None)]


@pytest.mark.slow
async def test_chunks_splitting_samples_decode_like_whole_samples():
    """Fresh decoders each: a decoder's normalization adapts to what it decoded before."""
    pcm = read_pcm(corpus(lambda: pocketsphinx_clips(("librivox",)))[1])
    finals = []
    for num_bytes in (333, CHUNK_NUM_BYTES):
        stt = PocketsphinxSTT()
        stream = stt.transcribe(chunked(pcm, num_bytes), sample_rate_hz=16000)
        finals.append([t async for t in stream][-1].text)
        stt.close()
    assert finals[0] == finals[1]
    assert "young man" in finals[0]


@pytest.mark.slow
async def test_odd_byte_count_is_a_value_error(stt: PocketsphinxSTT):
    with pytest.raises(ValueError, match="even number of bytes, got 641"):
        await transcripts(stt, bytes(641))


@pytest.mark.slow
async def test_utterance_beyond_max_decoders_fails_over_at_once():
    stt = PocketsphinxSTT(max_decoders=1)
    gate = asyncio.Event()

    async def held_open() -> AsyncIterator[bytes]:
        yield bytes(640)
        await gate.wait()

    first = asyncio.create_task(anext(stt.transcribe(held_open(), sample_rate_hz=16000), None))
    await asyncio.sleep(0)
    with pytest.raises(ProviderError, match="all 1 decoders are busy") as caught:
        await anext(stt.transcribe(chunked(bytes(640)), sample_rate_hz=16000))
    assert caught.value.error_class is ErrorClass.TRANSIENT
    gate.set()
    await first
    stt.close()


@pytest.mark.slow
async def test_cancelled_utterance_leaves_a_decoder_fit_for_the_next():
    stt = PocketsphinxSTT(max_decoders=1)
    sample = corpus(lambda: pocketsphinx_clips(("librivox",)))[1]
    pcm = read_pcm(sample)
    stream = stt.transcribe(chunked(pcm), sample_rate_hz=16000)
    await anext(stream)  # the first partial: the decoder is mid-utterance
    await stream.aclose()
    final = (await transcripts(stt, pcm))[-1]  # the one decoder was reset and reused
    assert final.is_final and "young man" in final.text
    stt.close()
