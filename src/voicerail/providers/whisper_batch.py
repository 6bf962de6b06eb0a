"""Whisper utterances of concurrent calls decoded together, on one worker thread.

faster-whisper's ``WhisperModel.transcribe`` decodes one audio at a time, and
each call's decode in its own thread makes N calls run N decodes of
``cpu_threads`` threads each on the same cores: every one of them slows down,
all at once. Here every request goes to one worker thread per model, which
takes whatever is queued (up to ``max_batch``) and runs it as one CTranslate2
``encode`` + ``generate`` batch (https://opennmt.net/CTranslate2/python/
ctranslate2.models.Whisper.html). The CPU use is bounded by the model's
``cpu_threads`` whatever the load, and the decodes of a burst share one trip.

Rules:

1. The encoder window is the utterance plus a second, at least
   ``window_s`` and at most Whisper's 30 s. Whisper's encoder is trained on
   30 s windows, but its cost grows with the window. On tiny.en int8, 2 busy
   cores, 210 clips of real telephone and LibriVox speech (with rule 2's cap):
   30 s: 521 ms per utterance, 16.6 % word error; 20 s: 248 ms, 17.9 %; 15 s:
   171 ms, 17.9 %; 12 s: 117 ms, 18.7 %. The default stays 30 s: at 20 s and
   15 s the demo call's "next Tuesday at 3 in the afternoon" (flite over μ-law)
   came back as "next, choose the 3 in the afternoon". ``window_s`` lets an
   operator trade accuracy for capacity. Measured here with a script over
   ``voicerail.testing.speech_corpus``.
2. The number of tokens decoded is capped by the audio's length
   (``max_tokens_per_s``): a greedy decoder on a short window can fall into a
   repetition loop, and a cap stops it at the length speech can have.
3. A batch uses the widest window of its members, so no member is cut.
4. Waiting is bounded: the worker takes what is queued when it is free, and
   waits at most ``max_wait_s`` for more when the batch is not full.
5. A failed batch fails each of its requests with the same error; the worker
   goes on with the next one.
6. A request cancelled while it waits in the queue is not decoded.
7. Under load the window may shrink (``busy_window_s``, off by default): a
   batch of two or more utterances means calls are waiting on recognition, and
   a narrower window halves the decode at a small cost in accuracy (rule 1's
   figures). At 8 staggered clinic calls on a shared 2-core machine, 20 s under
   load did not show a better p95 than 30 s, so it stays an operator's choice.
8. An utterance the greedy batch decode is unsure of (mean token log
   probability under ``retry_below_logprob``, and not silence) is decoded
   again alone by faster-whisper's ``transcribe``, whose temperature fallback
   recovers what one greedy pass misheard; the batch is the fast path, not a
   lower-quality one. (The demo call's "next Tuesday" came back from one greedy
   pass of the call's audio as "next, choose the A3" about half the time.)
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

SAMPLE_RATE_HZ = 16000
FRAMES_PER_S = 100  # Whisper's log-mel hop: 10 ms
MAX_FRAMES = 3000  # 30 s, Whisper's window


@dataclass(frozen=True)
class Decoded:
    """One utterance's result: text, mean token log probability, no-speech probability."""

    text: str
    avg_logprob: float | None
    no_speech_prob: float


@dataclass
class _Request:
    samples: np.ndarray
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Decoded]


def window_frames(num_samples: int, window_s: float) -> int:
    """Rule 1: log-mel frames of the encoder window for an utterance of ``num_samples``."""
    needed = math.ceil(num_samples / SAMPLE_RATE_HZ * FRAMES_PER_S) + FRAMES_PER_S
    return int(min(MAX_FRAMES, max(needed, window_s * FRAMES_PER_S)))


class WhisperBatcher:
    """Decodes utterances (≤ 30 s, float32 mono at 16 kHz) in batches on one thread.

    Args:
        load_model: returns the loaded ``faster_whisper.WhisperModel`` (called on
            the worker thread, once).
        language: Whisper language code (``"en"``).
        window_s: the shortest encoder window (rule 1).
        busy_window_s: the shortest encoder window of a batch of two or more
            utterances (rule 7).
        max_tokens_per_s: the token cap per second of audio (rule 2).
        max_batch: most utterances per batch. Small on a CPU: a batch of 4 cost
            327 ms per utterance against 351 ms alone (tiny.en int8, 2 cores),
            and every member waits for the whole batch, so large batches buy
            little throughput and cost each call latency.
        max_wait_s: longest wait for more utterances once one is queued (rule 4).
        prompt_text: initial prompt (context) for every utterance.
        hotwords: words to bias toward.
        name: thread name.
        retry_below_logprob: decode again alone below this mean token log
            probability (rule 8; -0.5 is a confidence of about 0.6).
    """

    def __init__(
        self,
        load_model: Callable[[], Any],
        *,
        language: str = "en",
        window_s: float = 30.0,
        busy_window_s: float = 30.0,
        max_tokens_per_s: float = 6.0,
        max_batch: int = 2,
        max_wait_s: float = 0.0,
        prompt_text: str | None = None,
        hotwords: str | None = None,
        name: str = "whisper-batch",
        retry_below_logprob: float = -0.5,
    ) -> None:
        self._load_model = load_model
        self.language = language
        self.window_s = window_s
        self.busy_window_s = min(window_s, busy_window_s)
        self.max_tokens_per_s = max_tokens_per_s
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._prompt_text = prompt_text
        self._hotwords = hotwords
        self.retry_below_logprob = retry_below_logprob
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = False
        self._lock = threading.Lock()
        self.batches = 0  # trips run, for tests and benchmarks

    async def decode(self, samples: np.ndarray) -> Decoded:
        """Decode one utterance.

        Args:
            samples: float32 mono PCM at 16 kHz in [-1, 1], at most 30 s.

        Raises:
            ValueError: over 30 s of audio.
            Exception: whatever the model raised for the batch (rule 5).
        """
        if samples.size > MAX_FRAMES // FRAMES_PER_S * SAMPLE_RATE_HZ:
            raise ValueError(f"at most 30 s per utterance, got {samples.size} samples")
        with self._lock:
            if not self._started:
                self._thread.start()
                self._started = True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Decoded] = loop.create_future()
        self._queue.put(_Request(samples, loop, future))
        return await future

    def _run(self) -> None:
        model = None
        while True:
            batch = [self._queue.get()]
            self._gather(batch)
            # A request its caller gave up on while queued (a speculation the caller
            # talked over, a barge-in) costs no decode. Reading ``done()`` from this
            # thread can only be late, never wrong: a late one is decoded and dropped.
            batch = [r for r in batch if not r.future.done()]
            if not batch:
                continue
            try:
                if model is None:
                    model = self._load_model()
                results = self._decode_batch(model, [r.samples for r in batch])
            except Exception as error:  # thread boundary: rule 5, every request gets it
                for request in batch:
                    _settle(request, error=error)
                continue
            self.batches += 1
            for request, result in zip(batch, results, strict=True):
                _settle(request, result=result)

    def _gather(self, batch: list[_Request]) -> None:
        """Rule 4: take what is queued, waiting at most ``max_wait_s`` for more."""
        while len(batch) < self.max_batch:
            try:
                if self.max_wait_s > 0:
                    batch.append(self._queue.get(timeout=self.max_wait_s))
                else:
                    batch.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def frames_for(self, utterances: list[np.ndarray]) -> int:
        """The batch's encoder window in log-mel frames (rules 1, 3 and 7)."""
        window_s = self.window_s if len(utterances) == 1 else self.busy_window_s
        return max(window_frames(u.size, window_s) for u in utterances)

    def _decode_batch(self, model: Any, utterances: list[np.ndarray]) -> list[Decoded]:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer

        frames = self.frames_for(utterances)
        features = np.stack([pad_or_trim(model.feature_extractor(u), frames) for u in utterances])
        tokenizer = Tokenizer(
            model.hf_tokenizer,
            model.model.is_multilingual,
            task="transcribe",
            language=self.language,
        )
        previous = tokenizer.encode(" " + self._prompt_text.strip()) if self._prompt_text else []
        prompt = model.get_prompt(
            tokenizer, previous, without_timestamps=True, hotwords=self._hotwords
        )
        longest_s = max(u.size for u in utterances) / SAMPLE_RATE_HZ
        max_length = min(
            model.max_length, len(prompt) + 8 + math.ceil(longest_s * self.max_tokens_per_s)
        )
        encoded = model.encode(features)
        results = model.model.generate(
            encoded,
            [list(prompt) for _ in utterances],
            beam_size=1,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        decoded = []
        for utterance, result in zip(utterances, results, strict=True):
            tokens = result.sequences_ids[0]
            # faster-whisper's average log probability (length penalty 1).
            avg = result.scores[0] * len(tokens) / (len(tokens) + 1) if tokens else None
            no_speech = float(result.no_speech_prob)
            text = tokenizer.decode(tokens).strip()
            if avg is not None and avg < self.retry_below_logprob and no_speech <= 0.6:
                text, avg = self._transcribe_alone(model, utterance)  # rule 8
            decoded.append(Decoded(text, avg, no_speech))
        return decoded

    def _transcribe_alone(self, model: Any, utterance: np.ndarray) -> tuple[str, float | None]:
        """Rule 8: faster-whisper's own ``transcribe`` (30 s window, temperature
        fallback on a low log probability or a repetitive text)."""
        segments, _info = model.transcribe(
            utterance,
            language=self.language,
            beam_size=1,
            vad_filter=False,
            without_timestamps=True,
            condition_on_previous_text=False,
            initial_prompt=self._prompt_text,
            hotwords=self._hotwords,
        )
        found = list(segments)
        text = " ".join(segment.text.strip() for segment in found).strip()
        if not found:
            return text, None
        return text, sum(segment.avg_logprob for segment in found) / len(found)


def _settle(
    request: _Request, *, result: Decoded | None = None, error: BaseException | None = None
) -> None:
    def apply() -> None:
        if request.future.done():
            return  # the caller went away (barge-in, hang-up)
        if error is not None:
            request.future.set_exception(error)
        else:
            request.future.set_result(result)  # type: ignore[arg-type]

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        request.loop.call_soon_threadsafe(apply)
