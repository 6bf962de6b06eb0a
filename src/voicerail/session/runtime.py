"""What every call of one server shares: providers, the VAD model, stores, timing policy."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from voicerail.clock import Clock, SystemClock
from voicerail.dialog.base import DialogFactory
from voicerail.events.store import EventStore
from voicerail.providers.base import SpeechToText, TextToSpeech
from voicerail.routing.router import Router
from voicerail.session.end_of_turn import TurnModel
from voicerail.session.load import LoadMonitor
from voicerail.session.phrase_cache import PhraseCache
from voicerail.state.session import StateStore
from voicerail.state.worker import WorkerIdentity, current_worker
from voicerail.turns.policy import TurnConfig

if TYPE_CHECKING:
    from voicerail.crm.service import CRMService

#: The call whose task is running: set by the driver for each call's tasks (they
#: inherit it), read by call-independent code that records per-call events, such
#: as TTS validation running in the background.
current_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "voicerail_call_id", default=None
)


@dataclass(frozen=True)
class AudioConfig:
    """Audio pipeline policy.

    Attributes:
        vad_threshold: Silero speech probability that counts as speech.
        min_speech_s: voiced audio needed before a turn starts.
        endpoint_silence_s: silence that ends a caller turn (the endpointing window).
        preroll_s: audio kept before the detected speech start and sent to STT.
        playback_lead_s: how far outbound audio may run ahead of real time; small so
            that ``clear`` drops little and marks stay close to what was heard.
        speculative_stt_after_s: start transcribing once a pause inside an utterance
            lasts this long, overlapping STT with the endpointing wait (None: off).
        turn_check_after_s: with an end-of-turn model (``Runtime.turn_model``), ask
            it once a pause has lasted this long, and end the turn there if it says
            the caller has finished; ``endpoint_silence_s`` then ends only the
            turns the model calls unfinished (None: no model check). Speculative
            STT then starts no later than this, so that a turn the model ends
            finds its transcript under way.
        first_clause_min_words: split a reply's first sentence at its first clause
            boundary when both sides have this many words, so that its first audio
            comes sooner (:func:`voicerail.session.text.split_for_speech`; None: off).
        frames_per_media: 20 ms frames sent per outbound ``media`` message when
            they are already queued (never across a mark). Twilio plays the bytes
            whatever their grouping; more per message costs the server less CPU
            per call (fewer sends and wake-ups), at the same lead.
        holding_after_s: when a reply has not started this long after the caller's
            turn ended (a slow provider, a loaded server), the cached holding
            phrase ("One moment, please.") is played once; None (the default):
            never. Off by default: a caller who hears "one moment" and then
            silence may start talking over the reply that follows.
    """

    vad_threshold: float = 0.5
    min_speech_s: float = 0.2
    endpoint_silence_s: float = 0.5
    preroll_s: float = 0.3
    playback_lead_s: float = 0.2
    speculative_stt_after_s: float | None = 0.3
    turn_check_after_s: float | None = 0.3
    first_clause_min_words: int | None = 3
    frames_per_media: int = 1
    holding_after_s: float | None = None


@dataclass
class Runtime:
    """Shared, call-independent parts. Nothing per-call lives here.

    Attributes:
        agent: builds one dialog per call.
        stt: speech-to-text for caller turns (s16le 16 kHz input).
        tts: text-to-speech for agent replies.
        events: the event store.
        vad_model: a shared ``SileroVADModel``, a ``SileroBatcher`` over one (windows
            of concurrent calls scored as one batch), or None for the energy VAD.
        turns: turn-taking timing.
        audio: audio pipeline policy.
        clock: the driver clock.
        router: when set, each call uses the router's STT and TTS chains (with
            failover) instead of ``stt`` and ``tts``.
        turn_budget_s: a caller turn's latency budget from its end, seconds; the
            router derives per-attempt deadlines from what is left of it.
        load: the server's live load and admission limits (``--max-calls``).
        phrases: the fixed sentences of the agent, synthesized once (None: off).
        crm: the CRM connector, outbox and relay (``crm/service.py``), when configured;
            the server runs its relay and reports its outbox on ``/metrics``.
        turn_model: an end-of-turn model (Smart Turn v3) that ends turns before the
            endpointing window when the caller has finished (None: the window alone).
        worker: this server process, written on each call's row (``state/worker.py``).
        state: where each call's state is written once per turn (``state/``), so
            another worker can carry the call on; None: nowhere.
    """

    agent: DialogFactory
    stt: SpeechToText
    tts: TextToSpeech
    events: EventStore
    vad_model: object | None = None
    turns: TurnConfig = field(default_factory=TurnConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    clock: Clock = field(default_factory=SystemClock)
    router: Router | None = None
    turn_budget_s: float = 2.5
    load: LoadMonitor = field(default_factory=LoadMonitor)
    phrases: PhraseCache | None = None
    crm: CRMService | None = None
    turn_model: TurnModel | None = None
    worker: WorkerIdentity = field(default_factory=current_worker)
    state: StateStore | None = None
