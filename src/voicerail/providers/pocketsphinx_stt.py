"""pocketsphinx speech-to-text, embedded: a streaming fallback recognizer.

Implements :class:`voicerail.providers.base.SpeechToText` on pocketsphinx 5.1
(https://github.com/cmusphinx/pocketsphinx, ``cython/_pocketsphinx.pyx``) with the
US English model that ships inside its wheel (``pocketsphinx.get_model_path()``):
a continuous acoustic model, a trigram language model and CMUdict. It is weaker
than Whisper, but it decodes as the audio arrives, on a fraction of one core.

Rules kept here:

1. One :class:`pocketsphinx.Decoder` serves one utterance at a time: ``start_utt``,
   ``process_raw`` per chunk, ``end_utt``. Decoders are pooled, because creating
   one loads its own copy of the model (measured here: 0.4-0.6 s and about 95 MB
   each); ``max_decoders`` caps the utterances decoding at once, and a request
   beyond the cap fails at once (``TRANSIENT``) so that routing can fail over
   instead of queueing the caller. (A decoder being reset after its utterance
   ended does not count, so for a moment one more may exist.)
2. Every call into a decoder runs in this provider's worker threads and holds that
   utterance's lock, so a chunk still decoding when the consumer goes away
   finishes before the decoder is reset and pooled again.
3. A decoder that raised is dropped, never pooled.
4. Confidence is the mean posterior probability of the words of the final
   hypothesis (``Decoder.seg()``, ``Segment.prob``, computed by the best-path
   pass; None when ``bestpath`` is turned off); the posterior of the whole
   sentence (``Hypothesis.prob``) shrinks with its length and is not used.

Measured here in 20 ms chunks (``tests/providers/test_pocketsphinx.py``): word
error rate 0.22-0.24 on the 16 kHz LibriVox and card clips of
``pocketsphinx-testdata`` and 0.53-0.62 on twelve asterisk telephone prompts
resampled from 8 kHz (0.76 on all 563 of them, with pocketsphinx's default passes;
Whisper tiny.en: about 0.04); real-time factor about 0.45 on a busy 2-core
machine; the final transcript 60-100 ms after the audio ends.

A decoder adapts its cepstral mean and noise estimates over the utterances it
decodes (pocketsphinx's live normalization), so a fresh decoder's first
utterance is its worst, and results depend on what a decoder heard before: with
the default passes, carried-over decoders scored 0.45-0.58 on the telephone
prompts, decoders whose normalization was reset before each utterance 0.9.
Pooled decoders are therefore reused most-recent first and never reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from voicerail.errors import ConfigError, ErrorClass, ProviderError
from voicerail.providers.base import STTCapabilities, Transcript, Usage

# pocketsphinx is imported where it is used: it is an optional extra ("speech").
if TYPE_CHECKING:
    from pocketsphinx import Decoder

SAMPLE_RATE_HZ = 16000  # the shipped acoustic model's rate
_BYTES_PER_SAMPLE = 2
# The files of a model directory laid out as the one in the pocketsphinx wheel.
_HMM_DIR = "en-us"
_LM_FILE = "en-us.lm.bin"
_DICT_FILE = "cmudict-en-us.dict"

T = TypeVar("T")


class PocketsphinxSTT:
    """Streaming speech-to-text with pocketsphinx: partials as the audio arrives.

    Args:
        name: configured provider name, used in events, usage and errors.
        model_dir: a directory laid out as pocketsphinx's own ``model/en-us``
            (acoustic model directory ``en-us/``, ``en-us.lm.bin``,
            ``cmudict-en-us.dict``); ``None`` uses the model in the wheel.
        decoder_options: extra ``pocketsphinx.Decoder`` keyword arguments (for
            example ``hmm``, ``lm``, ``dict`` paths, or ``beam``), applied last.
        max_decoders: the most utterances decoded at once (each decoder holds
            about 95 MB).
        max_idle_decoders: decoders kept loaded between utterances.
        num_threads: worker threads shared by all utterances of this instance.

    Raises:
        ConfigError: ``model_dir`` lacks one of the model files.
        ValueError: a count is not positive.
    """

    def __init__(
        self,
        *,
        name: str = "pocketsphinx",
        model_dir: str | Path | None = None,
        decoder_options: Mapping[str, Any] | None = None,
        max_decoders: int = 4,
        max_idle_decoders: int = 2,
        num_threads: int = 2,
    ) -> None:
        if min(max_decoders, max_idle_decoders, num_threads) < 1:
            raise ValueError(
                f"counts must be positive, got max_decoders={max_decoders}, "
                f"max_idle_decoders={max_idle_decoders}, num_threads={num_threads}"
            )
        self.name = name
        # quality rank for routing rule 8 (far below whisper on phone audio)
        self.quality = 0.4
        self.model = "en-us" if model_dir is None else Path(model_dir).name
        self.capabilities = STTCapabilities(
            sample_rates_hz=(SAMPLE_RATE_HZ,), streaming=True, partials=True, languages=("en",)
        )
        if model_dir is not None:
            _check_model_dir(Path(model_dir))
        self._model_dir = None if model_dir is None else Path(model_dir)
        self._decoder_options = dict(decoder_options or {})
        self._pool = _DecoderPool(self._new_decoder, max_decoders, max_idle_decoders, name)
        self._executor = ThreadPoolExecutor(num_threads, thread_name_prefix=name)
        self._version: str | None = None

    def preload(self, num_decoders: int = 1) -> None:
        """Create ``num_decoders`` idle decoders now (blocking, about 0.5 s each).

        Raises:
            ProviderError: the model failed to load (``PERMANENT``).
        """
        self._pool.prefill(num_decoders)

    def close(self) -> None:
        """Stop the worker threads and drop the idle decoders; requests after this fail."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._pool.clear()

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        """Transcribe one utterance, decoding each chunk as it arrives.

        Cancelling returns at once; a chunk already decoding finishes in its
        thread, then the decoder is reset and pooled.

        Args:
            audio: s16le mono PCM chunks at 16000 Hz; the iterable ends when the
                utterance ends. A chunk may split a sample.
            sample_rate_hz: must be 16000.
            language: BCP-47 code; its primary subtag must be ``en``.

        Yields:
            A partial transcript each time the hypothesis changes (``end_s`` is the
            audio decoded so far), then one final transcript with the whole
            utterance, a confidence (mean word posterior, ``None`` without words)
            and ``usage``.

        Raises:
            ValueError: ``sample_rate_hz`` is not 16000, ``language`` is not
                English, or the audio has an odd number of bytes.
            ProviderError: every decoder is busy (``TRANSIENT``), the model failed
                to load (``PERMANENT``) or decoding failed (``TRANSIENT``).
        """
        if sample_rate_hz not in self.capabilities.sample_rates_hz:
            raise ValueError(f"{self.name} accepts 16000 Hz audio, got {sample_rate_hz} Hz")
        if language.split("-")[0].lower() != "en":
            raise ValueError(f"{self.name} recognizes English only, got {language!r}")
        self._pool.reserve()
        utterance = _Utterance(self._pool, self.name)
        try:
            await self._run(utterance.start)
            async for chunk in audio:
                partial = await self._run(utterance.feed, chunk)
                if partial is not None:
                    yield Transcript(text=partial, is_final=False, end_s=utterance.audio_s)
            text, confidence = await self._run(utterance.finish)
            usage = Usage(
                provider=self.name,
                model=self.model,
                model_version=self._version,
                audio_s=utterance.audio_s,
            )
            yield Transcript(
                text=text,
                is_final=True,
                confidence=confidence,
                end_s=utterance.audio_s,
                usage=usage,
            )
        finally:
            # The slot is free at once, so the next utterance after a barge-in is not
            # refused; the decoder is reset and pooled in a thread, not awaited, as
            # this also runs when the generator is closed or garbage-collected.
            self._pool.release()
            with contextlib.suppress(RuntimeError):  # closed: the decoder is dropped
                self._executor.submit(self._pool.give_back, utterance)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        try:
            future = self._executor.submit(function, *args)
        except RuntimeError as error:  # the executor was shut down by close()
            raise ProviderError(
                "provider is closed", provider=self.name, error_class=ErrorClass.PERMANENT
            ) from error
        return await asyncio.wrap_future(future)

    def _new_decoder(self) -> Decoder:
        """Load a decoder (blocking); called by the pool."""
        import pocketsphinx

        self._version = self._version or _package_version()
        base = self._model_dir or Path(pocketsphinx.get_model_path()) / "en-us"
        options: dict[str, Any] = {
            "hmm": str(base / _HMM_DIR),
            "lm": str(base / _LM_FILE),
            "dict": str(base / _DICT_FILE),
            "samprate": SAMPLE_RATE_HZ,
            # No second, flat-lexicon pass at end_utt: it made the final arrive a
            # mean 200-330 ms after the audio ended instead of 60-100 ms, for a
            # word error rate no better overall (0.27 with it vs 0.22 without on
            # wideband clips, 0.58 vs 0.62 on telephone prompts). The best-path
            # pass stays: it gives the word posteriors.
            "fwdflat": False,
            "loglevel": "FATAL",
        }
        options.update(self._decoder_options)
        try:
            return pocketsphinx.Decoder(**options)
        except (RuntimeError, ValueError) as error:
            raise ProviderError(
                f"cannot load model {str(base)!r}: {type(error).__name__}",
                provider=self.name,
                error_class=ErrorClass.PERMANENT,
            ) from error


class _Utterance:
    """One utterance on one reserved decoder; every method runs in a worker thread."""

    def __init__(self, pool: _DecoderPool, provider: str) -> None:
        self._pool = pool
        self.lock = threading.Lock()
        self.decoder: Decoder | None = None
        self.started = False
        self.finished = False
        self.failed = False
        self.num_samples = 0
        self._provider = provider
        self._odd_byte = b""
        self._last_text = ""

    @property
    def audio_s(self) -> float:
        return self.num_samples / SAMPLE_RATE_HZ

    def start(self) -> None:
        with self.lock:
            self.decoder = self._pool.take_idle() or self._pool.create()
            self._call("start_utt")
            self.started = True

    def feed(self, chunk: bytes) -> str | None:
        """Decode ``chunk``; the new hypothesis text, or None when unchanged."""
        with self.lock:
            data = self._odd_byte + chunk
            usable = len(data) - len(data) % _BYTES_PER_SAMPLE
            self._odd_byte = data[usable:]
            if not usable:
                return None
            self._call("process_raw", data[:usable])
            self.num_samples += usable // _BYTES_PER_SAMPLE
            assert self.decoder is not None  # set by start()
            hypothesis = self.decoder.hyp()
            text = hypothesis.hypstr if hypothesis is not None else ""
            if not text or text == self._last_text:
                return None
            self._last_text = text
            return text

    def finish(self) -> tuple[str, float | None]:
        """End the utterance; the final text and its confidence."""
        with self.lock:
            if self._odd_byte:
                num_bytes = self.num_samples * _BYTES_PER_SAMPLE + 1
                raise ValueError(f"s16le audio must have an even number of bytes, got {num_bytes}")
            self._call("end_utt")
            self.finished = True
            assert self.decoder is not None  # set by start()
            hypothesis = self.decoder.hyp()
            text = hypothesis.hypstr if hypothesis is not None else ""
            return text, _word_confidence(self.decoder) if text else None

    def _call(self, method: str, *args: Any) -> None:
        try:
            getattr(self.decoder, method)(*args)
        except RuntimeError as error:
            self.failed = True
            raise ProviderError(
                f"{method} failed after {self.num_samples} samples", provider=self._provider
            ) from error


def _word_confidence(decoder: Decoder) -> float | None:
    """Mean posterior probability of the words of the decoder's last hypothesis.

    Sentence markers (``<s>``, ``</s>``), silence (``<sil>``) and fillers
    (``[NOISE]``, ``++UH++``) are not words. The posteriors come from the
    utterance's lattice (pocketsphinx ``ps_seg_iter``); log arithmetic can put
    them a hair above 1, so they are clipped.

    Returns:
        A value in 0..1, or None when there are no words.
    """
    if not decoder.config["bestpath"]:
        return None  # no lattice: every posterior reads 1.0
    posteriors = [
        min(1.0, max(0.0, segment.prob))
        for segment in decoder.seg()
        if segment.word and segment.word[0] not in "<[+"
    ]
    return sum(posteriors) / len(posteriors) if posteriors else None


class _DecoderPool:
    """Idle decoders and the count of reserved ones. Thread-safe."""

    def __init__(
        self,
        create: Callable[[], Decoder],
        max_decoders: int,
        max_idle: int,
        provider: str,
    ) -> None:
        self.create = create
        self._max_decoders = max_decoders
        self._max_idle = max_idle
        self._provider = provider
        self._lock = threading.Lock()
        self._idle: list[Decoder] = []
        self._num_reserved = 0

    def reserve(self) -> None:
        """Reserve a decoder slot; :meth:`release` frees it.

        Raises:
            ProviderError: ``max_decoders`` utterances are already decoding (``TRANSIENT``).
        """
        with self._lock:
            if self._num_reserved >= self._max_decoders:
                raise ProviderError(
                    f"all {self._max_decoders} decoders are busy", provider=self._provider
                )
            self._num_reserved += 1

    def release(self) -> None:
        """Free a slot taken by :meth:`reserve`."""
        with self._lock:
            self._num_reserved -= 1

    def take_idle(self) -> Decoder | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def give_back(self, utterance: _Utterance) -> None:
        """Reset and pool ``utterance``'s decoder when it is sound, else drop it."""
        with utterance.lock:
            decoder = utterance.decoder
            if decoder is not None and utterance.started and not utterance.finished:
                try:
                    decoder.end_utt()
                except RuntimeError:
                    utterance.failed = True
            with self._lock:
                sound = decoder is not None and not utterance.failed
                if sound and len(self._idle) < self._max_idle:
                    self._idle.append(decoder)

    def prefill(self, num_decoders: int) -> None:
        missing = min(num_decoders, self._max_idle) - len(self._idle)
        created = [self.create() for _ in range(max(0, missing))]
        with self._lock:
            self._idle.extend(created)

    def clear(self) -> None:
        with self._lock:
            self._idle.clear()


def _check_model_dir(model_dir: Path) -> None:
    for name in (_HMM_DIR, _LM_FILE, _DICT_FILE):
        if not (model_dir / name).exists():
            raise ConfigError(
                f"pocketsphinx model directory {str(model_dir)!r} has no {name!r}",
                field="stt.model_dir",
            )


def _package_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pocketsphinx")
    except PackageNotFoundError:
        return None
