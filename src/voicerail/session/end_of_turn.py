"""Ending a caller's turn early when an end-of-turn model says they have finished.

Rules this module keeps (times are stream seconds, as the endpointer's):

1. Once a pause inside an utterance has lasted ``check_after_s`` (shorter than
   the endpointing window), the utterance so far is sent to the model, once per
   pause.
2. If the model's probability is above ``threshold`` and the same pause is still
   under way (same speech start, same pause start), ``on_complete`` is called:
   the driver ends the turn there (``Endpointer.end_now``). Otherwise the
   endpointing window ends the turn as it would without a model (the long window
   for a caller pausing mid-thought).
3. The caller speaking again, or the utterance ending, cancels the check.

Like :class:`~voicerail.session.speculation.SpeculativeSTT`, whose shape this
follows, it is fed the endpointer's view after each VAD window.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)


class TurnModel(Protocol):
    """An end-of-turn model shared by a server's calls (:class:`SmartTurnModel`)."""

    async def probability_async(self, pcm16: npt.NDArray[np.int16]) -> float:
        """Probability that the utterance (16 kHz mono samples, ending now) is finished."""
        ...


@dataclass
class _Check:
    speech_start_s: float
    pause_start_s: float
    task: asyncio.Task[None]


class EndOfTurnCheck:
    """At most one end-of-turn model check under way for one call.

    Args:
        predict: ``predict(speech_start_s, pause_start_s)`` returns the model's
            probability that the caller has finished, for that utterance (the
            audio from its start to now).
        on_complete: ``on_complete(speech_start_s, pause_start_s, probability)``,
            called on the event loop when the model says the turn is complete.
        check_after_s: pause length after which the model is asked (seconds).
        threshold: probability above which the turn is complete.
    """

    def __init__(
        self,
        predict: Callable[[float, float], Awaitable[float]],
        on_complete: Callable[[float, float, float], None],
        *,
        check_after_s: float,
        threshold: float = 0.5,
    ) -> None:
        self._predict = predict
        self._on_complete = on_complete
        self.check_after_s = check_after_s
        self.threshold = threshold
        self._check: _Check | None = None
        self._checked_pause: tuple[float, float] | None = None
        self.checks = 0
        self.ended_early = 0
        self.last_probability: float | None = None

    def observe(
        self, speech_start_s: float | None, pause_start_s: float | None, now_s: float
    ) -> None:
        """Feed the endpointer's view after each VAD window (stream seconds)."""
        check = self._check
        if check is not None and (
            speech_start_s != check.speech_start_s or pause_start_s != check.pause_start_s
        ):
            self.cancel()  # rule 3
        if speech_start_s is None or pause_start_s is None or self._check is not None:
            return
        pause = (speech_start_s, pause_start_s)
        if pause == self._checked_pause or now_s - pause_start_s < self.check_after_s:
            return
        self._checked_pause = pause
        self.checks += 1
        task = asyncio.ensure_future(self._run(speech_start_s, pause_start_s))
        self._check = _Check(speech_start_s, pause_start_s, task)

    async def _run(self, speech_start_s: float, pause_start_s: float) -> None:
        try:
            probability = await self._predict(speech_start_s, pause_start_s)
        except asyncio.CancelledError:
            raise
        except Exception:  # task boundary: the endpointing window still ends the turn
            log.exception("end-of-turn model failed; the endpointing window decides")
            self._check = None
            return
        self._check = None
        self.last_probability = probability
        if probability > self.threshold:
            self.ended_early += 1
            self._on_complete(speech_start_s, pause_start_s, probability)

    def cancel(self) -> None:
        """Drop the check under way, if any."""
        if self._check is not None:
            self._check.task.cancel()
            self._check = None
