"""Transcript redaction: phones, e-mails, cards, dates of birth and names; the rest stays."""

from __future__ import annotations

import pytest

from voicerail.compliance.redact import (
    DOB_MARKER,
    EMAIL_MARKER,
    NAME_MARKER,
    redact_expected_name,
    redact_personal,
)


@pytest.mark.parametrize(
    ("text", "marker", "gone"),
    [
        ("call me back on 555 010 9999", "[redacted:phone]", "9999"),
        ("my number is +1 (555) 010-9999", "[redacted:phone]", "9999"),
        ("five five five zero one zero nine nine nine nine", "[redacted:phone]", "nine nine"),
        ("my email is ada.l@example.com", EMAIL_MARKER, "example"),
        ("it's ada at example dot com", EMAIL_MARKER, "example"),
        ("the card is 4111 1111 1111 1111", "[redacted:card]", "1111"),
        ("my date of birth is 03/04/1985", DOB_MARKER, "1985"),
        ("I was born on March 3rd, 1985", DOB_MARKER, "1985"),
        ("born nineteen eighty five", DOB_MARKER, "eighty"),
        ("DOB is 4th of July", DOB_MARKER, "July"),
        ("my name is Ada Lovelace", NAME_MARKER, "Lovelace"),
        ("my name is ada lovelace", NAME_MARKER, "lovelace"),
        ("hi, this is John Smith calling", NAME_MARKER, "Smith"),
        ("it's Ada", NAME_MARKER, "Ada"),
        ("that's L O V E L A C E", NAME_MARKER, "L O V"),
    ],
)
def test_personal_data_is_replaced_by_its_marker(text, marker, gone):
    out = redact_personal(text)
    assert marker in out and gone not in out


@pytest.mark.parametrize(
    "text",
    [
        "I'd like to book Monday at 10 am",
        "I'm calling to move my appointment to December 10 2026",
        "I'm going to be late",
        "this is urgent",
        "I need 2 appointments at 3 pm",
        "I owe two thousand dollars",
        "are you a robot?",
    ],
)
def test_what_is_not_personal_is_left_alone(text):
    assert redact_personal(text) == text


def test_a_name_followed_by_more_words_keeps_the_words():
    assert redact_personal("my name is ada and I want a visit") == (
        f"my name is {NAME_MARKER} and I want a visit"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Ada Lovelace.", "[redacted:name]."),
        ("ada lovelace", "[redacted:name]"),
        ("Sure, Grace Brewster Hopper.", "Sure, [redacted:name]."),
        ("it's Ada", "it's [redacted:name]"),
        ("Ada Lovelace, and Tuesday please", "[redacted:name], and Tuesday please"),
        ("I don't know", "I don't know"),
        ("can you repeat that", "can you repeat that"),
        ("Tuesday", "Tuesday"),
        ("I'd like to book for Tuesday at three", "I'd like to book for Tuesday at three"),
    ],
)
def test_a_bare_name_is_redacted_when_one_was_asked_for(text: str, expected: str) -> None:
    assert redact_expected_name(text) == expected
