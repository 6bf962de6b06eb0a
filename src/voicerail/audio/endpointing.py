"""Endpointing: when the caller starts and stops speaking, from VAD probabilities.

Rules this module keeps (probabilities come one per VAD window, ``window_s`` long):

1. Time is audio-stream time: window ``i`` covers ``[i * window_s, (i + 1) *
   window_s)`` seconds from the start of the stream. No wall clock is read, so
   the same probabilities always give the same events at the same times.
2. A window is *voiced* when its probability is ``>= threshold`` and *silent* when
   it is ``< neg_threshold`` (by default ``max(threshold - 0.15, 0.01)``, as in
   Silero's own ``get_speech_timestamps``). Windows in between are ambiguous:
   they extend whatever is under way and decide nothing.
3. Speech starts once the voiced windows of a candidate run add up to
   ``min_speech_s``. A run begins at a voiced window and is dropped at the first
   silent window, so blips shorter than ``min_speech_s`` never start speech.
   :class:`SpeechStarted` is reported at the end of the window that completes the
   run, and carries the start of the run's first voiced window (pre-roll: the
   driver keeps audio in a ring buffer and reads it back from there).
4. Speech ends once ``silence_s`` has passed since the first silent window with no
   voiced window since; a voiced window cancels the pending end, so short pauses
   never end speech. The utterance ends where that silence began.
5. At most one event is reported per window; a run cannot start and end at once.
6. An end-of-turn model may end the utterance early, during a pause: ``end_now()``
   ends it where the pause began, as rule 4 would once the window had passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Window counts come from float durations (0.2 / 0.032 = 6.25); the slack keeps an
# exact multiple (0.64 / 0.032) from rounding up to one window more.
_WINDOW_COUNT_SLACK = 1e-9


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """The caller started speaking.

    Attributes:
        at_s: stream time (seconds) at which the start was decided: the end of the
            window that confirmed it.
        speech_start_s: stream time (seconds) of the start of the first voiced
            window of the utterance; earlier than ``at_s`` by at least
            ``min_speech_s``.
    """

    at_s: float
    speech_start_s: float


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """The caller stopped speaking.

    Attributes:
        at_s: stream time (seconds) at which the end was decided, ``silence_s``
            after ``speech_end_s``.
        speech_start_s: stream time (seconds) the utterance started (as reported
            by :class:`SpeechStarted`).
        speech_end_s: stream time (seconds) the trailing silence began.
    """

    at_s: float
    speech_start_s: float
    speech_end_s: float


SpeechChange = SpeechStarted | SpeechEnded


class Endpointer:
    """Turns one speech probability per VAD window into speech start/end events.

    Args:
        threshold: probability at or above which a window is voiced.
        min_speech_s: voiced time a run needs before speech starts.
        silence_s: silence after which speech ends.
        window_s: duration of one VAD window (0.032 for Silero at 8 or 16 kHz).
        neg_threshold: probability below which a window is silent; by default
            ``max(threshold - 0.15, 0.01)``.

    Raises:
        ValueError: a threshold is outside (0, 1], ``neg_threshold`` exceeds
            ``threshold``, ``window_s`` or ``silence_s`` is not positive, or
            ``min_speech_s`` is negative.
    """

    def __init__(
        self,
        threshold: float = 0.5,
        min_speech_s: float = 0.2,
        silence_s: float = 0.6,
        window_s: float = 0.032,
        neg_threshold: float | None = None,
    ) -> None:
        if neg_threshold is None:
            neg_threshold = max(threshold - 0.15, 0.01)
        if not (0.0 < neg_threshold <= threshold <= 1.0):
            raise ValueError(
                "thresholds must satisfy 0 < neg_threshold <= threshold <= 1, got "
                f"neg_threshold {neg_threshold} and threshold {threshold}"
            )
        if window_s <= 0 or silence_s <= 0 or min_speech_s < 0:
            raise ValueError(
                "window_s and silence_s must be positive and min_speech_s not negative, "
                f"got {window_s}, {silence_s} and {min_speech_s}"
            )
        self.threshold = threshold
        self.neg_threshold = neg_threshold
        self.window_s = window_s
        self._min_speech_num_windows = _num_windows(min_speech_s, window_s)
        self._silence_num_windows = _num_windows(silence_s, window_s)
        self.reset()

    def reset(self) -> None:
        """Forget everything, and restart stream time at zero."""
        self._num_windows = 0
        self._in_speech = False
        # First voiced window of the current run or utterance; meaningful only while
        # a run has voiced windows or speech is on.
        self._run_start = 0
        self._run_num_voiced = 0
        # First silent window of the pending end, if any.
        self._silence_start: int | None = None

    @property
    def in_speech(self) -> bool:
        """True between a :class:`SpeechStarted` and the next :class:`SpeechEnded`."""
        return self._in_speech

    @property
    def now_s(self) -> float:
        """Stream time (seconds) at the end of the last window processed."""
        return self._num_windows * self.window_s

    @property
    def speech_duration_s(self) -> float:
        """Seconds from the current utterance's first voiced window to now; 0.0 out of speech."""
        if not self._in_speech:
            return 0.0
        return (self._num_windows - self._run_start) * self.window_s

    @property
    def speech_start_s(self) -> float | None:
        """Stream time of the current utterance's first voiced window; None out of speech."""
        return self._run_start * self.window_s if self._in_speech else None

    @property
    def pause_start_s(self) -> float | None:
        """Stream time where the current pause inside an utterance began, or None.

        A pause that lasts the endpointing window ends the utterance; a driver may
        start work on the utterance as soon as a pause begins (speculative STT).
        """
        if not self._in_speech or self._silence_start is None:
            return None
        return self._silence_start * self.window_s

    def end_now(self) -> SpeechEnded | None:
        """End the current utterance at the start of the current pause (rule 6).

        Returns:
            The :class:`SpeechEnded`, decided now (:attr:`now_s`), or None when no
            pause is under way (out of speech, or the caller is speaking).
        """
        if not self._in_speech or self._silence_start is None:
            return None
        ended = SpeechEnded(
            at_s=self.now_s,
            speech_start_s=self._run_start * self.window_s,
            speech_end_s=self._silence_start * self.window_s,
        )
        self._in_speech = False
        self._run_num_voiced = 0
        self._silence_start = None
        return ended

    def process(self, probability: float) -> list[SpeechChange]:
        """Take the next window's speech probability.

        Args:
            probability: the VAD's speech probability for the window that follows
                the previous one, in [0, 1].

        Returns:
            The events this window caused: empty, or one :class:`SpeechStarted` or
            :class:`SpeechEnded`.
        """
        index = self._num_windows
        self._num_windows += 1
        voiced = probability >= self.threshold
        silent = probability < self.neg_threshold
        if self._in_speech:
            return self._continue_speech(index, voiced, silent)
        return self._continue_candidate(index, voiced, silent)

    def _continue_candidate(self, index: int, voiced: bool, silent: bool) -> list[SpeechChange]:
        if silent:
            self._run_num_voiced = 0
            return []
        if not voiced:
            return []
        if self._run_num_voiced == 0:
            self._run_start = index
        self._run_num_voiced += 1
        if self._run_num_voiced < self._min_speech_num_windows:
            return []
        self._in_speech = True
        self._silence_start = None
        return [SpeechStarted(at_s=self.now_s, speech_start_s=self._run_start * self.window_s)]

    def _continue_speech(self, index: int, voiced: bool, silent: bool) -> list[SpeechChange]:
        if voiced:
            self._silence_start = None
            return []
        if silent and self._silence_start is None:
            self._silence_start = index
        if self._silence_start is None:
            return []
        if self._num_windows - self._silence_start < self._silence_num_windows:
            return []
        ended = self.end_now()
        assert ended is not None  # in speech, in a pause
        return [ended]


def _num_windows(duration_s: float, window_s: float) -> int:
    return max(1, math.ceil(duration_s / window_s - _WINDOW_COUNT_SLACK))
