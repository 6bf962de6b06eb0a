"""Speculative speech-to-text: transcribe while the endpointing window runs.

A turn ends only after ``endpoint_silence_s`` of silence, but its words are all
in by the time the pause begins. When a pause inside an utterance has lasted
``after_s``, the utterance so far is sent to STT; if the pause turns into the
end of the turn (same speech start, same speech end) the transcript is already
there or on its way, so the endpointing wait and the STT time overlap instead
of adding up. If the caller speaks again, the speculation is dropped (and
cancelled) and a new one starts at the next pause.

Cost: one extra STT request per pause that does not end a turn. When CPU is the
bottleneck that extra work slows every call, so speculation gives way under
load (``allowed``): the turn then waits for STT after the window, as without it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Pending(Generic[T]):
    speech_start_s: float
    pause_start_s: float
    task: asyncio.Task[T]


class SpeculativeSTT(Generic[T]):
    """Tracks at most one speculative transcription for one call.

    Args:
        transcribe: ``transcribe(speech_start_s, speech_end_s)`` runs STT on that span
            of the call's audio (stream seconds) and returns its result.
        after_s: how long a pause must last before speculating.
        allowed: asked before each speculation; False skips it (the server is busy).
    """

    def __init__(
        self,
        transcribe: Callable[[float, float], Awaitable[T]],
        *,
        after_s: float,
        allowed: Callable[[], bool] = lambda: True,
    ) -> None:
        self._transcribe = transcribe
        self.after_s = after_s
        self._allowed = allowed
        self._skipped_pause: float | None = None
        self.skipped = 0
        self._pending: _Pending[T] | None = None
        self.started = 0
        self.used = 0

    def observe(
        self, speech_start_s: float | None, pause_start_s: float | None, now_s: float
    ) -> None:
        """Feed the endpointer's view after each VAD window (stream seconds)."""
        pending = self._pending
        if pending is not None and speech_start_s is None:
            return  # the utterance just ended: keep the speculation for take()
        if pending is not None and pause_start_s != pending.pause_start_s:
            self.cancel()  # the caller spoke again
            pending = None
        if speech_start_s is None or pause_start_s is None or pending is not None:
            return
        if pause_start_s == self._skipped_pause:
            return
        if now_s - pause_start_s < self.after_s:
            return
        if not self._allowed():
            self.skipped += 1
            self._skipped_pause = pause_start_s  # ask once per pause, not per window
            return
        task = asyncio.ensure_future(self._transcribe(speech_start_s, pause_start_s))
        self._pending = _Pending(speech_start_s, pause_start_s, task)
        self.started += 1

    def take(self, speech_start_s: float, speech_end_s: float) -> asyncio.Task[T] | None:
        """The speculation for exactly this utterance, if one is running or done."""
        pending, self._pending = self._pending, None
        if (
            pending is not None
            and abs(pending.speech_start_s - speech_start_s) < 1e-9
            and abs(pending.pause_start_s - speech_end_s) < 1e-9
        ):
            self.used += 1
            return pending.task
        if pending is not None:
            pending.task.cancel()
        return None

    def cancel(self) -> None:
        """Drop the pending speculation."""
        if self._pending is not None:
            self._pending.task.cancel()
            self._pending = None
