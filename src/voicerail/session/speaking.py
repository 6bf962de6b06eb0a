"""Speaking a reply: sentences to audio to the playout, what the caller heard, the
holding phrase and barge-in.

Rules:

1. A reply is split into sentences (``session/text.py``); each is synthesized
   (``session/speech_io.py``), queued in the playout under the current playback
   generation and followed by a mark ``r{reply}.s{sentence}``, unique per call.
2. :meth:`Speaker.speak` returns once every mark of the reply came back (the
   caller heard it all), then tells the turn-taking policy the agent finished.
   A sentence no TTS could speak is skipped and recorded; the rest is spoken.
3. The first audio of a reply records ``TTSFirstAudio`` (time from the turn end)
   and tells the policy the agent started speaking.
4. A barge-in drops the reply (a new playback generation and ``clear``) and tells
   the dialog and the state recorder the words the caller heard
   (``session/playback.py``).
5. The holding phrase plays once when a turn's reply has not started after
   ``holding_after_s`` and nothing else is playing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from voicerail.dialog.base import AgentReply
from voicerail.errors import ProviderError
from voicerail.events.model import EventKind, Stage
from voicerail.providers.base import closing_stream
from voicerail.session.phrase_cache import HOLDING_PHRASE
from voicerail.session.playback import PlaybackTracker
from voicerail.session.speech_io import synthesize_ulaw
from voicerail.session.text import split_for_speech
from voicerail.turns import policy as tp
from voicerail.wire.transport import CALL_RATE_HZ

if TYPE_CHECKING:
    from voicerail.session.driver import CallSession

log = logging.getLogger(__name__)


class Speaker:
    """Speaks one call's replies and follows what the caller heard.

    Args:
        call: the call it speaks for; its playout carries the audio, its events
            and turn-taking policy record and hear what happened.

    Attributes:
        playback: the reply being played, or None after a barge-in or before the first.
        playback_done: set when every mark of the current reply came back.
        reply_index: replies spoken so far (mark names ``r{reply}.s{sentence}``).
        holding: the armed holding phrase's task, or None.
    """

    def __init__(self, call: CallSession) -> None:
        self.call = call
        self._clock = call.rt.clock
        self.playback: PlaybackTracker | None = None
        self.playback_done = asyncio.Event()
        self.reply_index = 0
        self.holding: asyncio.Task[None] | None = None

    def cancel_holding(self) -> None:
        """Drop the holding phrase if it is still armed."""
        if self.holding is not None:
            self.holding.cancel()
            self.holding = None

    def on_mark(self, name: str, now: float) -> None:
        """Record a mark echo at ``now`` (monotonic seconds): ``MarkPlayed``, and
        the end of the reply's playback when it was its last mark."""
        tracker = self.playback
        segment = tracker.on_mark(name, now) if tracker is not None else None
        self.call._emit(
            EventKind.MARK_PLAYED,
            Stage.TELEPHONY,
            data={"mark": name, "current": segment is not None},
        )
        if tracker is not None and tracker.all_heard:
            self.playback_done.set()

    def arm_holding_phrase(self) -> None:
        """Play the holding phrase if this turn's reply is late (``holding_after_s``)."""
        after_s = self.call.rt.audio.holding_after_s
        if after_s is None or self.call.rt.phrases is None:
            return
        audio = self.call.rt.phrases.get_quietly(HOLDING_PHRASE)
        if audio is None:
            return
        turn_ended_at_s = self.call._turn_ended_at_s

        async def hold() -> None:
            await self._clock.sleep(after_s)
            self.holding = None
            if self.call._turn_ended_at_s != turn_ended_at_s or not self.call._playout.sending:
                return  # the reply started, or another turn began
            generation = self.call._playout.generation
            self.call._playout.queue_audio(generation, audio)
            self.call._playout.queue_mark(generation, f"hold{self.call._turn_index}")
            self.call._emit(
                EventKind.HOLDING_PHRASE_PLAYED, Stage.TTS, data={"turn": self.call._turn_index}
            )

        self.holding = asyncio.get_running_loop().create_task(hold())

    async def barge_in(self) -> None:
        """The caller spoke over the agent: drop the job and the queued audio
        (``clear``), tell the dialog and the state recorder what was heard,
        record ``BargeIn`` (rule 4)."""
        now = self._clock.monotonic()
        tracker, self.playback = self.playback, None
        self.call._cancel_job()
        await self.call._playout.cut()
        heard = tracker.heard_text(now) if tracker is not None else ""
        full = tracker.full_text if tracker is not None else ""
        self.call.dialog.on_agent_heard(heard, full)
        if self.call._recorder is not None:
            self.call._recorder.heard(heard)
        self.call._emit(
            EventKind.BARGE_IN,
            Stage.TELEPHONY,
            data={"heard_words": len(heard.split()), "full_words": len(full.split())},
            pii={"heard_text": heard, "full_text": full},
        )

    async def speak(self, reply: AgentReply, *, end_reason: str | None = None) -> None:
        """Synthesize ``reply`` sentence by sentence, queue it, wait until heard."""
        now = self._clock.monotonic()
        tracker = PlaybackTracker(now)
        self.playback = tracker
        self.playback_done = asyncio.Event()
        generation = self.call._playout.generation
        self.reply_index += 1
        first_audio = True
        phrases = self.call.rt.phrases
        texts = split_for_speech(
            reply.text,
            self.call.rt.audio.first_clause_min_words,
            ready=(lambda sentence: sentence in phrases)
            if phrases is not None
            else lambda s: False,
        )
        for index, sentence in enumerate(texts):
            started = self._clock.monotonic()
            num_bytes = 0
            try:
                pieces = synthesize_ulaw(sentence, self.call.tts, self.call.rt.phrases)
                async with closing_stream(pieces):
                    async for frames in pieces:
                        if first_audio:
                            first_audio = False
                            self._on_first_audio(started)
                        self.call._playout.queue_audio(generation, frames)
                        num_bytes += len(frames)
            except ProviderError as exc:
                # No TTS could speak this sentence: the call goes on without it
                # (an accepted call is never failed by a provider); the caller
                # hears the rest of the reply, and the event says what was lost.
                self.call._emit(
                    EventKind.PROVIDER_ATTEMPTED,
                    Stage.TTS,
                    provider=exc.provider,
                    outcome="error",
                    error_class=str(exc.error_class),
                    data={"error": str(exc), "sentence_skipped": index},
                )
                log.warning("call %s: sentence %d not spoken: %s", self.call.call_id, index, exc)
            mark = f"r{self.reply_index}.s{index}"
            tracker.add_segment(mark, sentence, num_bytes / CALL_RATE_HZ)
            self.call._playout.queue_mark(generation, mark)
        tracker.finished_queueing = True
        if tracker.all_heard:
            self.playback_done.set()
        await self.playback_done.wait()
        await self.call._apply(
            self.call.turns.handle(tp.AgentFinishedSpeaking(), self._clock.monotonic())
        )
        if end_reason is not None:
            self.call._end(end_reason, close_code=1000)
        elif reply.end_call:
            self.call._end("agent", close_code=1000)
        elif reply.data.get("pci") == "twilio_pay":  # compliance/pay_http.py: the call goes
            self.call.take_over()  # to Twilio's <Pay> and comes back to a new stream

    def _on_first_audio(self, synth_started_s: float) -> None:
        now = self._clock.monotonic()
        self.call._unanswered_text = ""
        since_turn = (
            now - self.call._turn_ended_at_s if self.call._turn_ended_at_s is not None else None
        )
        self.call._emit(
            EventKind.TTS_FIRST_AUDIO,
            Stage.TTS,
            provider=self.call.tts.name,
            model=self.call.tts.model,
            latency_s=now - synth_started_s,
            data={"turn": self.call._turn_index, "since_turn_end_s": since_turn},
        )
        self.call._turn_ended_at_s = None
        self.call._turn_deadline_s = None  # later sentences play while they are synthesized
        self.call._apply_now(self.call.turns.handle(tp.AgentStartedSpeaking(), now))
