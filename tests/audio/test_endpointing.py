"""Endpointing on hand-made probability sequences: no audio, no clock."""

from __future__ import annotations

import pytest

from voicerail.audio.endpointing import Endpointer, SpeechChange, SpeechEnded, SpeechStarted

# Windows of 1/8 s keep every stream time exact in binary floating point.
W = 0.125
V, A, S = 0.9, 0.4, 0.1  # voiced, ambiguous (between 0.35 and 0.5), silent


def _endpointer(**kwargs: float) -> Endpointer:
    """3 voiced windows to start, 4 silent windows to end."""
    settings = {"min_speech_s": 3 * W, "silence_s": 4 * W, "window_s": W} | kwargs
    return Endpointer(**settings)


def _run(endpointer: Endpointer, probabilities: list[float]) -> list[tuple[int, SpeechChange]]:
    """Feed the sequence; return (window index, event) pairs."""
    return [
        (index, change)
        for index, probability in enumerate(probabilities)
        for change in endpointer.process(probability)
    ]


def test_silence_gives_no_event() -> None:
    """Nothing happens while nobody speaks."""
    endpointer = _endpointer()
    assert _run(endpointer, [S] * 50 + [A] * 50) == []
    assert not endpointer.in_speech


def test_speech_starts_after_min_speech_backdated_to_first_voiced_window() -> None:
    """The third voiced window starts speech; the start is the first one's."""
    assert _run(_endpointer(), [S, S, V, V, V, V]) == [
        (4, SpeechStarted(at_s=5 * W, speech_start_s=2 * W))
    ]


def test_short_blips_do_not_start_speech() -> None:
    """Voiced runs shorter than min_speech_s, broken by silence, are dropped."""
    blips = [V, V, S, V, S, V, V, S, S] * 5
    assert _run(_endpointer(), blips) == []


def test_ambiguous_windows_neither_break_nor_count_towards_a_start() -> None:
    """Dips between the two thresholds keep the run but do not add to it."""
    assert _run(_endpointer(), [V, A, V, A, A, V]) == [
        (5, SpeechStarted(at_s=6 * W, speech_start_s=0.0))
    ]


def test_speech_ends_after_silence_at_the_start_of_the_silence() -> None:
    """Four silent windows end the utterance, dated where the silence began."""
    events = _run(_endpointer(), [V, V, V, V, S, S, S, S, S])
    assert events == [
        (2, SpeechStarted(at_s=3 * W, speech_start_s=0.0)),
        (7, SpeechEnded(at_s=8 * W, speech_start_s=0.0, speech_end_s=4 * W)),
    ]


def test_short_pauses_do_not_end_speech() -> None:
    """Pauses shorter than silence_s are part of the utterance."""
    endpointer = _endpointer()
    events = _run(endpointer, [V, V, V] + [S, S, S, V] * 10)
    assert [type(change) for _, change in events] == [SpeechStarted]
    assert endpointer.in_speech


def test_voiced_window_restarts_the_silence_count() -> None:
    """After a voiced window the end is measured from the next silent window."""
    events = _run(_endpointer(), [V, V, V, S, S, S, V, S, S, S, S])
    assert events[-1] == (10, SpeechEnded(at_s=11 * W, speech_start_s=0.0, speech_end_s=7 * W))


def test_ambiguous_windows_continue_a_silence_but_never_begin_one() -> None:
    """As in Silero: only a silent window starts the end timer; dips then count."""
    assert _run(_endpointer(), [V, V, V] + [A] * 20) == [
        (2, SpeechStarted(at_s=3 * W, speech_start_s=0.0))
    ]
    events = _run(_endpointer(), [V, V, V, S, A, A, A])
    assert events[-1] == (6, SpeechEnded(at_s=7 * W, speech_start_s=0.0, speech_end_s=3 * W))


def test_second_utterance_uses_the_same_stream_clock() -> None:
    """Times keep counting windows across utterances."""
    events = _run(_endpointer(), [V, V, V, S, S, S, S, S, V, V, V, S, S, S, S])
    assert [change for _, change in events] == [
        SpeechStarted(at_s=3 * W, speech_start_s=0.0),
        SpeechEnded(at_s=7 * W, speech_start_s=0.0, speech_end_s=3 * W),
        SpeechStarted(at_s=11 * W, speech_start_s=8 * W),
        SpeechEnded(at_s=15 * W, speech_start_s=8 * W, speech_end_s=11 * W),
    ]


def test_state_properties_follow_the_stream() -> None:
    """in_speech, now_s and speech_duration_s describe the current run."""
    endpointer = _endpointer()
    _run(endpointer, [S, V, V])
    assert (endpointer.in_speech, endpointer.speech_duration_s, endpointer.now_s) == (
        False,
        0.0,
        3 * W,
    )
    _run(endpointer, [V, V])
    assert (endpointer.in_speech, endpointer.speech_duration_s) == (True, 4 * W)
    _run(endpointer, [S] * 4)
    assert (endpointer.in_speech, endpointer.speech_duration_s, endpointer.now_s) == (
        False,
        0.0,
        9 * W,
    )


def test_reset_forgets_speech_and_restarts_time() -> None:
    """After reset the stream clock is zero and no utterance is open."""
    endpointer = _endpointer()
    _run(endpointer, [V] * 5)
    endpointer.reset()
    assert (endpointer.in_speech, endpointer.now_s) == (False, 0.0)
    assert _run(endpointer, [V, V, V]) == [(2, SpeechStarted(at_s=3 * W, speech_start_s=0.0))]


def test_defaults_suit_silero_windows() -> None:
    """0.2 s takes 7 windows of 32 ms to start; 0.6 s takes 19 to end."""
    endpointer = Endpointer()
    events = _run(endpointer, [0.6] * 7 + [0.3] * 19)
    assert [index for index, _ in events] == [6, 25]
    started, ended = events[0][1], events[1][1]
    assert isinstance(started, SpeechStarted)
    assert (started.at_s, started.speech_start_s) == (pytest.approx(0.224), 0.0)
    assert isinstance(ended, SpeechEnded)
    assert (ended.at_s, ended.speech_start_s, ended.speech_end_s) == (
        pytest.approx(26 * 0.032),
        0.0,
        pytest.approx(0.224),
    )


def test_durations_that_are_exact_multiples_do_not_round_up() -> None:
    """0.64 s of 32 ms windows is 20 windows, not 21, despite float error."""
    endpointer = Endpointer(min_speech_s=0.064, silence_s=0.64, window_s=0.032)
    events = _run(endpointer, [0.9, 0.9] + [0.0] * 20)
    assert [index for index, _ in events] == [1, 21]


def test_zero_min_speech_starts_on_the_first_voiced_window() -> None:
    """With min_speech_s=0 one voiced window is enough."""
    assert _run(_endpointer(min_speech_s=0.0), [S, V]) == [
        (1, SpeechStarted(at_s=2 * W, speech_start_s=W))
    ]


def test_neg_threshold_defaults_like_silero() -> None:
    """threshold - 0.15, but never below 0.01; it can be given explicitly."""
    assert Endpointer(threshold=0.5).neg_threshold == pytest.approx(0.35)
    assert Endpointer(threshold=0.1).neg_threshold == 0.01
    assert Endpointer(threshold=0.6, neg_threshold=0.2).neg_threshold == 0.2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.0}, "got neg_threshold 0.01 and threshold 0.0"),
        ({"threshold": 1.5}, "got neg_threshold 1.35 and threshold 1.5"),
        ({"threshold": 0.5, "neg_threshold": 0.6}, "got neg_threshold 0.6 and threshold 0.5"),
        ({"window_s": 0.0}, "got 0.0, 0.6 and 0.2"),
        ({"silence_s": -1.0}, "got 0.032, -1.0 and 0.2"),
        ({"min_speech_s": -0.1}, "got 0.032, 0.6 and -0.1"),
    ],
)
def test_bad_settings_are_rejected(kwargs: dict[str, float], message: str) -> None:
    """Inconsistent thresholds and non-positive durations raise with the values."""
    with pytest.raises(ValueError, match=message):
        Endpointer(**kwargs)


def test_pause_start_is_reported_while_the_silence_window_runs():
    """A pause inside speech is visible before it becomes the end of the turn."""
    from voicerail.audio.endpointing import Endpointer, SpeechEnded

    endpointer = Endpointer(threshold=0.5, min_speech_s=0.064, silence_s=0.32, window_s=0.032)
    for _ in range(10):
        endpointer.process(0.9)
    assert endpointer.speech_start_s == 0.0 and endpointer.pause_start_s is None
    endpointer.process(0.0)
    endpointer.process(0.0)
    assert endpointer.pause_start_s == 10 * 0.032
    endpointer.process(0.9)  # speech resumes: no pause any more
    assert endpointer.pause_start_s is None
    changes = []
    for _ in range(12):
        changes += endpointer.process(0.0)
    [ended] = changes
    assert isinstance(ended, SpeechEnded)
    assert abs(ended.speech_end_s - 13 * 0.032) < 1e-9  # the last pause began at window 13
    assert endpointer.pause_start_s is None and endpointer.speech_start_s is None


def test_end_now_ends_the_utterance_where_the_pause_began() -> None:
    """An end-of-turn model ending a pause early dates the end as the window would have."""
    endpointer = _endpointer()
    _run(endpointer, [V, V, V, V, S, S])
    assert endpointer.end_now() == SpeechEnded(at_s=6 * W, speech_start_s=0.0, speech_end_s=4 * W)
    assert not endpointer.in_speech
    assert [e for _, e in _run(endpointer, [S, S, S])] == []  # no second end


def test_end_now_does_nothing_unless_a_pause_is_under_way() -> None:
    endpointer = _endpointer()
    assert endpointer.end_now() is None  # out of speech
    _run(endpointer, [V, V, V, V])
    assert endpointer.end_now() is None  # speaking
    assert endpointer.in_speech
