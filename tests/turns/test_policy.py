"""Turn-taking policy on a fake clock: no event loop, no audio."""

import pytest

from voicerail.turns import policy as tp

CONFIG = tp.TurnConfig(barge_in_s=0.5, reprompt_after_s=5.0, hangup_after_s=12.0)


def listening_at(now_s: float) -> tp.TurnTaking:
    """A call whose greeting was heard, listening from ``now_s``."""
    turns = tp.TurnTaking(CONFIG, 0.0)
    turns.handle(tp.AgentStartedSpeaking(), 0.0)
    turns.handle(tp.AgentFinishedSpeaking(), now_s)
    assert turns.phase is tp.TurnState.LISTENING
    return turns


def test_call_starts_with_the_agent_preparing_its_greeting():
    assert tp.TurnTaking(CONFIG, 0.0).phase is tp.TurnState.AGENT_THINKING


def test_caller_turn_ends_with_end_user_turn_carrying_audio_times():
    turns = listening_at(1.0)
    assert turns.handle(tp.SpeechStarted(), 2.0) == []
    assert turns.phase is tp.TurnState.USER_SPEAKING
    actions = turns.handle(tp.SpeechEnded(speech_start_s=1.9, speech_end_s=3.1), 3.6)
    assert actions == [tp.EndUserTurn(1.9, 3.1)]
    assert turns.phase is tp.TurnState.AGENT_THINKING


def test_barge_in_after_configured_speech_over_agent():
    turns = listening_at(1.0)
    turns.handle(tp.SpeechStarted(), 2.0)
    turns.handle(tp.SpeechEnded(1.9, 3.0), 3.5)
    turns.handle(tp.AgentStartedSpeaking(), 4.0)
    turns.handle(tp.SpeechStarted(), 5.0)
    assert turns.handle(tp.Tick(), 5.4) == []  # 0.4 s < 0.5 s: not yet
    assert turns.handle(tp.Tick(), 5.5) == [tp.BargeIn()]
    assert turns.phase is tp.TurnState.USER_SPEAKING
    actions = turns.handle(tp.SpeechEnded(4.9, 6.0), 6.5)
    assert actions == [tp.EndUserTurn(4.9, 6.0)]


def test_backchannel_shorter_than_barge_in_window_does_not_interrupt():
    turns = listening_at(1.0)
    turns.handle(tp.SpeechStarted(), 2.0)
    turns.handle(tp.SpeechEnded(1.9, 3.0), 3.5)
    turns.handle(tp.AgentStartedSpeaking(), 4.0)
    turns.handle(tp.SpeechStarted(), 5.0)
    assert turns.handle(tp.Tick(), 5.3) == []
    assert turns.handle(tp.SpeechEnded(4.9, 5.3), 5.35) == []
    assert turns.handle(tp.Tick(), 6.0) == []
    assert turns.phase is tp.TurnState.AGENT_SPEAKING


def test_silence_reprompts_then_hangs_up_politely():
    turns = listening_at(10.0)
    assert turns.handle(tp.Tick(), 14.9) == []
    assert turns.handle(tp.Tick(), 15.0) == [tp.Reprompt(1)]
    turns.handle(tp.AgentStartedSpeaking(), 15.5)
    turns.handle(tp.AgentFinishedSpeaking(), 17.0)
    assert turns.handle(tp.Tick(), 21.9) == []
    assert turns.handle(tp.Tick(), 22.0) == [tp.EndCall("silence")]
    assert turns.phase is tp.TurnState.ENDED
    assert turns.handle(tp.SpeechStarted(), 23.0) == []


def test_second_reprompt_counts_up_when_hangup_is_far():
    config = tp.TurnConfig(barge_in_s=0.5, reprompt_after_s=2.0, hangup_after_s=30.0)
    turns = tp.TurnTaking(config, 0.0)
    turns.handle(tp.AgentStartedSpeaking(), 0.0)
    turns.handle(tp.AgentFinishedSpeaking(), 1.0)
    assert turns.handle(tp.Tick(), 3.0) == [tp.Reprompt(1)]
    turns.handle(tp.AgentStartedSpeaking(), 3.2)
    turns.handle(tp.AgentFinishedSpeaking(), 4.0)
    assert turns.handle(tp.Tick(), 6.0) == [tp.Reprompt(2)]


def test_caller_speech_resets_the_silence_count():
    turns = listening_at(0.0)
    assert turns.handle(tp.Tick(), 5.0) == [tp.Reprompt(1)]
    turns.handle(tp.AgentStartedSpeaking(), 5.1)
    turns.handle(tp.SpeechStarted(), 5.5)
    turns.handle(tp.AgentFinishedSpeaking(), 6.0)
    turns.handle(tp.SpeechEnded(5.4, 6.5), 7.0)
    turns.handle(tp.AgentStartedSpeaking(), 8.0)
    turns.handle(tp.AgentFinishedSpeaking(), 9.0)
    assert turns.state.reprompts == 0
    assert turns.handle(tp.Tick(), 13.9) == []
    assert turns.handle(tp.Tick(), 14.0) == [tp.Reprompt(1)]


def test_agent_reply_time_is_not_counted_as_caller_silence():
    turns = listening_at(0.0)
    turns.handle(tp.SpeechStarted(), 1.0)
    turns.handle(tp.SpeechEnded(0.9, 2.0), 2.5)
    turns.handle(tp.AgentStartedSpeaking(), 3.0)
    turns.handle(tp.AgentFinishedSpeaking(), 13.0)  # a 10 s reply
    assert turns.handle(tp.Tick(), 17.9) == []
    assert turns.handle(tp.Tick(), 18.0) == [tp.Reprompt(1)]


def test_speech_while_thinking_cancels_the_reply():
    turns = listening_at(0.0)
    turns.handle(tp.SpeechStarted(), 1.0)
    turns.handle(tp.SpeechEnded(0.9, 2.0), 2.5)
    assert turns.handle(tp.SpeechStarted(), 2.7) == [tp.CancelReply()]
    assert turns.phase is tp.TurnState.USER_SPEAKING


def test_dtmf_reaches_dialog_and_interrupts_agent_speech():
    turns = listening_at(0.0)
    assert turns.handle(tp.DtmfPressed("5"), 1.0) == [tp.DeliverDtmf("5")]
    turns.handle(tp.AgentStartedSpeaking(), 1.5)
    assert turns.handle(tp.DtmfPressed("0"), 2.0) == [tp.BargeIn(), tp.DeliverDtmf("0")]


def test_empty_transcript_returns_the_floor_to_the_caller():
    turns = listening_at(0.0)
    turns.handle(tp.SpeechStarted(), 1.0)
    turns.handle(tp.SpeechEnded(0.9, 1.3), 1.8)
    assert turns.handle(tp.TurnDiscarded(), 2.5) == []
    assert turns.phase is tp.TurnState.LISTENING


def test_hangup_ends_from_any_phase():
    turns = listening_at(0.0)
    turns.handle(tp.SpeechStarted(), 1.0)
    assert turns.handle(tp.CallerHungUp(), 1.5) == [tp.EndCall("hangup")]
    assert turns.phase is tp.TurnState.ENDED


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"barge_in_s": 0.0}, "positive"),
        ({"reprompt_after_s": 10.0, "hangup_after_s": 5.0}, "must exceed"),
    ],
)
def test_bad_timings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tp.TurnConfig(**kwargs)
