"""Slot extractors for day, time, caller name and yes/no, from transcripts.

Pure functions: text as a speech recognizer writes it ("I'd like Tuesday at 3
p.m.", "three o'clock", "half past two", or all lowercase from pocketsphinx) in,
a typed value or None out. ``today`` is passed in, never read from the clock.

Rules kept here:

1. A bare hour is read for a daytime business (a clinic): 7–11 are morning,
   12 is noon, 1–6 are afternoon ("at 4" is 4 PM). "a.m."/"p.m." next to the
   number, or "in the morning" / "afternoon" / "evening" in the sentence,
   override it. A 24-hour time ("15:00") is taken as said.
2. A weekday name means its next occurrence after today ("Tuesday" said on a
   Tuesday means next week's); "next Tuesday" and "this Tuesday" mean the same;
   "Tuesday next week" means the Tuesday of the next calendar week.
3. An explicit date ("March 3rd", "the 14th", "12/3") wins over a weekday
   said with it. Dates in the past move forward: to next year for a month and
   day, to next month for "the 14th". Numeric dates are month first (US).
4. dateparser reads only numeric dates: on free text it matches ordinary words
   ("may", "now", "second") and guesses past dates, so it never sees more than
   the fragment a pattern has already recognized as a date.
5. Names come from explicit phrases ("my name is …", "this is …", "I'm …"),
   or, when the dialog asked for the name, from a reply of one to three words.
   In sentence-cased text (Whisper writes names capitalized) a name after a weak
   phrase ("it's", "I'm", "this is") or in a bare reply must be capitalized;
   in lowercase text (pocketsphinx) a stop list of common words guards instead.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

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
_MONTH_ABBREVIATIONS = {m[:3]: i for i, m in enumerate(MONTHS, start=1)} | {"sept": 9}
_UNITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
_TEENS = [
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50}
_ORDINAL_UNITS = [
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
]
_ORDINAL_TEENS = [
    "tenth",
    "eleventh",
    "twelfth",
    "thirteenth",
    "fourteenth",
    "fifteenth",
    "sixteenth",
    "seventeenth",
    "eighteenth",
    "nineteenth",
]


def _number_words() -> dict[str, int]:
    words = {w: n for n, w in enumerate(_UNITS)} | {w: n + 10 for n, w in enumerate(_TEENS)}
    for tens, value in _TENS.items():
        words[tens] = value
        for n, unit in enumerate(_UNITS[1:], start=1):
            words[f"{tens}-{unit}"] = words[f"{tens} {unit}"] = value + n
    return words


def _ordinal_words() -> dict[str, int]:
    words = {w: n for n, w in enumerate(_ORDINAL_UNITS, start=1)}
    words |= {w: n + 10 for n, w in enumerate(_ORDINAL_TEENS)}
    words |= {"twentieth": 20, "thirtieth": 30}
    for tens, value in (("twenty", 20), ("thirty", 30)):
        for n, unit in enumerate(_ORDINAL_UNITS, start=1):
            if value + n <= 31:
                words[f"{tens}-{unit}"] = words[f"{tens} {unit}"] = value + n
    return words


_NUMBERS = _number_words()
_ORDINALS = _ordinal_words()


def _alternation(words: dict[str, int]) -> str:
    # Longest first, so that "twenty-one" wins over "twenty".
    return "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))


def _normalize(text: str) -> str:
    """Lowercase; "p.m."/"P. M." → "pm"; punctuation other than ``: / ' -`` → space."""
    text = text.lower().replace("’", "'")
    text = re.sub(r"\b([ap])\.?\s?m\b\.?", r"\1m", text)
    text = re.sub(r"(\d)\.(\d\d)\b", r"\1:\2", text)  # "3.30" (British) → "3:30"
    text = re.sub(r"[^\w:/' -]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


# -- day -------------------------------------------------------------------------

_ORDINAL_DIGITS = r"(\d{1,2})(?:st|nd|rd|th)"
_DAY_NUMBER = rf"(?:{_ORDINAL_DIGITS}|(\d{{1,2}})|({_alternation(_ORDINALS)}))"
_MONTH_NAME = "|".join(MONTHS + sorted(_MONTH_ABBREVIATIONS, key=len, reverse=True))
# An ordinal word is a day only at the end or before these ("the second time" is not).
_AFTER_ORDINAL = r"(?:$| (?:at|please|if|would|is|works|then|for|in|around|or|and|maybe))"
_RELATIVE_COUNTS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def extract_day(text: str, today: date) -> date | None:
    """The day a caller named, relative to ``today`` (see the module rules 2–4).

    Args:
        text: one caller turn as transcribed.
        today: the caller's local date.

    Returns:
        The date, or None when no day was named.
    """
    t = _normalize(text)
    return (
        _month_and_day(t, today)
        or _numeric_date(t, today)
        or _day_of_month(t, today)
        or _relative_day(t, today)
        or _weekday(t, today)
    )


def _month_and_day(t: str, today: date) -> date | None:
    month_first = re.search(rf"\b({_MONTH_NAME})\.?\s+(?:the\s+)?{_DAY_NUMBER}(?!\w)", t)
    day_first = re.search(rf"\b(?:the\s+)?{_DAY_NUMBER}\s+(?:of\s+)?({_MONTH_NAME})\b", t)
    if month_first:
        month = _month_number(month_first.group(1))
        number = _day_number(*month_first.group(2, 3, 4))
    elif day_first:
        month = _month_number(day_first.group(4))
        number = _day_number(*day_first.group(1, 2, 3))
    else:
        return None
    if day_first and day_first.group(2) and month == 5 and " of " not in day_first.group(0):
        return None  # "at 3 may be fine": a plain number before "may" is not a date
    return _next_date(today, month, number)


def _month_number(name: str) -> int:
    return MONTHS.index(name) + 1 if name in MONTHS else _MONTH_ABBREVIATIONS[name]


def _day_number(ordinal_digits: str | None, digits: str | None, words: str | None) -> int:
    if ordinal_digits or digits:
        return int(ordinal_digits or digits or 0)
    return _ORDINALS.get(words or "", 0)


def _next_date(today: date, month: int, number: int) -> date | None:
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, number)
        except ValueError:
            return None
        if candidate >= today:
            return candidate
    return None


def _numeric_date(t: str, today: date) -> date | None:
    match = re.search(r"\b(\d{1,2}/\d{1,2}(?:/\d{2,4})?|\d{4}-\d{2}-\d{2})\b", t)
    if match is None:
        return None
    parsed = _dateparser_parse(match.group(1), today)
    if parsed is None:
        return None
    if match.group(1).count("/") == 1:
        return _next_date(today, parsed.month, parsed.day)  # no year said: rule 3
    return parsed.date()


def _dateparser_parse(fragment: str, today: date) -> datetime | None:
    """``fragment`` (a numeric date, rule 4) read by dateparser, month first, never past."""
    import dateparser  # ~0.3 s to import; only numeric dates need it

    settings = {
        "DATE_ORDER": "MDY",
        "PREFER_DATES_FROM": "future",
        "RELATIVE_BASE": datetime(today.year, today.month, today.day),
    }
    return dateparser.parse(fragment, languages=["en"], settings=settings)


def warm_up() -> None:
    """Load dateparser's data now, so that the first caller to say "12/3" waits no 300 ms."""
    _dateparser_parse("12/3/2030", date(2030, 1, 1))


def _day_of_month(t: str, today: date) -> date | None:
    match = re.search(
        rf"\b(?:the|on)\s+(?:{_ORDINAL_DIGITS}\b|({_alternation(_ORDINALS)})(?={_AFTER_ORDINAL}))",
        t,
    )
    if match is None:
        return None
    number = _day_number(match.group(1), None, match.group(2))
    month, year = today.month, today.year
    for _ in range(3):  # this month if still ahead, else the next month that has the day
        try:
            candidate = date(year, month, number)
        except ValueError:
            candidate = None
        if candidate is not None and candidate >= today:
            return candidate
        month, year = (1, year + 1) if month == 12 else (month + 1, year)
    return None


def _relative_day(t: str, today: date) -> date | None:
    counts = "|".join(_RELATIVE_COUNTS)
    match = re.search(rf"\bin (\d{{1,2}}|{counts}) (day|week)s?\b", t)
    if match:
        amount = match.group(1)
        number = int(amount) if amount.isdigit() else _RELATIVE_COUNTS[amount]
        return today + timedelta(days=number * (7 if match.group(2) == "week" else 1))
    if re.search(r"\ba week from (today|now)\b", t):
        return today + timedelta(days=7)
    if re.search(r"\bday after tomorrow\b", t):
        return today + timedelta(days=2)
    if re.search(r"\btomorrow\b", t):
        return today + timedelta(days=1)
    if re.search(r"\b(today|tonight|this (morning|afternoon|evening))\b", t):
        return today
    return None


def _weekday(t: str, today: date) -> date | None:
    for index, name in enumerate(WEEKDAYS):
        if re.search(rf"\b{name}s?\b", t):
            if re.search(rf"\b{name}\s+(?:of\s+)?next week\b|\bnext week(?:'s)? {name}\b", t):
                next_monday = today + timedelta(days=7 - today.weekday())
                return next_monday + timedelta(days=index)
            return today + timedelta(days=(index - today.weekday()) % 7 or 7)  # rule 2
    return None


# -- time ------------------------------------------------------------------------

_HOUR_WORDS = {w: n for w, n in _NUMBERS.items() if 1 <= n <= 12 and " " not in w and "-" not in w}
_MINUTE_WORDS = {w: n for w, n in _NUMBERS.items() if 10 <= n <= 59} | {
    f"oh {u}": n for n, u in enumerate(_UNITS[1:], start=1)
}
_HOUR = rf"(\d{{1,2}}|{_alternation(_HOUR_WORDS)})"
_MINUTE = rf"(\d{{2}}|{_alternation(_MINUTE_WORDS)})"
_MERIDIEM = r"(am|pm|o'clock|oclock)"
_LEAD = r"(?:at|around|about|by|for|say|until|after|before)"
_NOT_A_TIME_AFTER = r"(?!\s*(?:of|days?|weeks?|months?|years?|people|minutes?|hours?|times?|kids?))"


def _to_int(token: str) -> int:
    token = token.strip()
    if token.isdigit():
        return int(token)
    return _MINUTE_WORDS.get(token, _NUMBERS.get(token, -1))


def extract_time(text: str) -> time | None:
    """The time of day a caller named (see the module rule 1).

    Args:
        text: one caller turn as transcribed.

    Returns:
        The time, or None when no time was named.
    """
    t = _normalize(text)
    if re.search(r"\b(noon|midday|lunchtime)\b", t):
        return time(12, 0)
    parsed = _clock_time(t)
    if parsed is None:
        return None
    hour, minute, meridiem = parsed
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return time(_resolve_hour(hour, meridiem, t), minute)


def _clock_time(t: str) -> tuple[int, int, str | None] | None:
    """(hour as said, minute, "am"/"pm" said next to it) of the first time in ``t``."""
    patterns: list[tuple[str, str]] = [
        (rf"\bhalf past {_HOUR}\b", "half"),
        (rf"\b(?:a )?quarter (past|after|to|of) {_HOUR}\b", "quarter"),
        (rf"\b{_HOUR}:(\d{{2}})\s*{_MERIDIEM}?", "colon"),
        (rf"\b{_HOUR} {_MINUTE}\s*(am|pm)\b", "spoken"),
        (rf"\b{_HOUR} {_MINUTE}(?= in the (?:morning|afternoon|evening)\b)", "spoken"),
        (rf"\b{_LEAD} {_HOUR} {_MINUTE}\b{_NOT_A_TIME_AFTER}", "spoken"),
        (rf"^{_HOUR} {_MINUTE}$", "spoken"),
        (rf"\b{_HOUR}\s*{_MERIDIEM}", "hour"),
        (rf"\b{_HOUR} in the (?:morning|afternoon|evening)\b", "hour"),
        (rf"\b{_LEAD} {_HOUR}\b(?!:){_NOT_A_TIME_AFTER}", "hour"),
        (rf"^(?:um |uh |maybe |how about |let's say )?{_HOUR}(?: ish| please)?$", "hour"),
    ]
    for pattern, kind in patterns:
        match = re.search(pattern, t)
        if match is None:
            continue
        groups = match.groups()
        if kind == "half":
            return _to_int(groups[0]), 30, None
        if kind == "quarter":
            hour = _to_int(groups[1])
            if groups[0] in ("past", "after"):
                return hour, 15, None
            return (hour - 1 or 12), 45, None
        if kind in ("colon", "spoken"):
            meridiem = groups[2] if len(groups) > 2 else None
            return _to_int(groups[0]), _to_int(groups[1]), meridiem
        return _to_int(groups[0]), 0, groups[1] if len(groups) > 1 else None
    return None


def _resolve_hour(hour: int, meridiem: str | None, t: str) -> int:
    if hour > 12 or hour == 0:
        return hour  # 24-hour clock
    if meridiem == "pm":
        return hour % 12 + 12
    if meridiem == "am":
        return hour % 12
    if re.search(r"\b(morning)\b", t):
        return hour % 12
    if re.search(r"\b(afternoon|evening|tonight)\b", t) and hour <= 9:
        return hour + 12
    return hour + 12 if 1 <= hour <= 6 else hour  # rule 1


# -- name ------------------------------------------------------------------------

_STRONG_PHRASE = r"my name is|my name's|name is|name's|call me|under the name|under"
_WEAK_PHRASE = r"this is|it's|it is|i'm|i am"
_NAME_PHRASE = re.compile(
    rf"\b(?:({_STRONG_PHRASE})|({_WEAK_PHRASE}))\s+([^,.;!?]+)", re.IGNORECASE
)
_COMMON_WORDS = """
a an the and or but if so as of to for on at in by with from up down out off over
i me my mine we us our you your he she they them it its this that these those there here
is am are was were be been being do does did have has had will would can could shall should
may might must not no nope yes yeah yep yup ok okay sure fine right well um uh er hmm oh ah
please thanks thank hi hello hey bye goodbye just only also still really very too
calling call called speaking talking looking trying hoping wondering going gonna wanna
want need like book booking booked appointment appointments cancel cancelling reschedule
move change schedule visit doctor doctors checkup clinic time day week today tomorrow
next this last morning afternoon evening night noon am pm o'clock
human person someone somebody agent operator robot machine computer ai real
sorry good great happy glad sick ill busy free available new here again sure
what when where who why how which anything something nothing everything all
"""
_NOT_NAMES = frozenset(_COMMON_WORDS.split()) | set(WEEKDAYS) | set(MONTHS) | set(_NUMBERS)
_FILLERS = re.compile(
    rf"^(?:(?:yes|yeah|yep|sure|okay|ok|um|uh|so|well|hi|hello|oh|right)\b[\s,.]*|"
    rf"(?:{_STRONG_PHRASE}|{_WEAK_PHRASE})\b\s*)+",
    re.IGNORECASE,
)
_NAME_WORD = re.compile(r"^[^\W\d_][\w'-]*$")


def extract_name(text: str, *, asked: bool = False) -> str | None:
    """The caller's name (see the module rule 5).

    Args:
        text: one caller turn as transcribed.
        asked: the dialog just asked for the name, so a bare reply counts.

    Returns:
        The name with each word capitalized, or None when no name was given.
    """
    cased = text.strip()[:1].isupper()
    for match in _NAME_PHRASE.finditer(text):
        strong = match.group(1) is not None
        words = _name_words(match.group(3).split(), require_capital=cased and not strong)
        if words:
            return words
    if not asked:
        return None
    reply = _FILLERS.sub("", text.strip())
    reply = re.sub(r"\b(please|thanks|thank you)\b", " ", reply, flags=re.IGNORECASE)
    candidate = re.sub(r"[,.;!?]", " ", reply).split()
    if not 1 <= len(candidate) <= 3:
        return None
    words = _name_words(candidate, require_capital=cased)
    return words if words and len(words.split()) == len(candidate) else None


def _name_words(words: list[str], *, require_capital: bool) -> str | None:
    """The leading name words of ``words`` (up to three), capitalized."""
    kept: list[str] = []
    for word in words[:3]:
        bare = word.strip("'-")
        if not _NAME_WORD.match(bare) or bare.lower() in _NOT_NAMES:
            break
        if require_capital and not bare[0].isupper():
            break
        kept.append(bare[0].upper() + bare[1:] if bare[1:].lower() != bare[1:] else bare.title())
    return " ".join(kept) or None


# -- yes / no --------------------------------------------------------------------

_YES = re.compile(
    r"\b(yes|yeah|yea|yep|yup|ya|sure|correct|right|exactly|please do|go ahead|book it|do it|"
    r"sounds good|that works|works for me|perfect|great|absolutely|definitely|confirm|"
    r"confirmed|of course|okay|ok|alright|all right|fine|uh-huh|mm-hmm|no problem|"
    r"not a problem)\b"
)
_NO = re.compile(
    r"\b(no|nope|nah|not|don't|do not|wrong|nothing|never mind|nevermind|that's all|"
    r"that is all|that's it|that's everything|all set|i'm good|i'm fine|cancel that)\b"
)
_NEGATED_YES = re.compile(
    r"\b(not|isn't|is not|that's not|don't) (right|correct|okay|ok|good|fine|what i)\b|"
    r"\babsolutely not\b|\bdefinitely not\b|\bof course not\b|\bdon't think so\b"
)


def extract_yes_no(text: str) -> bool | None:
    """Whether the caller agreed.

    Args:
        text: one caller turn as transcribed.

    Returns:
        True for an agreement, False for a refusal or "that's all", None when
        neither is clear (or both are said without one leading).
    """
    t = _normalize(text)
    t = re.sub(r"\b(no problem|not a problem)\b", "ok", t)
    t = re.sub(r"\b(not sure|don't know|no idea)\b", "unsure", t)
    if _NEGATED_YES.search(t):
        return False
    yes, no = _YES.search(t), _NO.search(t)
    if yes and no:
        return yes.start() < no.start() if t.startswith(("yes", "yeah", "no", "nope")) else None
    if no:
        return False
    if yes:
        return True
    return None


# -- spoken forms ----------------------------------------------------------------


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
