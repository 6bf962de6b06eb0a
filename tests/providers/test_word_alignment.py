"""Normalizing and aligning intended and heard words: pure."""

import pytest

from voicerail.providers.word_alignment import (
    WordMismatch,
    align_words,
    normalize_words,
    number_words,
    ordinal_words,
)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Hello, World!", "hello world"),
        ("Dr. Okafor at 3:30, OK?", "doctor okafor at three thirty okay"),
        ("the 2nd and 21st of May", "the second and twenty first of may"),
        (
            "$1,250.75 & 100%",
            "one thousand two hundred fifty point seven five and one hundred percent",
        ),
        ("follow-up for Mr Smith's party", "follow up for mister smith's party"),
        ("'quoted' words", "quoted words"),
    ],
)
def test_normalize_words(text, words):
    assert normalize_words(text) == words.split()


@pytest.mark.parametrize(
    ("number", "words", "ordinal"),
    [
        (0, "zero", "zeroth"),
        (12, "twelve", "twelfth"),
        (40, "forty", "fortieth"),
        (105, "one hundred five", "one hundred fifth"),
        (2003, "two thousand three", "two thousand third"),
        (1234567, "one two three four five six seven", "one two three four five six seventh"),
    ],
)
def test_number_and_ordinal_words(number, words, ordinal):
    assert number_words(number) == words
    assert ordinal_words(number) == ordinal


def align(expected: str, heard: str) -> list[WordMismatch]:
    return align_words(normalize_words(expected), normalize_words(heard))


def test_same_words_after_normalization_match():
    assert align("Your visit is at 10:30.", "your visit is at ten thirty") == []


def test_substituted_word_is_reported_with_its_position():
    assert align("Welcome to Voicerail.", "Welcome to VoiceReel.") == [
        WordMismatch(expected="voicerail", heard="voicereel", position=2)
    ]


def test_word_split_in_two_matches_either_way():
    assert align("Welcome to Voicerail.", "Welcome to Voice Rail.") == []
    assert align("Welcome to voice rail.", "Welcome to Voicerail.") == []


def test_run_of_differences_is_one_mismatch():
    assert align("Welcome to Voicerail today", "Welcome to voice real today") == [
        WordMismatch(expected="voicerail", heard="voice real", position=2)
    ]


def test_deletions_and_insertions_keep_matching_words_aligned():
    assert align("a b c d", "x a c d e") == [
        WordMismatch(expected="", heard="x", position=0),
        WordMismatch(expected="b", heard="", position=1),
        WordMismatch(expected="", heard="e", position=4),
    ]


def test_nothing_heard_or_nothing_expected():
    assert align("hello there", "") == [WordMismatch("hello there", "", 0)]
    assert align("", "hello") == [WordMismatch("", "hello", 0)]
    assert align("", "") == []
