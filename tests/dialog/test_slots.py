"""Slot extractors on transcripts as a recognizer writes them."""

from datetime import date, time

import pytest

from voicerail.dialog.slots import (
    extract_day,
    extract_name,
    extract_time,
    extract_yes_no,
    format_day,
    format_time,
)

SUNDAY = date(2026, 11, 22)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Next Tuesday at three in the afternoon.", date(2026, 11, 24)),
        ("tuesday", date(2026, 11, 24)),
        ("How about Sunday?", date(2026, 11, 29)),  # said on a Sunday: next week's
        ("Tomorrow, please.", date(2026, 11, 23)),
        ("the day after tomorrow", date(2026, 11, 24)),
        ("today if possible", SUNDAY),
        ("March 3rd at noon", date(2027, 3, 3)),
        ("on the 14th of December", date(2026, 12, 14)),
        ("the 14th", date(2026, 12, 14)),
        ("the 25th", date(2026, 11, 25)),
        ("All circuits are busy now.", None),
        ("I want to book an appointment.", None),
    ],
)
def test_extract_day(text, expected):
    assert extract_day(text, SUNDAY) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tuesday at 3 p.m.", time(15, 0)),
        ("3pm", time(15, 0)),
        ("at three in the afternoon", time(15, 0)),
        ("10:30 in the morning", time(10, 30)),
        ("tomorrow at 10:30", time(10, 30)),
        ("at 10", time(10, 0)),
        ("at 4", time(16, 0)),  # a bare 1-6 is afternoon for a clinic
        ("nine a.m.", time(9, 0)),
        ("half past two", time(14, 30)),
        ("quarter to eleven", time(10, 45)),
        ("around noon", time(12, 0)),
        ("eight o'clock", time(8, 0)),
        ("I want to book an appointment.", None),
    ],
)
def test_extract_time(text, expected):
    assert extract_time(text) == expected


@pytest.mark.parametrize(
    ("text", "asked", "expected"),
    [
        ("My name is Maria Lopez.", False, "Maria Lopez"),
        ("this is john smith calling", False, "John Smith"),
        ("I'm Ana.", False, "Ana"),
        ("Maria Lopez.", True, "Maria Lopez"),
        ("Maria Lopez.", False, None),
        ("Talk to a human.", True, None),
        ("I want to book", True, None),
    ],
)
def test_extract_name(text, asked, expected):
    assert extract_name(text, asked=asked) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes, please book it.", True),
        ("Yeah sure", True),
        ("Yes, please be good.", True),
        ("No.", False),
        ("No, that's all. Thank you, goodbye.", False),
        ("That's not right", False),
        ("Maybe later", None),
    ],
)
def test_extract_yes_no(text, expected):
    assert extract_yes_no(text) is expected


def test_spoken_formats():
    assert format_day(date(2026, 11, 24)) == "Tuesday, November 24"
    assert format_time(time(15, 0)) == "3 PM"
    assert format_time(time(10, 30)) == "10:30 AM"
    assert format_time(time(12, 0)) == "noon"
