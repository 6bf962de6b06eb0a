"""When a call may be carried on by a new media stream, and how the new stream
takes it over. Pure: no I/O; ``session/resume.py`` does the reads and writes.

Twilio requests the ``<Connect action>`` URL whenever the stream ends without
the call ending: the WebSocket closed by the server, or dropped because the
worker died (https://www.twilio.com/docs/voice/twiml/connect, "action", 2026-11).
A caller who hangs up ends the call, and Twilio requests nothing.

Rules:

1. A call is resumable when its state exists, its dialog has not ended (said
   goodbye or handed off), its outcome is not ``handoff``, and it was resumed
   fewer than ``MAX_RESUMES`` times (a call that breaks every worker it reaches
   must end rather than loop).
2. The action URL answers a resumable call with a fresh ``<Connect><Stream>``
   carrying the same parameters and ``resume`` (the stream number); any other
   call gets what it got before (a handoff's ``<Dial>``, else ``<Hangup>``).
3. Any stream whose CallSid names a resumable state carries that call on (same
   call id, dialog, turns, outcome, booking id), whether it has the ``resume``
   marker or not: Twilio sometimes opens a second stream for one call
   (twilio-labs/call-gpt #61).
4. The new stream *claims* the call by writing the next state version under its
   own worker; the store's version check makes exactly one claimant win, and the
   old stream's next write is refused, which stops it (``recorder.py`` rule 3).
"""

from __future__ import annotations

from voicerail.state.session import SessionState

#: The ``<Parameter>`` (``start.customParameters``) that marks a resumed stream.
RESUME_PARAMETER = "resume"
#: Rule 1: takeovers allowed per call.
MAX_RESUMES = 3
#: Outcomes after which a call is over whatever the dialog says.
_FINAL_OUTCOMES = frozenset({"handoff"})


def resumable(state: SessionState | None) -> bool:
    """Rule 1."""
    if state is None or state.resumes >= MAX_RESUMES:
        return False
    if state.outcome in _FINAL_OUTCOMES:
        return False
    return not state.dialog.get("ended", False)


def claim(state: SessionState, worker: str, wall_s: float) -> SessionState:
    """Rule 4: the state that makes ``worker`` the call's owner (next version).

    Args:
        state: the stored state.
        worker: the new stream's worker (``str(WorkerIdentity)``).
        wall_s: Unix time of the claim, seconds.
    """
    return state.next_version(worker=worker, resumes=state.resumes + 1, updated_at=wall_s)


def stream_parameters(form: dict[str, str], resumes: int) -> dict[str, str]:
    """Rule 2: the ``<Parameter>``s of the resumed stream, from the action request's
    form (Twilio's ``From``, ``To``, ``CallSid``), named as the voice webhook names
    them, with the ``resume`` marker: the number of the stream being opened (2
    for the first resume)."""
    params = {name.lower(): form[name] for name in ("From", "To", "CallSid") if form.get(name)}
    params[RESUME_PARAMETER] = str(resumes + 2)  # streams so far: resumes + 1
    return params


def recap_turn_index(state: SessionState) -> int:
    """The caller turns already taken: turn 0 is the greeting."""
    return max(0, len(state.turns) - 1)
