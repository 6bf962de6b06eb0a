"""Personal data out of caller transcripts: phones, e-mails, cards, dates of birth, names.

Why a regex/Luhn set and not Microsoft Presidio: Presidio's analyzer installs
from PyPI, but its name recognizer needs a spaCy NER model, and spaCy's models
are published only as GitHub release assets (``explosion/spacy-models``), which
this deployment cannot reach (checked 2026-12-06); the PyPI copies of
``en_core_web_sm`` are unofficial re-uploads. Without NER, Presidio's pattern
recognizers do what :mod:`voicerail.events.redaction` already does for digits
and e-mail addresses.

Rules (applied in this order, each on the previous one's output):

1. Spoken digit words are read as digits for detection ("four one one one" is
   a number), via :func:`voicerail.compliance.pci.redact_spoken_card`.
2. Card numbers (13-19 digits passing Luhn), phone numbers (10-15 digits), US
   SSNs and e-mail addresses: :func:`voicerail.events.redaction.scrub_text`.
   Spoken e-mails ("ada at example dot com") become ``[redacted:email]`` too.
3. Dates of birth: a date with a year from 1900 to 2019 (written "03/04/1985",
   "1985-03-04", "March 4, 1985", or spoken "nineteen eighty five"), and any
   date after "born", "birth" or "DOB". Appointment dates carry no year or a
   recent one, so they stay.
4. Names: one to three capitalized words after a cue ("my name is", "this is",
   "I'm", "name's", "call me", "it's"), and letters spelled out one by one
   ("L O V E"). STT capitalizes names; the cue keeps "I'm Going" out when the
   next word is a common word (:data:`_NOT_NAMES`).

5. A bare name with no cue ("Ada Lovelace." as a whole turn) only when the
   dialog is asking for a name (:func:`redact_expected_name`; the compliance
   wrapper knows from the flow's pending slot or the agent's question,
   ``dialog.py`` rule 6): the whole turn when it is one to three words and
   none of them is a common word, else a leading run of capitalized words
   before a comma or stop ("Ada Lovelace, and Tuesday please").

What is not caught: a bare name the dialog did not ask for, which NER would
find.
"""

from __future__ import annotations

import re

from voicerail.compliance.pci import DIGIT_WORDS, redact_spoken_card
from voicerail.events.redaction import scrub_text

NAME_MARKER = "[redacted:name]"
DOB_MARKER = "[redacted:dob]"
EMAIL_MARKER = "[redacted:email]"

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_OLD_YEAR = r"(?:19\d\d|20[01]\d)"
_ANY_YEAR = r"(?:19|20)\d\d"
_SPOKEN_YEAR = (
    r"(?:nineteen[\s-]+(?:hundred|oh[\s-]+\w+|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen"
    r"|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)"
    r"(?:[\s-]+(?:one|two|three|four|five|six|seven|eight|nine))?"
    r"|two[\s-]+thousand(?:[\s-]+(?:and[\s-]+)?(?:one|two|three|four|five|six|seven|eight"
    r"|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen)))"
)
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_DATE_WITH_YEAR = (
    rf"(?:\d{{1,2}}[/.-]\d{{1,2}}[/.-]YEAR|YEAR-\d{{1,2}}-\d{{1,2}}"
    rf"|(?:{_MONTHS})\.?\s+{_DAY},?\s+YEAR|{_DAY}\s+(?:of\s+)?(?:{_MONTHS}),?\s+YEAR)"
)
_OLD_DATE = re.compile(
    r"(?<!\w)(?:"
    + _DATE_WITH_YEAR.replace("YEAR", _OLD_YEAR)
    + rf"|(?:(?:{_MONTHS})\s+(?:the\s+)?\w+(?:[\s-]\w+)?,?\s+)?{_SPOKEN_YEAR})(?!\w)",
    re.IGNORECASE,
)
_BIRTH_DATE = re.compile(
    r"(?P<cue>\b(?:born(?:\s+on)?|birth(?:day|date)?(?:\s+is)?|date of birth(?:\s+is)?|dob"
    r"(?:\s+is)?)[:\s]+)(?P<date>"
    + _DATE_WITH_YEAR.replace("YEAR", _ANY_YEAR)
    + rf"|(?:{_MONTHS})\s+{_DAY}|{_DAY}\s+(?:of\s+)?(?:{_MONTHS})|\d{{1,2}}[/.-]\d{{1,2}})",
    re.IGNORECASE,
)
_SPOKEN_EMAIL = re.compile(
    r"(?<!\w)[\w.+-]+(?:\s+dot\s+[\w+-]+)*\s+at\s+[A-Za-z0-9-]+(?:\s+dot\s+[A-Za-z]{2,})+(?!\w)",
    re.IGNORECASE,
)
_CUE = r"(?:my name is|my name's|name is|name's|this is|i am|i'm|im|call me|it's|its)"
_NAME = re.compile(
    rf"(?P<cue>\b(?i:{_CUE})\s+)(?P<name>[A-Z][a-z'’-]+(?:[ -][A-Z][a-z'’-]+){{0,2}})"
)
# After a cue that can only introduce a name, lowercase words are a name too.
_STRONG_NAME = re.compile(
    r"(?P<cue>\b(?:my name is|my name's|name is|call me)\s+)(?P<name>[a-z'’-]+(?: [a-z'’-]+)?)",
    re.IGNORECASE,
)
_NAME_WORD = re.compile(r"[A-Z][a-z'’-]+")
_SPELLED = re.compile(r"(?<!\w)(?:[A-Za-z](?:[\s.,-]+|$)){3,}(?!\w)")
# Capitalized words after a cue that are not names (sentence starts, places, things).
_NOT_NAMES = frozenset(
    # a word list reads better as one string
    """a an the and but not no yes just really calling looking trying going wondering here
    there fine good great okay ok sorry sure still new returning interested available
    free busy at in on from with about to for of it this that monday tuesday wednesday
    thursday friday saturday sunday today tomorrow morning afternoon evening dr doctor
    mr mrs ms miss""".split()  # noqa: SIM905
)


def _name(match: re.Match[str]) -> str:
    words = match.group("name").split()
    if words[0].lower() in _NOT_NAMES or not _NAME_WORD.fullmatch(words[0]):
        return match.group(0)
    return match.group("cue") + NAME_MARKER


def _strong_name(match: re.Match[str]) -> str:
    words = [w for w in match.group("name").split() if w.lower() not in _NOT_NAMES]
    if not words or match.group("name").split()[0].lower() in _NOT_NAMES:
        return match.group(0)
    rest = match.group("name").split()[len(words) :]
    return match.group("cue") + NAME_MARKER + "".join(" " + w for w in rest)


def redact_personal(text: str) -> str:
    """``text`` with rules 1-4 applied.

    >>> redact_personal("hi, my name is Ada Lovelace, born March 3, 1985, 555 010 9999")
    'hi, my name is [redacted:name], born [redacted:dob], [redacted:phone]'
    """
    text = redact_spoken_card(text, paused=False)
    text = _BIRTH_DATE.sub(lambda m: m.group("cue") + DOB_MARKER, text)
    text = _OLD_DATE.sub(DOB_MARKER, text)
    text = _SPOKEN_EMAIL.sub(EMAIL_MARKER, text)
    text = scrub_text(_spoken_digits_as_numbers(text))
    text = _NAME.sub(_name, text)
    text = _STRONG_NAME.sub(_strong_name, text)
    return _SPELLED.sub(lambda m: NAME_MARKER + (" " if m.group(0)[-1].isspace() else ""), text)


_FILLER = r"(?:uh|um|er|erm|yes|yeah|yep|sure|okay|ok|right|so|it's|its|it is|that's|that is)"
_BARE_NAME = re.compile(
    rf"^(?P<lead>\s*(?:(?i:{_FILLER})[\s,]+)*)"
    r"(?P<name>[^\W\d_][\w'’-]*(?:\s+[^\W\d_][\w'’-]*){0,2})(?P<tail>[\s.!,]*)$"
)
_LEADING_NAME = re.compile(
    rf"^(?P<lead>\s*(?:(?i:{_FILLER})[\s,]+)*)"
    r"(?P<name>[A-Z][a-z'’-]+(?:\s+[A-Z][a-z'’-]+){0,2})(?=\s*[,.;])"
)
# Words that make a short answer something other than a name ("I don't know").
_NOT_BARE = (
    frozenset(
        # a word list reads better as one string
        """i me my you your we he she they what why who how which when where sorry pardon
    don't dont know can't cant won't wont rather not no nope none repeat again please
    thanks thank hello hi hey bye goodbye human person agent operator representative
    is are was be do does did have has need want wait hold minute moment""".split()  # noqa: SIM905
    )
    | _NOT_NAMES
)


def redact_expected_name(text: str) -> str:
    """Rule 5: ``text`` (an answer to "what is your name?") with the bare name redacted.

    Call it only when the dialog asked for a name; other text is returned unchanged
    by :func:`redact_personal`'s rules, not this one.

    >>> redact_expected_name("Ada Lovelace.")
    '[redacted:name].'
    >>> redact_expected_name("I don't know")
    "I don't know"
    """
    bare = _BARE_NAME.match(text)
    if bare is not None:
        words = bare.group("name").lower().split()
        if not any(w in _NOT_BARE for w in words):
            return bare.group("lead") + NAME_MARKER + bare.group("tail")
        return text
    leading = _LEADING_NAME.match(text)
    if leading is not None and not any(
        w in _NOT_BARE for w in leading.group("name").lower().split()
    ):
        return leading.group("lead") + NAME_MARKER + text[leading.end() :]
    return text


_DIGIT_WORDS = re.compile(
    r"(?<!\w)(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
    r"(?:[\s,.-]+(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)){6,}(?!\w)",
    re.IGNORECASE,
)


def _spoken_digits_as_numbers(text: str) -> str:
    """Runs of seven or more digit words as digits, so that rule 2 sees spoken phones."""

    def digits(match: re.Match[str]) -> str:
        words = re.findall(r"[a-z]+", match.group(0).lower())
        return "".join(DIGIT_WORDS[w] for w in words)

    return _DIGIT_WORDS.sub(digits, text)
