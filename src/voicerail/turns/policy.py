"""The turn-taking policy: ``decide(state, event, now_s) -> (state, actions)``.

Rules this module keeps (everything that changes who has the floor lives here):

1. Four phases: LISTENING, USER_SPEAKING, AGENT_THINKING, AGENT_SPEAKING, and
   ENDED, which absorbs every event.
2. The caller's speech is reported already debounced by the endpointer
   (``SpeechStarted`` after a minimum of voiced audio, ``SpeechEnded`` after the
   endpointing silence window). This policy never looks at audio.
3. Barge-in: caller speech that lasts ``barge_in_s`` while the agent speaks
   takes the floor (action :class:`BargeIn`: the driver sends ``clear``, stops
   synthesis and keeps only what the caller heard). Shorter speech — a
   backchannel such as "mm-hm" — is ignored and the agent keeps talking.
4. Silence: ``reprompt_after_s`` of listening without caller speech asks
   again (:class:`Reprompt`); ``hangup_after_s`` of caller silence in total,
   counted from the first silent listening moment (the agent's reply does not count
   as caller silence) and across reprompts, ends the
   call politely (:class:`EndCall` with reason ``"silence"``).
5. Caller speech while the agent is still thinking cancels the pending reply:
   the caller had not finished (:class:`CancelReply`); the driver merges the
   transcripts of both utterances into one turn.
6. DTMF digits always reach the dialog; while the agent speaks they also
   barge in, as a keypress during a prompt does on an IVR.
7. Time is the driver's monotonic clock in seconds, passed in as ``now_s``.

The state is an immutable value; :class:`TurnTaking` is a small convenience
holder for drivers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum


class TurnState(StrEnum):
    """Who has the floor."""

    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    AGENT_THINKING = "agent_thinking"
    AGENT_SPEAKING = "agent_speaking"
    ENDED = "ended"


@dataclass(frozen=True)
class TurnConfig:
    """Timing policy, in seconds.

    Attributes:
        barge_in_s: caller speech over the agent that interrupts it.
        reprompt_after_s: listening time without caller speech before a reprompt.
        hangup_after_s: total caller silence that ends the call.
    """

    barge_in_s: float = 0.6
    reprompt_after_s: float = 7.0
    hangup_after_s: float = 20.0

    def __post_init__(self) -> None:
        if min(self.barge_in_s, self.reprompt_after_s, self.hangup_after_s) <= 0:
            raise ValueError("turn timings must be positive seconds")
        if self.hangup_after_s <= self.reprompt_after_s:
            raise ValueError(
                f"hangup_after_s ({self.hangup_after_s}) must exceed "
                f"reprompt_after_s ({self.reprompt_after_s})"
            )


# --- events (inputs) ---------------------------------------------------------


@dataclass(frozen=True)
class SpeechStarted:
    """The endpointer heard the caller start speaking."""


@dataclass(frozen=True)
class SpeechEnded:
    """The endpointer decided the caller stopped (silence window passed).

    Attributes:
        speech_start_s: start of the utterance, audio-stream seconds.
        speech_end_s: end of the voiced audio, audio-stream seconds.
    """

    speech_start_s: float
    speech_end_s: float


@dataclass(frozen=True)
class AgentStartedSpeaking:
    """The driver sent the first audio of a reply."""


@dataclass(frozen=True)
class AgentFinishedSpeaking:
    """Every mark of the reply came back: the caller heard all of it."""


@dataclass(frozen=True)
class TurnDiscarded:
    """The utterance had no words (noise, cough): nothing to answer."""


@dataclass(frozen=True)
class DtmfPressed:
    """The caller pressed a key."""

    digit: str


@dataclass(frozen=True)
class CallerHungUp:
    """The stream stopped."""


@dataclass(frozen=True)
class Tick:
    """Time passed (the driver ticks every audio frame or so)."""


TurnEvent = (
    SpeechStarted
    | SpeechEnded
    | AgentStartedSpeaking
    | AgentFinishedSpeaking
    | TurnDiscarded
    | DtmfPressed
    | CallerHungUp
    | Tick
)

# --- actions (outputs) -------------------------------------------------------


@dataclass(frozen=True)
class EndUserTurn:
    """Transcribe the utterance between the two audio-stream times and answer it."""

    speech_start_s: float
    speech_end_s: float


@dataclass(frozen=True)
class BargeIn:
    """Stop the agent: send ``clear``, cancel synthesis, keep only what was heard."""


@dataclass(frozen=True)
class CancelReply:
    """Drop the reply being prepared: the caller is still talking."""


@dataclass(frozen=True)
class Reprompt:
    """Ask again after silence; ``count`` is 1 for the first reprompt in a row."""

    count: int


@dataclass(frozen=True)
class DeliverDtmf:
    """Hand a keypad digit to the dialog."""

    digit: str


@dataclass(frozen=True)
class EndCall:
    """End the call; ``reason`` is ``"silence"`` or ``"hangup"``."""

    reason: str


Action = EndUserTurn | BargeIn | CancelReply | Reprompt | DeliverDtmf | EndCall


@dataclass(frozen=True)
class TurnSnapshot:
    """The policy's whole state.

    Attributes:
        phase: who has the floor.
        caller_speaking: the endpointer is inside caller speech.
        speech_started_at_s: when the current caller speech started (driver clock).
        listening_since_s: when the current LISTENING phase started.
        quiet_since_s: start of the current unbroken caller silence, or None.
        reprompts: reprompts in a row without caller speech.
    """

    phase: TurnState = TurnState.LISTENING
    caller_speaking: bool = False
    speech_started_at_s: float | None = None
    listening_since_s: float = 0.0
    quiet_since_s: float | None = 0.0
    reprompts: int = 0


def initial_state(now_s: float) -> TurnSnapshot:
    """The state of a new call whose greeting is about to be prepared."""
    return TurnSnapshot(phase=TurnState.AGENT_THINKING, listening_since_s=now_s, quiet_since_s=None)


def decide(
    state: TurnSnapshot, event: TurnEvent, now_s: float, config: TurnConfig
) -> tuple[TurnSnapshot, list[Action]]:
    """Apply one event; return the new state and the actions for the driver."""
    if state.phase is TurnState.ENDED:
        return state, []
    if isinstance(event, CallerHungUp):
        return replace(state, phase=TurnState.ENDED), [EndCall("hangup")]
    if isinstance(event, SpeechStarted):
        return _on_speech_started(state, now_s)
    if isinstance(event, SpeechEnded):
        return _on_speech_ended(state, event, now_s)
    if isinstance(event, DtmfPressed):
        return _on_dtmf(state, event, now_s)
    if isinstance(event, Tick):
        return _on_tick(state, now_s, config)
    return _on_agent_event(state, event, now_s)


def _listening(state: TurnSnapshot, now_s: float) -> TurnSnapshot:
    quiet = state.quiet_since_s
    if quiet is None and not state.caller_speaking:
        quiet = now_s
    return replace(state, phase=TurnState.LISTENING, listening_since_s=now_s, quiet_since_s=quiet)


def _on_speech_started(state: TurnSnapshot, now_s: float) -> tuple[TurnSnapshot, list[Action]]:
    speaking = replace(
        state, caller_speaking=True, speech_started_at_s=now_s, quiet_since_s=None, reprompts=0
    )
    if state.phase is TurnState.LISTENING:
        return replace(speaking, phase=TurnState.USER_SPEAKING), []
    if state.phase is TurnState.AGENT_THINKING:
        return replace(speaking, phase=TurnState.USER_SPEAKING), [CancelReply()]
    # USER_SPEAKING cannot restart; AGENT_SPEAKING waits for barge_in_s on Tick.
    return speaking, []


def _on_speech_ended(
    state: TurnSnapshot, event: SpeechEnded, now_s: float
) -> tuple[TurnSnapshot, list[Action]]:
    # Caller silence is counted from the next LISTENING phase, not while the agent answers.
    ended = replace(state, caller_speaking=False, speech_started_at_s=None, quiet_since_s=None)
    if state.phase is TurnState.USER_SPEAKING:
        turn = EndUserTurn(event.speech_start_s, event.speech_end_s)
        return replace(ended, phase=TurnState.AGENT_THINKING), [turn]
    # A backchannel under the agent's speech, or speech that ended while thinking.
    return ended, []


def _on_dtmf(
    state: TurnSnapshot, event: DtmfPressed, now_s: float
) -> tuple[TurnSnapshot, list[Action]]:
    actions: list[Action] = []
    if state.phase is TurnState.AGENT_SPEAKING:
        actions.append(BargeIn())
    elif state.phase is TurnState.AGENT_THINKING:
        actions.append(CancelReply())
    actions.append(DeliverDtmf(event.digit))
    new = replace(state, phase=TurnState.AGENT_THINKING, quiet_since_s=None, reprompts=0)
    return new, actions


def _on_tick(
    state: TurnSnapshot, now_s: float, config: TurnConfig
) -> tuple[TurnSnapshot, list[Action]]:
    if state.phase is TurnState.AGENT_SPEAKING and state.caller_speaking:
        started = state.speech_started_at_s if state.speech_started_at_s is not None else now_s
        if now_s - started >= config.barge_in_s:
            return replace(state, phase=TurnState.USER_SPEAKING), [BargeIn()]
        return state, []
    if state.phase is not TurnState.LISTENING or state.quiet_since_s is None:
        return state, []
    if now_s - state.quiet_since_s >= config.hangup_after_s:
        return replace(state, phase=TurnState.ENDED), [EndCall("silence")]
    if now_s - state.listening_since_s >= config.reprompt_after_s:
        count = state.reprompts + 1
        return replace(state, phase=TurnState.AGENT_THINKING, reprompts=count), [Reprompt(count)]
    return state, []


def _on_agent_event(
    state: TurnSnapshot,
    event: AgentStartedSpeaking | AgentFinishedSpeaking | TurnDiscarded,
    now_s: float,
) -> tuple[TurnSnapshot, list[Action]]:
    if isinstance(event, AgentStartedSpeaking):
        if state.phase is TurnState.AGENT_THINKING:
            return replace(state, phase=TurnState.AGENT_SPEAKING), []
        return state, []
    # AgentFinishedSpeaking or TurnDiscarded: the floor returns to the caller.
    if state.phase in (TurnState.AGENT_SPEAKING, TurnState.AGENT_THINKING):
        if state.caller_speaking:
            return replace(state, phase=TurnState.USER_SPEAKING), []
        return _listening(state, now_s), []
    return state, []


class TurnTaking:
    """Holds a :class:`TurnSnapshot` for a driver; all decisions are :func:`decide`'s.

    Args:
        config: timing policy.
        now_s: driver clock at call start.
    """

    def __init__(self, config: TurnConfig, now_s: float) -> None:
        self.config = config
        self.state = initial_state(now_s)

    @property
    def phase(self) -> TurnState:
        """Who has the floor now."""
        return self.state.phase

    def handle(self, event: TurnEvent, now_s: float) -> list[Action]:
        """Apply ``event`` at ``now_s`` and return the actions to execute."""
        self.state, actions = decide(self.state, event, now_s, self.config)
        return actions
