"""What the caller heard, from mark echoes: pure, on explicit times."""

from voicerail.session.playback import PlaybackTracker
from voicerail.session.text import split_sentences


def tracker_with_two_sentences() -> PlaybackTracker:
    tracker = PlaybackTracker(started_at_s=10.0)
    tracker.add_segment("0.0", "Hello there.", 1.0)
    tracker.add_segment("0.1", "How can I help you today?", 2.0)
    tracker.finished_queueing = True
    return tracker


def test_marked_segments_are_heard_in_full():
    tracker = tracker_with_two_sentences()
    assert tracker.on_mark("0.0", 11.0) is not None
    assert tracker.heard_text(11.0) == "Hello there."
    assert not tracker.all_heard
    tracker.on_mark("0.1", 13.0)
    assert tracker.all_heard
    assert tracker.heard_text(13.0) == tracker.full_text


def test_cut_segment_keeps_only_words_already_played():
    tracker = tracker_with_two_sentences()
    tracker.on_mark("0.0", 11.0)
    # 1.0 s of a 2.0 s, 6-word sentence: 3 words heard.
    assert tracker.heard_text(12.0) == "Hello there. How can I"
    # 0.9 s: 2.7 words, rounded down to 2.
    assert tracker.heard_text(11.9) == "Hello there. How can"


def test_nothing_heard_before_the_first_word_played():
    tracker = tracker_with_two_sentences()
    assert tracker.heard_text(10.1) == ""


def test_unknown_marks_are_ignored():
    tracker = tracker_with_two_sentences()
    assert tracker.on_mark("7.0", 11.0) is None
    assert tracker.heard_text(10.0) == ""


def test_not_all_heard_while_still_queueing():
    tracker = PlaybackTracker(0.0)
    tracker.add_segment("0.0", "One.", 0.5)
    tracker.on_mark("0.0", 0.5)
    assert not tracker.all_heard
    tracker.finished_queueing = True
    assert tracker.all_heard


def test_split_sentences():
    assert split_sentences(" Hi. It is 3 p.m. on Tuesday! OK? ") == [
        "Hi.",
        "It is 3 p.m. on Tuesday!",
        "OK?",
    ]
    assert split_sentences("") == []
