"""Slot extractors for day, time, caller name and yes/no, from transcripts.

Pure functions: text (as a speech recognizer writes it, e.g. "Tuesday at 3 p.m."
or "three in the afternoon") in, a typed value or None out. ``today`` is passed
in, never read from the clock.

Rules kept here:

1. A bare hour without am/pm is read for a daytime business: 7–11 are
   morning, 12 is noon, 1–6 are afternoon. "in the morning", "in the
   afternoon", "in the evening", "a.m.", "p.m." override it.
2. A weekday name means its next occurrence after today ("Tuesday" said on a
   Tuesday means next week's); "next Tuesday" means the same.
3. Dates in the past are moved to next year ("March 3rd" said in November).
4. Names are taken from explicit phrases ("my name is …", "this is …",
   "I'm …"), or, when the dialog asked for the name, from a short reply of up
   to three words that are not common words.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta

WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_NUMBER_WORDS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "fifteen": 15,
    "thirty": 30,
    "forty-five": 45,
    "forty five": 45,
}
_ORDINAL_WORDS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
}


def _normalize(text: str) -> str:
    text = text.lower().replace("’", "'")
    text = re.sub(r"\b([ap])\.\s?m\.?", r"\1m", text)  # "p.m." / "p. m." → "pm"
    return re.sub(r"[^\w:' -]", " ", text)


def extract_day(text: str, today: date) -> date | None:
    """The day a caller named, relative to ``today``; None when none was named."""
    t = _normalize(text)
    if re.search(r"\bday after tomorrow\b", t):
        return today + timedelta(days=2)
    if re.search(r"\btomorrow\b", t):
        return today + timedelta(days=1)
    if re.search(r"\btoday\b", t):
        return today
    for index, name in enumerate(WEEKDAYS):
        if re.search(rf"\b{name}s?\b", t):
            ahead = (index - today.weekday()) % 7 or 7
            return today + timedelta(days=ahead)
    return _month_day(t, today)


def _month_day(t: str, today: date) -> date | None:
    day_pattern = r"(\d{1,2})(?:st|nd|rd|th)?|" + "|".join(_ORDINAL_WORDS)
    for index, month in enumerate(MONTHS, start=1):
        match = re.search(rf"\b{month}\s+(?:the\s+)?({day_pattern})\b", t) or re.search(
            rf"\b(?:the\s+)?({day_pattern})\s+of\s+{month}\b", t
        )
        if match:
            return _future_date(today, index, _day_number(match.group(1)))
    match = re.search(r"\bthe\s+(\d{1,2})(?:st|nd|rd|th)\b", t)
    if match:
        day_number = int(match.group(1))
        month_number = today.month if day_number >= today.day else today.month % 12 + 1
        return _future_date(today, month_number, day_number)
    return None


def _day_number(token: str) -> int:
    token = token.strip()
    if token in _ORDINAL_WORDS:
        return _ORDINAL_WORDS[token]
    return int(re.sub(r"\D", "", token))


def _future_date(today: date, month: int, day_number: int) -> date | None:
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, day_number)
        except ValueError:
            return None
        if candidate >= today:
            return candidate
    return None


_HOUR = r"(\d{1,2}|" + "|".join(w for w, n in _NUMBER_WORDS.items() if n <= 12) + ")"
_MINUTE = r"(\d{2}|fifteen|thirty|forty[- ]five)"


def _number(token: str) -> int:
    token = token.strip()
    return _NUMBER_WORDS[token] if token in _NUMBER_WORDS else int(token)


def extract_time(text: str) -> time | None:
    """The time of day a caller named; None when none was named."""
    t = _normalize(text)
    if re.search(r"\b(noon|midday)\b", t):
        return time(12, 0)
    hour: int | None = None
    minute = 0
    match = re.search(rf"\bhalf past {_HOUR}\b", t)
    quarter = re.search(rf"\bquarter (past|to) {_HOUR}\b", t)
    clock = re.search(rf"\b{_HOUR}:(\d{{2}})\b", t) or re.search(
        rf"\b{_HOUR} {_MINUTE}\b(?=\s*(?:am|pm|o'clock|in the|$))", t
    )
    plain = re.search(rf"\b{_HOUR}\s*(am|pm|o'clock|in the (?:morning|afternoon|evening))", t)
    at = re.search(rf"\bat {_HOUR}\b", t)
    if match:
        hour, minute = _number(match.group(1)), 30
    elif quarter:
        hour = _number(quarter.group(2))
        minute = 15 if quarter.group(1) == "past" else 45
        hour = hour if quarter.group(1) == "past" else hour - 1
    elif clock:
        hour, minute = _number(clock.group(1)), _number(clock.group(2))
    elif plain:
        hour = _number(plain.group(1))
    elif at:
        hour = _number(at.group(1))
    if hour is None or not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return time(_daytime_hour(hour, t), minute)


def _daytime_hour(hour: int, t: str) -> int:
    if hour > 12:
        return hour
    if re.search(r"\bpm\b|in the (afternoon|evening)", t):
        return hour % 12 + 12
    if re.search(r"\bam\b|in the morning", t):
        return hour % 12
    return hour + 12 if 1 <= hour <= 6 else hour  # rule 1


_NAME_PHRASE = re.compile(
    r"\b(?:my name is|my name's|name is|this is|i am|i'm|it's|it is|call me)\s+"
    r"([a-z][a-z'-]+(?:\s+[a-z][a-z'-]+){0,2})",
    re.IGNORECASE,
)
_COMMON_WORDS = """
a an the and or but yes no yeah okay ok sure please thanks thank you hi hello
i me my it is this that to for on at in of calling call about would like want need
book appointment cancel reschedule tomorrow today next morning afternoon evening
am pm human person agent robot ai just sorry um uh well so
"""
_NOT_NAMES = frozenset(re.findall(r"[a-z]+", _COMMON_WORDS)) | set(WEEKDAYS) | set(MONTHS)


def extract_name(text: str, *, asked: bool = False) -> str | None:
    """The caller's name, title-cased; None when no name was given."""
    match = _NAME_PHRASE.search(text)
    words: list[str] = []
    if match:
        for word in match.group(1).split():
            if word.lower().strip("'") in _NOT_NAMES:
                break
            words.append(word)
    elif asked:
        candidate = re.sub(r"[^\w' -]", " ", text).split()
        if 1 <= len(candidate) <= 3 and not any(w.lower() in _NOT_NAMES for w in candidate):
            words = candidate
    if not words or any(ch.isdigit() for w in words for ch in w):
        return None
    return " ".join(w.capitalize() for w in words)


_YES = re.compile(
    r"\b(yes|yeah|yep|yup|sure|correct|right|please do|go ahead|book it|do it|"
    r"sounds good|that works|perfect|absolutely|confirm|of course|okay|ok)\b"
)
_NO = re.compile(r"\b(no|nope|not|don't|do not|wrong|nothing|that's all|that is all|never mind)\b")


def extract_yes_no(text: str) -> bool | None:
    """True for an agreement, False for a refusal, None when neither (or both) is clear."""
    t = _normalize(text)
    yes, no = bool(_YES.search(t)), bool(_NO.search(t))
    if re.search(r"\bnot (right|correct|okay|ok)\b", t):
        return False
    if no and (not yes or re.match(r"\s*(no|nope)\b", t)):
        return False
    if yes and not no:
        return True
    return None


def format_day(day: date) -> str:
    """Spoken form, e.g. ``"Tuesday, November 24"``."""
    return f"{WEEKDAYS[day.weekday()].capitalize()}, {MONTHS[day.month - 1].capitalize()} {day.day}"


def format_time(value: time) -> str:
    """Spoken form, e.g. ``"3 PM"``, ``"10:30 AM"``, ``"noon"``."""
    if value == time(12, 0):
        return "noon"
    hour = value.hour % 12 or 12
    suffix = "AM" if value.hour < 12 else "PM"
    return f"{hour}:{value.minute:02d} {suffix}" if value.minute else f"{hour} {suffix}"
