"""faster-whisper STT: contract, accuracy on real recorded speech, failure mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from voicerail.errors import ErrorClass, ProviderError
from voicerail.providers.base import SpeechToText
from voicerail.providers.whisper import FasterWhisperSTT
from voicerail.testing.conformance import check_stt
from voicerail.testing.speech_corpus import (
    CorpusUnavailable,
    Sample,
    asterisk_prompts,
    normalize_text,
    pocketsphinx_clips,
    read_pcm,
)

# Telephone prompts with varied words, 2-5 s each, 8 kHz.
ASTERISK_NAMES = (
    "agent-pass",
    "all-circuits-busy-now",
    "cannot-complete-as-dialed",
    "ss-noservice",
    "transfer",
    "pbx-invalidpark",
    "privacy-unident",
    "vm-torerecord",
    "conf-onlyperson",
    "vm-dialout",
    "vm-enter-num-to-call",
    "conf-waitforleader",
)
# Measured with tiny.en int8, greedy: 4.6% on the prompts, 8.7% on the pocketsphinx
# clips (the card names are isolated words, often misheard: "clubs" as "clothes").
MAX_ASTERISK_WER = 0.15
MAX_POCKETSPHINX_WER = 0.20


def _corpus(load):
    try:
        return load()
    except CorpusUnavailable as missing:
        pytest.skip(str(missing))


async def _one_chunk(pcm: bytes) -> AsyncIterator[bytes]:
    yield pcm


async def _corpus_wer(stt: SpeechToText, samples: list[Sample], transcribe_pcm) -> float:
    jiwer = pytest.importorskip("jiwer")
    references, hypotheses = [], []
    for sample in samples:
        transcript = await transcribe_pcm(stt, read_pcm(sample, 16000), 16000)
        references.append(normalize_text(sample.transcript))
        hypotheses.append(normalize_text(transcript.text))
    return float(jiwer.wer(references, hypotheses))


async def test_unsupported_sample_rate_raises_value_error_before_loading() -> None:
    stt = FasterWhisperSTT()
    with pytest.raises(ValueError, match="accepts 16000 Hz audio, got 8000 Hz"):
        async for _ in stt.transcribe(_one_chunk(b"\0\0"), sample_rate_hz=8000):
            pass


async def test_odd_byte_count_raises_value_error() -> None:
    stt = FasterWhisperSTT()
    with pytest.raises(ValueError, match="even number of bytes, got 3"):
        async for _ in stt.transcribe(_one_chunk(b"\0\0\0"), sample_rate_hz=16000):
            pass


async def test_unloadable_model_is_a_permanent_provider_error(tmp_path: Path) -> None:
    pytest.importorskip("faster_whisper")
    stt = FasterWhisperSTT(str(tmp_path), name="local-whisper")
    with pytest.raises(ProviderError, match="local-whisper: cannot load model") as caught:
        async for _ in stt.transcribe(_one_chunk(bytes(3200)), sample_rate_hz=16000):
            pass
    assert caught.value.error_class is ErrorClass.PERMANENT
    assert caught.value.provider == "local-whisper"


@pytest.mark.slow
async def test_whisper_passes_the_stt_conformance_kit(whisper_stt: FasterWhisperSTT) -> None:
    (sample,) = _corpus(lambda: asterisk_prompts(["all-circuits-busy-now"]))
    await check_stt(
        lambda: whisper_stt,
        audio_pcm=read_pcm(sample, 16000),
        sample_rate_hz=16000,
        expected_words=["circuits", "busy"],
    )


@pytest.mark.slow
async def test_final_transcript_has_confidence_and_usage(
    whisper_stt: FasterWhisperSTT, transcribe_pcm
) -> None:
    (sample,) = _corpus(lambda: asterisk_prompts(["transfer"]))
    pcm = read_pcm(sample, 16000)
    transcript = await transcribe_pcm(whisper_stt, pcm, 16000)
    assert transcript.is_final
    assert transcript.confidence is not None and 0.5 < transcript.confidence <= 1.0
    assert transcript.usage is not None
    assert transcript.usage.audio_s == pytest.approx(len(pcm) / 32000)
    assert transcript.usage.model == "tiny.en"


@pytest.mark.slow
async def test_wer_on_asterisk_telephone_prompts(
    whisper_stt: FasterWhisperSTT, transcribe_pcm
) -> None:
    samples = _corpus(lambda: asterisk_prompts(ASTERISK_NAMES))
    assert await _corpus_wer(whisper_stt, samples, transcribe_pcm) <= MAX_ASTERISK_WER


@pytest.mark.slow
async def test_wer_on_pocketsphinx_clips(whisper_stt: FasterWhisperSTT, transcribe_pcm) -> None:
    samples = _corpus(pocketsphinx_clips)
    assert len(samples) == 10
    assert await _corpus_wer(whisper_stt, samples, transcribe_pcm) <= MAX_POCKETSPHINX_WER
