"""Text-to-speech validation: is the agent saying what it means, at a pace callers follow?

Three checks, combined by :class:`TTSValidator`:

* the pronunciation lexicon (:mod:`voicerail.providers.lexicon`) rewrites branded
  terms before synthesis;
* :class:`PacingCheck`: words per minute of the synthesized speech, leading and
  trailing silence excluded, within a tolerance;
* :class:`RoundTripCheck`: a sample of sentences is transcribed back with a
  speech-to-text provider (the embedded Whisper in practice) and the words that
  came back different are reported (:mod:`voicerail.providers.word_alignment`).

:class:`ValidatingTTS` wraps any :class:`~voicerail.providers.base.TextToSpeech`:
it applies the lexicon and validates each finished sentence in a background task,
so validation never delays the audio.

Rules kept here:

1. The round trip compares what was heard with the text as the dialog wrote it,
   never with the lexicon's respelling: a respelling is right when it comes back
   as the term.
2. Sentences holding a lexicon term are always round-tripped; others one in
   ``sample_every``.
3. Text and what was heard are personal data: they go only in ``Event.pii``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from voicerail.clock import Clock
from voicerail.errors import ProviderError
from voicerail.events.model import Event, EventKind, Stage
from voicerail.providers.base import SpeechToText, TextToSpeech, TTSChunk
from voicerail.providers.lexicon import PronunciationLexicon
from voicerail.providers.word_alignment import WordMismatch, align_words, normalize_words

logger = logging.getLogger(__name__)

_FRAME_S = 0.01  # silence is trimmed in 10 ms frames
_INT16_FULL_SCALE = 32768.0


def pacing_wpm(text: str, num_samples: int, sample_rate_hz: int) -> float:
    """Speaking rate of ``text`` spoken in ``num_samples`` samples, in words per minute.

    Words are counted after normalization, so "3:30" counts as two ("three
    thirty"), as it is spoken.

    Args:
        text: the text that was synthesized.
        num_samples: how many samples the speech lasts.
        sample_rate_hz: the audio's rate.

    Raises:
        ValueError: ``num_samples`` or ``sample_rate_hz`` is not positive.
    """
    if num_samples <= 0 or sample_rate_hz <= 0:
        raise ValueError(
            f"num_samples and sample_rate_hz must be positive, got {num_samples} and "
            f"{sample_rate_hz}"
        )
    return len(normalize_words(text)) * 60.0 * sample_rate_hz / num_samples


def speech_num_samples(pcm: bytes, sample_rate_hz: int, *, threshold_dbfs: float = -40.0) -> int:
    """Samples from the first to the last 10 ms frame louder than ``threshold_dbfs``.

    Args:
        pcm: s16le mono PCM at ``sample_rate_hz``.
        sample_rate_hz: the audio's rate.
        threshold_dbfs: RMS level (dB relative to full scale) below which a frame
            is silence.

    Returns:
        0 when no frame is louder.
    """
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    frame = max(1, int(sample_rate_hz * _FRAME_S))
    num_frames = samples.size // frame
    if num_frames == 0:
        return 0
    frames = samples[: num_frames * frame].astype(np.float64).reshape(num_frames, frame)
    rms = np.sqrt(np.mean(frames**2, axis=1)) / _INT16_FULL_SCALE
    loud = np.flatnonzero(rms > 10 ** (threshold_dbfs / 20))
    if loud.size == 0:
        return 0
    return int(loud[-1] - loud[0] + 1) * frame


@dataclass(frozen=True)
class PacingCheck:
    """Speaking rate tolerance.

    Words per minute depend on the words: short function words ("thank you for
    calling") run faster than the 150 wpm often quoted for conversation. Measured
    here on four clinic sentences of 11-13 words: piper ``en_US-joe-medium``
    224-289 wpm (mean 250), espeak-ng at its 175 wpm setting 202-235 (mean 226).
    The default tolerance catches a voice at double or half speed, not taste.

    Attributes:
        min_wpm: slowest acceptable rate.
        max_wpm: fastest acceptable rate.
        threshold_dbfs: level below which leading and trailing audio is silence.
    """

    min_wpm: float = 120.0
    max_wpm: float = 320.0
    threshold_dbfs: float = -40.0

    def measure(self, text: str, pcm: bytes, sample_rate_hz: int) -> float | None:
        """Words per minute of the speech in ``pcm``; None when it has no speech.

        Args:
            text: the text that was synthesized.
            pcm: s16le mono PCM at ``sample_rate_hz``.
            sample_rate_hz: the audio's rate.
        """
        num_samples = speech_num_samples(pcm, sample_rate_hz, threshold_dbfs=self.threshold_dbfs)
        return pacing_wpm(text, num_samples, sample_rate_hz) if num_samples else None

    def accepts(self, wpm: float) -> bool:
        """True when ``wpm`` is within the tolerance."""
        return self.min_wpm <= wpm <= self.max_wpm


@dataclass(frozen=True)
class RoundTripResult:
    """What a speech-to-text provider heard in synthesized speech.

    Attributes:
        heard: the transcript.
        wrong_words: the differences from the text, in order.
        word_error_rate: edited words over the text's words (normalized).
    """

    heard: str
    wrong_words: tuple[WordMismatch, ...]
    word_error_rate: float


class RoundTripCheck:
    """Transcribe synthesized speech and compare it with its text.

    Args:
        stt: the recognizer; the embedded Whisper (``FasterWhisperSTT``) in practice.
        sample_rate_hz: the rate the audio is resampled to for ``stt``; one of
            ``stt.capabilities.sample_rates_hz``.
        sample_every: :meth:`due` is true for one request in this many.
        chunk_s: the audio is handed to ``stt`` in chunks this long.

    Raises:
        ValueError: ``sample_rate_hz`` is not accepted by ``stt``, or
            ``sample_every`` is not positive.
    """

    def __init__(
        self,
        stt: SpeechToText,
        *,
        sample_rate_hz: int = 16000,
        sample_every: int = 1,
        chunk_s: float = 0.1,
    ) -> None:
        if sample_rate_hz not in stt.capabilities.sample_rates_hz:
            raise ValueError(
                f"{stt.name} accepts {stt.capabilities.sample_rates_hz} Hz, got {sample_rate_hz}"
            )
        if sample_every < 1:
            raise ValueError(f"sample_every must be positive, got {sample_every}")
        self.stt = stt
        self.sample_rate_hz = sample_rate_hz
        self.sample_every = sample_every
        self._chunk_num_bytes = 2 * max(1, int(sample_rate_hz * chunk_s))
        self._num_seen = 0

    def due(self) -> bool:
        """Count one request; true for the first and every ``sample_every``-th after."""
        due = self._num_seen % self.sample_every == 0
        self._num_seen += 1
        return due

    async def check(self, text: str, pcm: bytes, sample_rate_hz: int) -> RoundTripResult:
        """Transcribe ``pcm`` and align the transcript with ``text``.

        Args:
            text: what was meant to be said.
            pcm: s16le mono PCM at ``sample_rate_hz``.
            sample_rate_hz: the audio's rate; resampled when ``stt`` needs another.

        Raises:
            ProviderError: ``stt`` failed.
        """
        audio = _resampled(pcm, sample_rate_hz, self.sample_rate_hz)
        step = self._chunk_num_bytes

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(audio), step):
                yield audio[start : start + step]

        heard = ""
        async for transcript in self.stt.transcribe(chunks(), sample_rate_hz=self.sample_rate_hz):
            if transcript.is_final:
                heard = transcript.text
        expected = normalize_words(text)
        wrong = align_words(expected, normalize_words(heard))
        num_edited = sum(max(len(m.expected.split()), len(m.heard.split())) for m in wrong)
        return RoundTripResult(
            heard=heard,
            wrong_words=tuple(wrong),
            word_error_rate=num_edited / max(1, len(expected)),
        )


def _resampled(pcm: bytes, from_hz: int, to_hz: int) -> bytes:
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
    if from_hz == to_hz or samples.size == 0:
        return samples.tobytes()
    import soxr

    return np.asarray(soxr.resample(samples, from_hz, to_hz), dtype="<i2").tobytes()


@dataclass(frozen=True)
class ValidationResult:
    """The verdict on one synthesized sentence.

    Attributes:
        provider: the text-to-speech provider's configured name.
        model: its model, when known.
        ok: False when the pacing is out of tolerance or words came back wrong.
        text: the text as the dialog wrote it (personal data).
        audio_s: length of the audio, seconds.
        wpm: words per minute of the speech; None without speech or pacing check.
        pacing_ok: whether ``wpm`` is within tolerance; None when not measured.
        lexicon_terms: lexicon terms in the text (configuration, safe to log).
        round_trip_checked: True when the audio was transcribed back.
        heard: the transcript, when round-tripped (personal data).
        wrong_words: the words that came back different (personal data).
        word_error_rate: of the round trip, when round-tripped.
        round_trip_error: the ``error_class`` of a failed round trip.
    """

    provider: str
    model: str | None
    ok: bool
    text: str
    audio_s: float
    wpm: float | None = None
    pacing_ok: bool | None = None
    lexicon_terms: tuple[str, ...] = ()
    round_trip_checked: bool = False
    heard: str | None = None
    wrong_words: tuple[WordMismatch, ...] = ()
    word_error_rate: float | None = None
    round_trip_error: str | None = None


class TTSValidator:
    """The lexicon, pacing and round-trip checks, applied to one sentence at a time.

    Args:
        lexicon: pronunciation lexicon; also decides which sentences are always
            round-tripped (rule 2).
        pacing: speaking rate tolerance; None skips it.
        round_trip: speech recognition round trip; None skips it.
    """

    def __init__(
        self,
        *,
        lexicon: PronunciationLexicon | None = None,
        pacing: PacingCheck | None = None,
        round_trip: RoundTripCheck | None = None,
    ) -> None:
        self.lexicon = lexicon
        self.pacing = pacing
        self.round_trip = round_trip

    def apply_lexicon(self, text: str, provider_name: str) -> str:
        """``text`` with the lexicon's replacements for ``provider_name``."""
        return self.lexicon.apply(text, provider_name) if self.lexicon else text

    async def check(
        self,
        provider_name: str,
        text: str,
        pcm: bytes,
        sample_rate_hz: int,
        *,
        model: str | None = None,
        round_trip: bool | None = None,
    ) -> ValidationResult:
        """Validate one synthesized sentence.

        A failing round-trip recognizer does not fail the check: its
        ``error_class`` is reported in ``round_trip_error``.

        Args:
            provider_name: the text-to-speech provider that spoke it.
            text: the text as the dialog wrote it, before the lexicon.
            pcm: the whole synthesized audio, s16le mono PCM at ``sample_rate_hz``.
            sample_rate_hz: the audio's rate.
            model: the provider's model, for the report.
            round_trip: force (True) or skip (False) the round trip; None decides
                by rule 2.
        """
        terms = tuple(dict.fromkeys(self.lexicon.find_terms(text))) if self.lexicon else ()
        wpm = self.pacing.measure(text, pcm, sample_rate_hz) if self.pacing else None
        pacing_ok = None
        if self.pacing is not None:
            pacing_ok = wpm is not None and self.pacing.accepts(wpm)
        result = ValidationResult(
            provider=provider_name,
            model=model,
            ok=pacing_ok is not False,
            text=text,
            audio_s=len(pcm) // 2 / sample_rate_hz,
            wpm=wpm,
            pacing_ok=pacing_ok,
            lexicon_terms=terms,
        )
        if self.round_trip is None or round_trip is False:
            return result
        if round_trip is None and not terms and not self.round_trip.due():
            return result
        try:
            heard = await self.round_trip.check(text, pcm, sample_rate_hz)
        except ProviderError as error:
            return replace(result, round_trip_error=str(error.error_class))
        return replace(
            result,
            ok=result.ok and not heard.wrong_words,
            round_trip_checked=True,
            heard=heard.heard,
            wrong_words=heard.wrong_words,
            word_error_rate=heard.word_error_rate,
        )


def event_fields(result: ValidationResult) -> dict[str, Any]:
    """The :class:`~voicerail.events.model.Event` fields describing ``result``.

    Everything but ``call_id``, ``kind`` and the times, for the caller to build
    an event of the kind it records validations as (suggested: ``TTSValidated``).
    """
    data: dict[str, Any] = {
        "ok": result.ok,
        "audio_s": result.audio_s,
        "wpm": result.wpm,
        "pacing_ok": result.pacing_ok,
        "lexicon_terms": list(result.lexicon_terms),
        "round_trip_checked": result.round_trip_checked,
        "num_wrong_words": len(result.wrong_words),
        "word_error_rate": result.word_error_rate,
    }
    pii: dict[str, Any] = {"text": result.text}
    if result.round_trip_checked:
        pii["heard"] = result.heard
        pii["wrong_words"] = [
            {"expected": m.expected, "heard": m.heard, "position": m.position}
            for m in result.wrong_words
        ]
    return {
        "stage": Stage.TTS,
        "provider": result.provider,
        "model": result.model,
        "outcome": "ok" if result.ok else "error",
        "error_class": result.round_trip_error,
        "data": data,
        "pii": pii,
    }


def to_event(call_id: str, result: ValidationResult, clock: Clock, *, kind: EventKind) -> Event:
    """An event recording ``result`` for call ``call_id``, timestamped by ``clock``.

    Args:
        call_id: the call the sentence was spoken in.
        result: the validation.
        clock: the driver's clock.
        kind: the event kind validations are recorded as.
    """
    return Event(
        call_id=call_id,
        kind=kind,
        at_wall=clock.wall(),
        at_mono=clock.monotonic(),
        **event_fields(result),
    )


class ValidatingTTS:
    """A :class:`TextToSpeech` that applies the lexicon and validates what it spoke.

    Each request's text goes through the lexicon for the inner provider's name;
    its chunks are passed on as they come (the last one carries the original
    text); once the last chunk is out, the sentence is validated in a background
    task whose result goes to ``on_result``. A request the consumer stops early
    (barge-in) is not validated.

    Args:
        inner: the provider that synthesizes.
        validator: the checks.
        on_result: called with each :class:`ValidationResult`, on the event loop.
        max_pending: validations allowed to run at once; sentences finishing
            while that many run are not validated (counted in ``num_skipped``),
            so a slow recognizer cannot pile up work on a busy machine.

    Raises:
        ValueError: ``max_pending`` is not positive.
    """

    def __init__(
        self,
        inner: TextToSpeech,
        validator: TTSValidator,
        on_result: Callable[[ValidationResult], None],
        *,
        max_pending: int = 2,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be positive, got {max_pending}")
        self.name = inner.name
        self.model = inner.model
        self.capabilities = inner.capabilities
        self.num_skipped = 0
        self._inner = inner
        self._validator = validator
        self._on_result = on_result
        self._max_pending = max_pending
        self._tasks: set[asyncio.Task[None]] = set()

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        """Synthesize the lexicon's version of ``text`` with the inner provider.

        Yields:
            The inner provider's chunks; the last carries ``text`` as given.

        Raises:
            ProviderError: the inner provider failed.
        """
        spoken = self._validator.apply_lexicon(text, self.name)
        pcm = bytearray()
        sample_rate_hz = self.capabilities.sample_rate_hz
        async for chunk in self._inner.synthesize(spoken):
            pcm += chunk.pcm
            sample_rate_hz = chunk.sample_rate_hz
            if chunk.usage is not None:
                # The last chunk: validate from here, so a consumer that stops
                # right after it still gets the sentence validated.
                self._start_validation(text, bytes(pcm), sample_rate_hz)
                if chunk.text == spoken:
                    chunk = replace(chunk, text=text)
            yield chunk

    async def drain(self) -> None:
        """Wait until the validations started so far have reported."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel the running validations and wait for them to stop."""
        for task in self._tasks:
            task.cancel()
        await self.drain()

    def _start_validation(self, text: str, pcm: bytes, sample_rate_hz: int) -> None:
        if len(self._tasks) >= self._max_pending:
            self.num_skipped += 1
            return
        task = asyncio.create_task(self._validate(text, pcm, sample_rate_hz))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _validate(self, text: str, pcm: bytes, sample_rate_hz: int) -> None:
        try:
            result = await self._validator.check(
                self.name, text, pcm, sample_rate_hz, model=self.model
            )
            self._on_result(result)
        except Exception:  # task boundary: the audio already went out; drop this check
            logger.exception("tts validation failed; sentence not validated (%s)", self.name)
