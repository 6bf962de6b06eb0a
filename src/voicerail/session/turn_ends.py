"""Where a caller's turn starts and ends: VAD scores through the endpointer, the
speculative transcript and the end-of-turn model, to the turn-taking policy.

Rules:

1. Every VAD score goes through the call's endpointer (``audio/endpointing.py``);
   a speech start records ``UserTurnStarted``, and each start or end is handed to
   the turn-taking policy, whose actions the call executes.
2. A turn ends by the endpointing window ("silence") or earlier by the end-of-turn
   model ("model", ``session/end_of_turn.py``); :attr:`TurnEnds.last_end` keeps
   how, for the turn's ``UserTurnEnded``.
3. The model's answer ends the turn only if the caller has not spoken again and
   the VAD is no more than ``VAD_BEHIND_S`` behind the received audio: under load
   unscored audio may hold the caller's next words (this had split "next Tuesday |
   at three" into two turns).
4. The speculative transcript (``session/speculation.py``) starts on a pause of
   ``speculative_stt_after_s`` (or the model's check time when sooner, so a turn
   the model ends finds its transcript under way), never when the server is busy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from voicerail.audio import endpointing
from voicerail.events.model import EventKind, Stage
from voicerail.session.end_of_turn import EndOfTurnCheck
from voicerail.session.speculation import SpeculativeSTT
from voicerail.session.speech_io import SpeechToTextResult
from voicerail.turns import policy as tp

if TYPE_CHECKING:
    from voicerail.session.driver import CallSession

#: How far the VAD may lag the received audio (a window, a frame and some batching)
#: for an end-of-turn model's answer still to end the turn early, seconds.
VAD_BEHIND_S = 0.1


class TurnEnds:
    """Turns one call's VAD scores into turn starts and ends (rules 1 to 4).

    Args:
        call: the call; its inbound audio holds the endpointer and the audio, its
            dialog jobs transcribe a speculative span, its policy gets the changes.

    Attributes:
        speculation: the speculative STT, or None when off.
        end_of_turn: the end-of-turn model check, or None when off.
        last_end: how the last turn end was decided: ``"silence"`` or ``"model"``,
            the wait from the end of speech (stream seconds) and the model's
            probability (None for silence).
        turn_model_s: the last model check's compute time on the call's clock,
            seconds, or None since the last turn end reported it.
    """

    def __init__(self, call: CallSession) -> None:
        self.call = call
        self._clock = call.rt.clock
        runtime, cfg = call.rt, call.rt.audio
        self.speculation: SpeculativeSTT[SpeechToTextResult] | None = None
        model_after_s = cfg.turn_check_after_s if runtime.turn_model is not None else None
        if cfg.speculative_stt_after_s is not None:
            speculate_after_s = cfg.speculative_stt_after_s
            if model_after_s is not None:
                speculate_after_s = min(speculate_after_s, model_after_s)
            self.speculation = SpeculativeSTT(
                call._jobs.transcribe_span,
                after_s=speculate_after_s,
                allowed=lambda: not runtime.load.busy(),
            )
        self.end_of_turn: EndOfTurnCheck | None = None
        if model_after_s is not None:
            self.end_of_turn = EndOfTurnCheck(
                self._turn_probability, self._on_turn_complete, check_after_s=model_after_s
            )
        self.last_end: tuple[str, float, float | None] = ("silence", cfg.endpoint_silence_s, None)
        self.turn_model_s: float | None = None

    def cancel(self) -> None:
        """Stop the speculative transcript and the model check (the call ended)."""
        if self.speculation is not None:
            self.speculation.cancel()
        if self.end_of_turn is not None:
            self.end_of_turn.cancel()

    def receive_probabilities(self, probabilities: Sequence[float], now: float) -> None:
        """Feed VAD speech probabilities (0..1, one per VAD window, in order) that
        arrived at ``now`` (the call's monotonic clock, seconds)."""
        call = self.call
        endpointer = call._inbound.endpointer
        for probability in probabilities:
            for change in endpointer.process(probability):
                if isinstance(change, endpointing.SpeechStarted):
                    call._emit(EventKind.USER_TURN_STARTED, Stage.VAD, data={"at_s": change.at_s})
                    call._apply_now(call.turns.handle(tp.SpeechStarted(), now))
                else:
                    self.last_end = ("silence", change.at_s - change.speech_end_s, None)
                    event = tp.SpeechEnded(change.speech_start_s, change.speech_end_s)
                    call._apply_now(call.turns.handle(event, now))
            if self.speculation is not None:
                self.speculation.observe(
                    endpointer.speech_start_s, endpointer.pause_start_s, endpointer.now_s
                )
            if self.end_of_turn is not None:
                self.end_of_turn.observe(
                    endpointer.speech_start_s, endpointer.pause_start_s, endpointer.now_s
                )

    async def _turn_probability(self, speech_start_s: float, pause_start_s: float) -> float:
        """The end-of-turn model's view of the utterance from its start to now."""
        turn_model = self.call.rt.turn_model
        assert turn_model is not None
        started = self._clock.monotonic()
        start_s = max(0.0, speech_start_s - self.call.rt.audio.preroll_s)
        pcm16k = self.call._inbound.pcm16k(start_s)
        probability = await turn_model.probability_async(np.frombuffer(pcm16k, dtype="<i2"))
        self.turn_model_s = self._clock.monotonic() - started
        return probability

    def _on_turn_complete(
        self, speech_start_s: float, pause_start_s: float, probability: float
    ) -> None:
        """The model says the caller finished: end the turn where the pause began."""
        call = self.call
        endpointer = call._inbound.endpointer
        if endpointer.speech_start_s != speech_start_s or endpointer.pause_start_s != pause_start_s:
            return  # the caller spoke again, or the window already ended the turn
        if call._inbound.received_s - endpointer.now_s > VAD_BEHIND_S:
            return  # unscored audio may hold the caller's next words (rule 3)
        change = endpointer.end_now()
        if change is None or call._done.is_set():
            return
        self.last_end = ("model", change.at_s - change.speech_end_s, probability)
        event = tp.SpeechEnded(change.speech_start_s, change.speech_end_s)
        call._apply_now(call.turns.handle(event, self._clock.monotonic()))
