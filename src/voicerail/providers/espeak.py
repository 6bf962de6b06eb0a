"""espeak-ng text-to-speech, embedded (formant synthesis, the C library via ctypes).

Implements :class:`voicerail.providers.base.TextToSpeech` on the espeak-ng shared
library and data shipped in the ``espeakng-loader`` wheel (espeak-ng 1.52). The C
API is ``speak_lib.h`` (https://github.com/espeak-ng/espeak-ng/blob/1.52.0/src/include/espeak-ng/speak_lib.h):
``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ...)`` makes ``espeak_Synth`` run the
whole synthesis in the calling thread, handing buffers of samples to the callback
set with ``espeak_SetSynthCallback``; the callback returns 1 to abort.

Rules kept here:

1. The library is process-global and not thread-safe: one engine per process,
   every call into it holds :data:`_ENGINE_LOCK`, and async requests run on one
   dedicated thread, so they queue instead of piling up threads on the lock.
2. Text is passed as plain UTF-8, never SSML: text from a dialog or an LLM must
   not be able to switch voices or insert audio.
3. Output is espeak-ng's native 22050 Hz; a library reporting another rate is
   refused rather than resampled.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import Any

from voicerail.errors import ErrorClass, ProviderError
from voicerail.providers._threads import iterate_in_thread
from voicerail.providers.base import TTSCapabilities, TTSChunk, Usage

SAMPLE_RATE_HZ = 22050
RATE_MIN_WPM = 80  # espeakRATE_MINIMUM
RATE_MAX_WPM = 450  # espeakRATE_MAXIMUM

# speak_lib.h constants.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE = 1
_EE_OK = 0
_BUFFER_MS = 200  # samples per callback: at most 200 ms of audio per chunk

_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)
# Receives each buffer of s16le samples; returns True to abort synthesis.
SampleSink = Callable[[bytes], bool]

_ENGINE_LOCK = threading.Lock()
_engine: _Engine | None = None
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="espeak-ng")


class _Engine:
    """The process's one initialized espeak-ng library. Use under ``_ENGINE_LOCK``."""

    def __init__(self, provider: str) -> None:
        # espeakng_loader is imported here: it is an optional extra ("speech").
        import espeakng_loader

        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as error:
            raise ProviderError(
                f"cannot load the espeak-ng library: {type(error).__name__}",
                provider=provider,
                error_class=ErrorClass.PERMANENT,
            ) from error
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,  # text
            ctypes.c_size_t,  # size in bytes, terminating NUL included
            ctypes.c_uint,  # position
            ctypes.c_int,  # position_type
            ctypes.c_uint,  # end_position (0: none)
            ctypes.c_uint,  # flags
            ctypes.c_void_p,  # unique_identifier out
            ctypes.c_void_p,  # user_data
        ]
        rate_hz = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path.encode(), 0
        )
        if rate_hz != SAMPLE_RATE_HZ:
            raise ProviderError(
                f"espeak-ng initialized at {rate_hz} Hz, expected {SAMPLE_RATE_HZ}",
                provider=provider,
                error_class=ErrorClass.PERMANENT,
            )
        self._lib = lib
        self._voice: str | None = None
        self._sink: SampleSink | None = None
        # Kept referenced for the life of the process: the C library holds the pointer.
        self._callback = _SynthCallback(self._on_samples)
        lib.espeak_SetSynthCallback(self._callback)

    def _on_samples(self, wav: Any, num_samples: int, _events: Any) -> int:
        if not wav or num_samples <= 0 or self._sink is None:
            return 0
        return 1 if self._sink(ctypes.string_at(wav, num_samples * 2)) else 0

    def synthesize(
        self, text: str, voice: str, rate_wpm: int, sink: SampleSink, *, provider: str
    ) -> None:
        """Synthesize ``text`` into ``sink`` (blocking, caller holds the lock).

        Raises:
            ProviderError: unknown voice (``PERMANENT``) or synthesis failure.
        """
        if voice != self._voice:
            status = self._lib.espeak_SetVoiceByName(voice.encode())
            if status != _EE_OK:
                self._voice = None
                raise ProviderError(
                    f"unknown espeak-ng voice {voice!r} (status {status})",
                    provider=provider,
                    error_class=ErrorClass.PERMANENT,
                )
            self._voice = voice
        self._lib.espeak_SetParameter(_PARAM_RATE, rate_wpm, 0)
        data = text.encode("utf-8") + b"\0"
        self._sink = sink
        try:
            status = self._lib.espeak_Synth(
                data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
            )
        finally:
            self._sink = None
        if status != _EE_OK:
            raise ProviderError(f"espeak_Synth returned {status}", provider=provider)


def _locked_engine(provider: str) -> _Engine:
    """The process's engine, initialized on first use; caller holds ``_ENGINE_LOCK``."""
    global _engine
    if _engine is None:
        _engine = _Engine(provider)
    return _engine


def _check_rate(rate_wpm: int) -> None:
    if not RATE_MIN_WPM <= rate_wpm <= RATE_MAX_WPM:
        raise ValueError(f"rate_wpm must be within {RATE_MIN_WPM}..{RATE_MAX_WPM}, got {rate_wpm}")


def espeak_synthesize(text: str, voice: str = "en-us", rate_wpm: int = 175) -> tuple[bytes, int]:
    """Synthesize ``text`` in one blocking call (for simulated callers and tests).

    Args:
        text: plain text (not SSML).
        voice: espeak-ng voice name, language code or ``lang+variant`` (``"en-us+f3"``).
        rate_wpm: speaking rate in words per minute, 80..450.

    Returns:
        s16le mono PCM, and its sample rate in Hz (22050).

    Raises:
        ValueError: ``rate_wpm`` is out of range.
        ProviderError: the library failed to load or the voice is unknown.
    """
    _check_rate(rate_wpm)
    buffers: list[bytes] = []

    def collect(pcm: bytes) -> bool:
        buffers.append(pcm)
        return False

    with _ENGINE_LOCK:
        _locked_engine("espeak-ng").synthesize(text, voice, rate_wpm, collect, provider="espeak-ng")
    return b"".join(buffers), SAMPLE_RATE_HZ


class EspeakTTS:
    """Text-to-speech with espeak-ng: robotic but instant, and different from piper.

    Args:
        voice: espeak-ng voice name, language code or ``lang+variant`` (``"en-us+f3"``).
        rate_wpm: speaking rate in words per minute, 80..450.
        name: configured provider name, used in events, usage and errors.

    Raises:
        ValueError: ``rate_wpm`` is out of range.
    """

    def __init__(self, voice: str = "en-us", *, rate_wpm: int = 175, name: str = "espeak-ng"):
        _check_rate(rate_wpm)
        self.name = name
        # quality rank for routing rule 8 (27 % word error over μ-law against piper)
        self.quality = 0.5
        self.model = voice
        self.capabilities = TTSCapabilities(
            sample_rate_hz=SAMPLE_RATE_HZ, streaming=True, voices=(voice,)
        )
        self._voice = voice
        self._rate_wpm = rate_wpm

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        """Synthesize ``text``, streaming buffers of at most 200 ms as they are made.

        Requests are served one at a time, in order, on espeak-ng's own thread.

        Args:
            text: plain text (not SSML).

        Yields:
            s16le mono PCM chunks at 22050 Hz; the last carries ``text`` and ``usage``.

        Raises:
            ProviderError: the library failed to load (``PERMANENT``), the voice is
                unknown (``PERMANENT``) or synthesis failed.
        """
        stream = iterate_in_thread(
            self._producer(text), thread_name="espeak-ng", executor=_executor
        )
        # aclosing: stop the producer now when our consumer stops, not when the
        # inner generator is garbage-collected.
        async with aclosing(stream):
            async for chunk in stream:
                yield chunk

    def _producer(self, text: str) -> Callable[[Callable[[TTSChunk], None], threading.Event], None]:
        def produce(emit: Callable[[TTSChunk], None], stop: threading.Event) -> None:
            # One buffer is held back so that the last one can carry text and usage;
            # espeak-ng makes a buffer in about a millisecond, so this costs nothing.
            held: list[bytes] = []
            num_samples = 0

            def on_samples(pcm: bytes) -> bool:
                nonlocal num_samples
                if held:
                    emit(TTSChunk(pcm=held.pop(), sample_rate_hz=SAMPLE_RATE_HZ))
                held.append(pcm)
                num_samples += len(pcm) // 2
                return stop.is_set()

            with _ENGINE_LOCK:
                engine = _locked_engine(self.name)
                engine.synthesize(text, self._voice, self._rate_wpm, on_samples, provider=self.name)
            if stop.is_set():
                return
            usage = Usage(
                provider=self.name,
                model=self.model,
                audio_s=num_samples / SAMPLE_RATE_HZ,
                characters=len(text),
            )
            last = held.pop() if held else b""
            emit(TTSChunk(pcm=last, sample_rate_hz=SAMPLE_RATE_HZ, text=text, usage=usage))

        return produce
