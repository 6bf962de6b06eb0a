"""A reply's first sentence is split at its first clause when both sides are long enough."""

from __future__ import annotations

from voicerail.session.text import split_for_speech


def test_the_first_sentence_is_split_at_its_first_clause() -> None:
    text = "I found your appointment on Tuesday, at three in the afternoon. Is that right?"
    assert split_for_speech(text) == [
        "I found your appointment on Tuesday,",
        "at three in the afternoon.",
        "Is that right?",
    ]


def test_later_sentences_are_not_split() -> None:
    text = "Okay. I found your appointment on Tuesday, at three in the afternoon."
    assert split_for_speech(text) == [
        "Okay.",
        "I found your appointment on Tuesday, at three in the afternoon.",
    ]


def test_short_clauses_stay_whole() -> None:
    assert split_for_speech("Sorry, I didn't quite get that.") == [
        "Sorry, I didn't quite get that."
    ]
    assert split_for_speech("May I have your full name, please?") == [
        "May I have your full name, please?"
    ]


def test_a_short_first_clause_moves_the_split_to_the_next_boundary() -> None:
    text = "Hello, thanks for calling Riverside Family Clinic, how can I help you?"
    assert split_for_speech(text) == [
        "Hello, thanks for calling Riverside Family Clinic,",
        "how can I help you?",
    ]


def test_semicolons_colons_and_dashes_are_clause_boundaries() -> None:
    for mark in [";", ":", "\u2014"]:
        text = f"We are open every weekday{mark} closed on all holidays."
        assert split_for_speech(text) == [
            f"We are open every weekday{mark}",
            "closed on all holidays.",
        ]


def test_splitting_can_be_turned_off() -> None:
    text = "I found your appointment on Tuesday, at three in the afternoon."
    assert split_for_speech(text, None) == [text]
    assert split_for_speech("") == []


def test_a_cached_first_sentence_is_kept_whole():
    text = "We're open Monday to Friday from 8 AM to 6 PM, and Saturday from 9 AM to noon."
    assert len(split_for_speech(text, 3)) == 2
    assert split_for_speech(text, 3, ready=lambda s: s == text) == [text]
