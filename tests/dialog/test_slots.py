"""Slot extractors on transcripts as Whisper (sentence case) or pocketsphinx (lowercase) write."""

from datetime import date, time

import pytest

from voicerail.dialog.slots import (
    extract_day,
    extract_name,
    extract_time,
    extract_yes_no,
    format_day,
    format_time,
    warm_up,
)

SUNDAY = date(2026, 11, 22)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'd like Tuesday at 3 p.m.", date(2026, 11, 24)),
        ("Next Tuesday at three in the afternoon.", date(2026, 11, 24)),
        ("this tuesday", date(2026, 11, 24)),
        ("Tuesdays are best for me.", date(2026, 11, 24)),
        ("How about Sunday?", date(2026, 11, 29)),  # said on a Sunday: next week's
        ("Tuesday next week.", date(2026, 11, 24)),  # the week that starts tomorrow
        ("Tomorrow, please.", date(2026, 11, 23)),
        ("the day after tomorrow", date(2026, 11, 24)),
        ("today if possible", SUNDAY),
        ("In two days.", date(2026, 11, 24)),
        ("in 3 weeks", date(2026, 12, 13)),
        ("A week from today.", date(2026, 11, 29)),
        ("March 3rd at noon", date(2027, 3, 3)),  # past this year: next year
        ("March the third", date(2027, 3, 3)),
        ("on the 14th of December", date(2026, 12, 14)),
        ("the third of March", date(2027, 3, 3)),
        ("December twenty-first", date(2026, 12, 21)),
        ("Dec. 3, please", date(2026, 12, 3)),
        ("November 30th", date(2026, 11, 30)),
        ("the 14th", date(2026, 12, 14)),  # already past this month
        ("the 25th", date(2026, 11, 25)),
        ("On the fifth.", date(2026, 12, 5)),
        ("Tuesday the 1st", date(2026, 12, 1)),  # the date wins over the weekday
        ("11/30 please", date(2026, 11, 30)),
        ("12/3", date(2026, 12, 3)),  # month first
        ("2027-01-15", date(2027, 1, 15)),
        ("February 30th", None),
        ("May I come in at 3?", None),
        ("At 3 may be fine.", None),
        ("It's the second time I call.", None),
        ("All circuits are busy now.", None),
        ("I want to book an appointment.", None),
        ("", None),
    ],
)
def test_extract_day(text: str, expected: date | None) -> None:
    assert extract_day(text, SUNDAY) == expected


def test_the_31st_skips_months_without_one() -> None:
    assert extract_day("the 31st", date(2026, 11, 22)) == date(2026, 12, 31)
    assert extract_day("the 31st", date(2027, 1, 31)) == date(2027, 1, 31)
    assert extract_day("the 31st", date(2027, 2, 1)) == date(2027, 3, 31)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Tuesday at 3 p.m.", time(15, 0)),
        ("3 P.M.", time(15, 0)),
        ("3pm", time(15, 0)),
        ("at 3 PM.", time(15, 0)),
        ("10 a.m.", time(10, 0)),
        ("nine a.m.", time(9, 0)),
        ("at three in the afternoon", time(15, 0)),
        ("10:30 in the morning", time(10, 30)),
        ("3:45 p.m.", time(15, 45)),
        ("3.30pm", time(15, 30)),
        ("tomorrow at 10:30", time(10, 30)),
        ("15:00", time(15, 0)),
        ("at 10", time(10, 0)),
        ("at 4", time(16, 0)),  # a bare 1-6 is afternoon for a clinic
        ("around 2", time(14, 0)),
        ("Three.", time(15, 0)),
        ("three o'clock", time(15, 0)),
        ("eight o'clock", time(8, 0)),
        ("half past two", time(14, 30)),
        ("quarter past ten", time(10, 15)),
        ("a quarter to eleven", time(10, 45)),
        ("quarter to one", time(12, 45)),
        ("two thirty in the afternoon", time(14, 30)),
        ("at four thirty", time(16, 30)),
        ("Ten fifteen.", time(10, 15)),
        ("seven in the evening", time(19, 0)),
        ("Tuesday morning at 9", time(9, 0)),
        ("Thursday afternoon at 2", time(14, 0)),
        ("around noon", time(12, 0)),
        ("12 noon", time(12, 0)),
        ("the 14th at 10", time(10, 0)),
        ("I'd like March 3rd", None),
        ("For 2 weeks.", None),
        ("At one of your clinics.", None),
        ("I want to book an appointment.", None),
        ("25:00", None),
    ],
)
def test_extract_time(text: str, expected: time | None) -> None:
    assert extract_time(text) == expected


@pytest.mark.parametrize(
    ("text", "asked", "expected"),
    [
        ("My name is Maria Lopez.", False, "Maria Lopez"),
        ("my name is maria lopez", False, "Maria Lopez"),
        ("My name is maria.", False, "Maria"),  # a strong phrase takes lowercase words
        ("this is john smith calling", False, "John Smith"),
        ("Hi, this is Priya Patel, I'd like to book.", False, "Priya Patel"),
        ("I'm Ana.", False, "Ana"),
        ("It's Maria Lopez.", False, "Maria Lopez"),
        ("Yeah, it's Sean McDonald.", False, "Sean McDonald"),
        ("Book it under O'Brien, please.", False, "O'Brien"),
        ("Maria Lopez.", True, "Maria Lopez"),
        ("Yeah, Maria Lopez.", True, "Maria Lopez"),
        ("Sure. Ana Ruiz, please.", True, "Ana Ruiz"),
        ("ana ruiz", True, "Ana Ruiz"),
        ("Maria Lopez.", False, None),  # a bare name only when it was asked for
        ("I'm not sure.", False, None),
        ("I'm calling to book.", False, None),
        ("It's for Tuesday.", False, None),
        ("This is wrong.", False, None),  # sentence case: a name would be capitalized
        ("Talk to a human.", True, None),
        ("I want to book", True, None),
        ("Tuesday.", True, None),
        ("Maria Lopez at three p.m. please.", True, None),
    ],
)
def test_extract_name(text: str, asked: bool, expected: str | None) -> None:
    assert extract_name(text, asked=asked) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes, please book it.", True),
        ("Yeah sure", True),
        ("Yes, please be good.", True),  # Whisper on "yes, please, book it"
        ("That's correct.", True),
        ("Sounds good.", True),
        ("Yep, that works.", True),
        ("Uh-huh.", True),
        ("Yes, no problem.", True),
        ("No problem, go ahead.", True),
        ("No.", False),
        ("Nope.", False),
        ("No, that's all. Thank you, goodbye.", False),
        ("That's it, thanks.", False),
        ("That's not right", False),
        ("Absolutely not.", False),
        ("No thank you", False),
        ("Maybe later", None),
        ("I'm not sure.", None),
        ("Okay. No thanks, goodbye.", None),  # both, neither first: ask again
        ("What are your opening hours?", None),
    ],
)
def test_extract_yes_no(text: str, expected: bool | None) -> None:
    assert extract_yes_no(text) is expected


def test_spoken_formats() -> None:
    assert format_day(date(2026, 11, 24)) == "Tuesday, November 24"
    assert format_time(time(15, 0)) == "3 PM"
    assert format_time(time(10, 30)) == "10:30 AM"
    assert format_time(time(0, 15)) == "12:15 AM"
    assert format_time(time(12, 0)) == "noon"


def test_warm_up_loads_dateparser_without_error() -> None:
    warm_up()
