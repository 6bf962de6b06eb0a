"""When a call may be carried on by a new stream, and how the stream claims it (pure rules)."""

from __future__ import annotations

from voicerail.state.resume import (
    MAX_RESUMES,
    RESUME_PARAMETER,
    claim,
    recap_turn_index,
    resumable,
    stream_parameters,
)
from voicerail.state.session import SessionState, TurnRecord


def live() -> SessionState:
    return SessionState("vr_1", version=3, call_sid="CA1", worker="h:1:1", dialog={"node": "book"})


def test_a_live_dialog_is_resumable_and_nothing_else_is():
    state = live()
    assert resumable(state)
    assert not resumable(None)
    ended = SessionState("vr_1", dialog={"node": "more", "ended": True})
    assert not resumable(ended)
    handed_off = SessionState("vr_1", dialog={"node": "book"}, outcome="handoff")
    assert not resumable(handed_off)


def test_a_booked_call_still_talking_is_resumable():
    """Outcome 'completed' is written once a booking exists; the call may go on."""
    assert resumable(SessionState("vr_1", dialog={"node": "more"}, outcome="completed"))


def test_a_call_resumed_max_times_is_not_resumed_again():
    state = SessionState("vr_1", dialog={"node": "book"}, resumes=MAX_RESUMES - 1)
    assert resumable(state)
    assert not resumable(claim(state, "h:2:2", 1.0))


def test_a_claim_is_the_next_version_under_the_new_worker():
    state = live()
    claimed = claim(state, "h:2:2", 1234.5)
    assert (claimed.version, claimed.worker, claimed.resumes) == (4, "h:2:2", 1)
    assert claimed.updated_at == 1234.5 and claimed.dialog == state.dialog


def test_stream_parameters_repeat_the_webhooks_and_number_the_stream():
    form = {"CallSid": "CA1", "From": "+15550100", "To": "+15550199", "AccountSid": "AC1"}
    params = stream_parameters(form, resumes=0)
    expected = {"callsid": "CA1", "from": "+15550100", "to": "+15550199", RESUME_PARAMETER: "2"}
    assert params == expected


def test_the_greeting_is_not_a_caller_turn():
    turns = tuple(TurnRecord(i, "", "x", "x") for i in range(3))
    assert recap_turn_index(SessionState("vr_1", turns=turns)) == 2
    assert recap_turn_index(SessionState("vr_1")) == 0
