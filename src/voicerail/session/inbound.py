"""The caller's audio in: its media clock, the VAD and the endpointer, and the
recent audio for STT and the end-of-turn model.

Rules:

1. Audio arrives as signed 16-bit little-endian mono PCM at 8 kHz (the
   transport converts, ``wire/transport.py``).
2. The caller's audio clock is the audio received: a frame's last sample exists
   at ``origin + received_s``; the earliest frame relative to that fixes the
   origin (monotonic seconds), so a caller whose first frame is late is not lag.
3. The VAD is chosen from what the runtime holds: a shared batcher (scores come
   back later, through ``on_scores``), one Silero model (scores now), or the
   energy VAD. The endpointer's window is the VAD's.
4. The last 120 s of audio are kept for STT (resampled to 16 kHz on demand).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from voicerail.audio import endpointing
from voicerail.audio.resample import resample
from voicerail.audio.ring import AudioRingBuffer
from voicerail.audio.vad import EnergyVAD, SileroVAD, SileroVADModel
from voicerail.audio.vad_batch import BatchedSileroVAD, SileroBatcher
from voicerail.session.runtime import AudioConfig
from voicerail.wire.transport import CALL_RATE_HZ

STT_RATE_HZ = 16000
RING_S = 120.0


class InboundAudio:
    """One call's inbound audio pipeline (rules above).

    Args:
        vad_model: the runtime's ``vad_model`` (a ``SileroBatcher``, a
            ``SileroVADModel`` or None for the energy VAD).
        audio: the audio policy (VAD threshold, endpointing window).
        on_scores: batched VAD results, in order, each with its frame's arrival time.
        on_error: the batched VAD failed.
    """

    def __init__(
        self,
        vad_model: object | None,
        audio: AudioConfig,
        *,
        on_scores: Callable[[list[tuple[float, float]]], None],
        on_error: Callable[[BaseException], None],
    ) -> None:
        self.vad: SileroVAD | EnergyVAD
        self._batched: BatchedSileroVAD | None = None
        if isinstance(vad_model, SileroBatcher):
            self._batched = BatchedSileroVAD(
                vad_model, sample_rate_hz=CALL_RATE_HZ, on_scores=on_scores, on_error=on_error
            )
            self.vad = self._batched
        elif isinstance(vad_model, SileroVADModel):
            self.vad = SileroVAD(vad_model, sample_rate_hz=CALL_RATE_HZ)
        else:
            self.vad = EnergyVAD(sample_rate_hz=CALL_RATE_HZ)
        self.endpointer = endpointing.Endpointer(
            threshold=audio.vad_threshold,
            min_speech_s=audio.min_speech_s,
            silence_s=audio.endpoint_silence_s,
            window_s=self.vad.frame_num_samples / CALL_RATE_HZ,
        )
        self._ring = AudioRingBuffer(max_s=RING_S, sample_rate_hz=CALL_RATE_HZ)
        self.received_s = 0.0  # seconds of caller audio received
        self.origin_s = math.inf  # monotonic time of the caller's audio time 0

    def receive(self, pcm: bytes, now_s: float) -> Sequence[float]:
        """Take one frame (rule 1) that arrived at ``now_s`` (monotonic seconds).

        Returns:
            The speech probabilities scored now; empty when the VAD is batched
            (its scores come through ``on_scores``).
        """
        self.received_s += len(pcm) / (2 * CALL_RATE_HZ)
        self.origin_s = min(self.origin_s, now_s - self.received_s)
        self._ring.append(pcm)
        if self._batched is not None:
            self._batched.feed(pcm, now_s)
            return ()
        return self.vad.process(pcm)

    def pcm16k(self, start_s: float, end_s: float | None = None) -> bytes:
        """The caller's audio from ``start_s`` to ``end_s`` (or now), stream
        seconds, as signed 16-bit little-endian mono PCM at 16 kHz."""
        pcm = self._ring.since(max(0.0, start_s))
        if end_s is not None:
            keep = int((end_s - max(0.0, start_s)) * CALL_RATE_HZ) * 2
            pcm = pcm[: max(keep, 0)]
        return resample(pcm, CALL_RATE_HZ, STT_RATE_HZ)

    def close(self) -> None:
        """Stop the batched VAD's work for this call (no more scores)."""
        if self._batched is not None:
            self._batched.close()
