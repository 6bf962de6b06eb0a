"""Conformance kits for provider implementations, in the manner of ``trio.testing``.

Any :class:`~voicerail.providers.base.SpeechToText` or
:class:`~voicerail.providers.base.TextToSpeech` (embedded engine, cloud adapter,
router, fake) can be checked against the interface contract written in
``voicerail/providers/base.py``::

    async def test_my_tts_conforms():
        await check_tts(lambda: MyTTS(...))

A broken contract raises :class:`AssertionError` naming the provider, the check and
the values seen. The kits use real audio and real time: run them against real
engines in slow tests, and against fakes in fast ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from voicerail.providers.base import (
    SpeechToText,
    STTCapabilities,
    TextToSpeech,
    Transcript,
    TTSCapabilities,
    TTSChunk,
    Usage,
)
from voicerail.testing.speech_corpus import normalize_text

DEFAULT_TTS_TEXT = "Thanks for calling. Your appointment is confirmed for Tuesday at three."
_LONG_TTS_TEXT = " ".join(
    f"This is sentence number {n} of a long answer that the caller interrupts." for n in range(8)
)
_FRAME_S = 0.02  # audio is fed in 20 ms frames, as a telephony stream delivers it
_AUDIO_S_TOLERANCE = 0.1  # seconds of slack between reported and actual audio length
_MIN_PEAK = 1000  # int16 peak below which synthesized audio counts as silent (-30 dBFS)
_UNUSUAL_RATES_HZ = (7919, 8000, 16000, 22050, 24000, 44100, 48000)


def _require(condition: bool, message: str) -> None:
    # Not ``assert``: these checks must also run under ``python -O``.
    if not condition:
        raise AssertionError(message)


async def _within(awaitable: Any, timeout_s: float, what: str) -> Any:
    try:
        async with asyncio.timeout(timeout_s):
            return await awaitable
    except TimeoutError:
        raise AssertionError(f"{what} did not finish within {timeout_s} s") from None


async def _frames(pcm: bytes, sample_rate_hz: int) -> AsyncIterator[bytes]:
    num_bytes = 2 * round(sample_rate_hz * _FRAME_S)
    for offset in range(0, len(pcm), num_bytes):
        yield pcm[offset : offset + num_bytes]
        await asyncio.sleep(0)


async def _collect(iterator: AsyncIterator[Any], label: str) -> list[Any]:
    _require(
        hasattr(iterator, "__anext__"),
        f"{label} must return an async iterator, got {type(iterator).__name__}",
    )
    return [item async for item in iterator]


# --- speech-to-text ---------------------------------------------------------------


async def check_stt(
    factory: Callable[[], SpeechToText],
    *,
    audio_pcm: bytes,
    sample_rate_hz: int,
    expected_words: Sequence[str],
    timeout_s: float = 60.0,
) -> None:
    """Check that a speech-to-text provider keeps the interface contract.

    Checks: the protocol's attributes; a final transcript that holds the expected
    words and carries ``usage`` matching the audio sent; partials only when
    declared, and never after the final; confidence within 0..1; ValueError for an
    unsupported sample rate; cancellation while audio is still arriving neither
    hangs nor is swallowed, and stops the provider reading the audio; the provider
    still works afterwards; an utterance of silence yields one empty final transcript.

    Args:
        factory: returns the provider to check; called once.
        audio_pcm: one utterance, s16le mono PCM at ``sample_rate_hz``.
        sample_rate_hz: rate of ``audio_pcm``; must be one the provider declares.
        expected_words: words that must appear in the final transcript (compared
            after :func:`~voicerail.testing.speech_corpus.normalize_text`).
        timeout_s: longest wait for any one request.

    Raises:
        AssertionError: the provider broke the contract; the message says how.
    """
    stt = factory()
    label = f"check_stt: {getattr(stt, 'name', type(stt).__name__)}"
    _check_stt_attributes(stt, label, sample_rate_hz)
    transcripts = await _within(
        _collect(
            stt.transcribe(_frames(audio_pcm, sample_rate_hz), sample_rate_hz=sample_rate_hz), label
        ),
        timeout_s,
        f"{label}: transcribe",
    )
    final = _check_transcripts(stt, transcripts, label)
    _check_stt_usage(stt, final, len(audio_pcm) / 2 / sample_rate_hz, label)
    heard = set(normalize_text(final.text).split())
    missing = [w for w in expected_words if normalize_text(w) not in heard]
    _require(not missing, f"{label}: final transcript {final.text!r} lacks words {missing}")
    await _check_stt_bad_rate(stt, label, timeout_s)
    await _check_stt_cancellation(stt, sample_rate_hz, label, timeout_s)
    silence = bytes(2 * sample_rate_hz)  # one second
    transcripts = await _within(
        _collect(
            stt.transcribe(_frames(silence, sample_rate_hz), sample_rate_hz=sample_rate_hz), label
        ),
        timeout_s,
        f"{label}: transcribe after a cancellation",
    )
    final = _check_transcripts(stt, transcripts, label)
    _require(final.text.strip() == "", f"{label}: silence transcribed as {final.text!r}")


def _check_stt_attributes(stt: SpeechToText, label: str, sample_rate_hz: int) -> None:
    _require(isinstance(stt, SpeechToText), f"{label}: does not implement SpeechToText")
    _require(isinstance(stt.name, str) and stt.name != "", f"{label}: name must be a non-empty str")
    _require(
        isinstance(stt.model, str) and stt.model != "", f"{label}: model must be a non-empty str"
    )
    _require(
        isinstance(stt.capabilities, STTCapabilities),
        f"{label}: capabilities must be STTCapabilities, got {type(stt.capabilities).__name__}",
    )
    _require(
        sample_rate_hz in stt.capabilities.sample_rates_hz,
        f"{label}: test audio is {sample_rate_hz} Hz, provider accepts "
        f"{stt.capabilities.sample_rates_hz}",
    )


def _check_transcripts(stt: SpeechToText, transcripts: list[Any], label: str) -> Transcript:
    """Check order and shape of one request's transcripts; return the last final."""
    _require(len(transcripts) > 0, f"{label}: transcribe yielded nothing")
    for index, item in enumerate(transcripts):
        _require(
            isinstance(item, Transcript),
            f"{label}: item {index} is {type(item).__name__}, not Transcript",
        )
        if item.confidence is not None:
            _require(
                0.0 <= item.confidence <= 1.0,
                f"{label}: transcript {index} confidence {item.confidence} is outside 0..1",
            )
    partials = [t for t in transcripts if not t.is_final]
    _require(
        stt.capabilities.partials or not partials,
        f"{label}: {len(partials)} partial transcripts, but capabilities.partials is False",
    )
    last = transcripts[-1]
    _require(last.is_final, f"{label}: the last transcript is not final: {last!r}")
    return last


def _check_stt_usage(stt: SpeechToText, final: Transcript, audio_s: float, label: str) -> None:
    usage = final.usage
    _require(isinstance(usage, Usage), f"{label}: the last final transcript has no usage")
    assert usage is not None  # for the type checker; checked just above
    _require(usage.provider == stt.name, f"{label}: usage.provider {usage.provider!r} != name")
    _require(
        abs(usage.audio_s - audio_s) <= _AUDIO_S_TOLERANCE + 0.05 * audio_s,
        f"{label}: usage.audio_s is {usage.audio_s:.3f}, {audio_s:.3f} s of audio were sent",
    )


async def _check_stt_bad_rate(stt: SpeechToText, label: str, timeout_s: float) -> None:
    bad_rate_hz = next(r for r in _UNUSUAL_RATES_HZ if r not in stt.capabilities.sample_rates_hz)
    audio = _frames(bytes(2 * bad_rate_hz // 10), bad_rate_hz)
    try:
        await _within(
            _collect(stt.transcribe(audio, sample_rate_hz=bad_rate_hz), label),
            timeout_s,
            f"{label}: transcribe at {bad_rate_hz} Hz",
        )
    except ValueError:
        return
    raise AssertionError(
        f"{label}: transcribe at unsupported {bad_rate_hz} Hz did not raise ValueError"
    )


async def _check_stt_cancellation(
    stt: SpeechToText, sample_rate_hz: int, label: str, timeout_s: float
) -> None:
    """Cancel a request whose audio never ends; it must stop reading and re-raise."""
    started = asyncio.Event()
    closed = asyncio.Event()

    async def endless_audio() -> AsyncIterator[bytes]:
        try:
            while True:
                yield bytes(2 * round(sample_rate_hz * _FRAME_S))
                started.set()
                await asyncio.sleep(_FRAME_S)
        finally:
            closed.set()

    async def consume() -> None:
        async for _ in stt.transcribe(endless_audio(), sample_rate_hz=sample_rate_hz):
            pass

    task = asyncio.create_task(consume())
    await _within(started.wait(), timeout_s, f"{label}: reading the first audio frame")
    await _require_cancelled(task, label, timeout_s)
    await _within(closed.wait(), timeout_s, f"{label}: closing the audio after cancellation")


# --- text-to-speech ---------------------------------------------------------------


async def check_tts(
    factory: Callable[[], TextToSpeech], *, text: str = DEFAULT_TTS_TEXT, timeout_s: float = 60.0
) -> None:
    """Check that a text-to-speech provider keeps the interface contract.

    Checks: the protocol's attributes; chunks of even-length s16le PCM at the
    declared rate, audible and not empty in total; the last chunk, and only it,
    carries ``usage`` (matching the audio and the provider's name) and ``text``;
    ``aclose()`` and task cancellation mid-stream return promptly and the
    cancellation is re-raised; two concurrent requests both complete; the
    provider still works after the cancellations.

    Args:
        factory: returns the provider to check; called once.
        text: what to synthesize in the main check.
        timeout_s: longest wait for any one request.

    Raises:
        AssertionError: the provider broke the contract; the message says how.
    """
    tts = factory()
    label = f"check_tts: {getattr(tts, 'name', type(tts).__name__)}"
    _check_tts_attributes(tts, label)
    chunks = await _within(_collect(tts.synthesize(text), label), timeout_s, f"{label}: synthesize")
    _check_tts_chunks(tts, chunks, text, label)
    await _check_tts_aclose(tts, label, timeout_s)
    await _check_tts_cancellation(tts, label, timeout_s)
    texts = ("Good morning.", "Please hold while I check.")
    results = await _within(
        asyncio.gather(*(_collect(tts.synthesize(t), label) for t in texts)),
        timeout_s,
        f"{label}: two concurrent requests",
    )
    for request_text, request_chunks in zip(texts, results, strict=True):
        _check_tts_chunks(tts, request_chunks, request_text, f"{label} (concurrent)")


def _check_tts_attributes(tts: TextToSpeech, label: str) -> None:
    _require(isinstance(tts, TextToSpeech), f"{label}: does not implement TextToSpeech")
    _require(isinstance(tts.name, str) and tts.name != "", f"{label}: name must be a non-empty str")
    _require(
        isinstance(tts.model, str) and tts.model != "", f"{label}: model must be a non-empty str"
    )
    _require(
        isinstance(tts.capabilities, TTSCapabilities),
        f"{label}: capabilities must be TTSCapabilities, got {type(tts.capabilities).__name__}",
    )
    _require(
        tts.capabilities.sample_rate_hz > 0,
        f"{label}: capabilities.sample_rate_hz is {tts.capabilities.sample_rate_hz}",
    )


def _check_tts_chunks(tts: TextToSpeech, chunks: list[Any], text: str, label: str) -> None:
    rate_hz = tts.capabilities.sample_rate_hz
    _require(len(chunks) > 0, f"{label}: synthesize({text!r}) yielded nothing")
    for index, chunk in enumerate(chunks):
        _require(isinstance(chunk, TTSChunk), f"{label}: item {index} is {type(chunk).__name__}")
        _require(
            chunk.sample_rate_hz == rate_hz,
            f"{label}: chunk {index} is {chunk.sample_rate_hz} Hz, capabilities say {rate_hz} Hz",
        )
        _require(
            isinstance(chunk.pcm, bytes) and len(chunk.pcm) % 2 == 0,
            f"{label}: chunk {index} pcm is not whole s16le samples ({len(chunk.pcm)} bytes)",
        )
        _require(
            chunk.usage is None or index == len(chunks) - 1,
            f"{label}: chunk {index} of {len(chunks)} carries usage; only the last may",
        )
    pcm = b"".join(chunk.pcm for chunk in chunks)
    audio_s = len(pcm) / 2 / rate_hz
    _require(audio_s >= 0.2, f"{label}: {audio_s:.3f} s of audio for {text!r}")
    peak = max(abs(s) for s in memoryview(pcm).cast("h")) if pcm else 0
    _require(peak >= _MIN_PEAK, f"{label}: audio is silent (peak {peak}); is it s16le?")
    last = chunks[-1]
    _require(last.text == text, f"{label}: last chunk text is {last.text!r}, expected {text!r}")
    usage = last.usage
    _require(isinstance(usage, Usage), f"{label}: the last chunk has no usage")
    assert usage is not None  # for the type checker; checked just above
    _require(usage.provider == tts.name, f"{label}: usage.provider {usage.provider!r} != name")
    _require(usage.characters > 0, f"{label}: usage.characters is {usage.characters}")
    _require(
        abs(usage.audio_s - audio_s) <= 0.01,
        f"{label}: usage.audio_s is {usage.audio_s:.3f}, chunks hold {audio_s:.3f} s",
    )


async def _check_tts_aclose(tts: TextToSpeech, label: str, timeout_s: float) -> None:
    stream = tts.synthesize(_LONG_TTS_TEXT)
    first = await _within(anext(stream), timeout_s, f"{label}: first chunk of a long text")
    _require(isinstance(first, TTSChunk), f"{label}: first item is {type(first).__name__}")
    aclose = getattr(stream, "aclose", None)
    if aclose is None:
        raise AssertionError(f"{label}: the synthesize iterator has no aclose()")
    await _within(aclose(), timeout_s, f"{label}: aclose() mid-stream")


async def _check_tts_cancellation(tts: TextToSpeech, label: str, timeout_s: float) -> None:
    first_chunk = asyncio.Event()

    async def consume() -> None:
        async for _ in tts.synthesize(_LONG_TTS_TEXT):
            first_chunk.set()

    task = asyncio.create_task(consume())
    await _within(first_chunk.wait(), timeout_s, f"{label}: first chunk before cancellation")
    await _require_cancelled(task, label, timeout_s)


async def _require_cancelled(task: asyncio.Task[None], label: str, timeout_s: float) -> None:
    """Cancel ``task``; it must end promptly by raising CancelledError."""
    if not task.cancel():
        return  # it had already finished everything: nothing left to cancel
    try:
        await _within(asyncio.shield(task), timeout_s, f"{label}: cancellation")
    except asyncio.CancelledError:
        return
    raise AssertionError(f"{label}: a cancellation was swallowed, not re-raised")
