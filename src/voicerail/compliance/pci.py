"""PCI pause: card numbers keyed or spoken in a call never reach a store.

PCI DSS v4.0 requirement 3.3.1 forbids storing sensitive authentication data
after authorization and 3.4/3.5 require the primary account number (PAN) to be
unreadable wherever it is stored; the simplest way to keep a voice agent out of
scope is never to store it at all (PCI SSC, "Protecting Telephone-Based Payment
Card Data", 2018, §4.2 "pause and resume"). The rules kept here:

1. While a card is being collected (the *pause*), keypad digits go into one
   :class:`CardEntry` and nowhere else: not into events, the dialog, the LLM
   prompt, the call state or a log. The entry ends on ``#``, or by itself at
   :data:`MAX_PAN_DIGITS` digits.
2. A finished entry is handed to a :class:`Tokenizer`, which returns a
   :class:`CardToken`: an opaque token, the last four digits and whether the
   number passed the Luhn check (ISO/IEC 7812-1 annex B). Only the token and the
   last four (which PCI DSS 3.4.1 lets be displayed) go further.
3. Spoken card numbers (digits or number words, "four one one one …") are
   replaced in the transcript before it is recorded or handed to the dialog:
   during the pause every run of digits is replaced; outside it every run of 13
   to 19 digits that passes the Luhn check (:func:`redact_spoken_card`).

Pure code: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from typing import Protocol

from voicerail.events.redaction import luhn_valid

#: The longest PAN (ISO/IEC 7812-1: up to 19 digits).
MAX_PAN_DIGITS = 19
#: The shortest PAN the payment networks issue.
MIN_PAN_DIGITS = 12
#: What a spoken card number becomes in a transcript.
CARD_MARKER = "[redacted:card]"
#: What a run of digits spoken during the pause becomes.
DIGITS_MARKER = "[redacted:digits]"

#: Spoken digit words and their digits (lowercase), as STT writes them out.
DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
}
# In a card number read out, a lone "o" is zero too ("four o five ...").
_WORDS = {**DIGIT_WORDS, "o": "0"}
# One token of a spoken number: a run of digits or a digit word, with the
# separators STT puts between them (spaces, commas, dashes, periods).
_NUMBER_TOKEN = r"(?:\d+|" + "|".join(sorted(_WORDS, key=len, reverse=True)) + r")"
_NUMBER_RUN = re.compile(
    rf"(?<![\w]){_NUMBER_TOKEN}(?:[\s,.-]+{_NUMBER_TOKEN})*(?![\w])", re.IGNORECASE
)


@dataclass(frozen=True)
class CardToken:
    """What a tokenizer returns for one keyed card (rule 2).

    Attributes:
        token: opaque reference to the card at the tokenizer ("" when rejected).
        last4: the PAN's last four digits ("" when fewer than four were keyed).
        num_digits: how many digits were keyed.
        luhn_ok: the number passed the Luhn check and has 12-19 digits.
    """

    token: str
    last4: str
    num_digits: int
    luhn_ok: bool

    @property
    def accepted(self) -> bool:
        """True when the card was tokenized (a valid number)."""
        return self.luhn_ok and bool(self.token)


class Tokenizer(Protocol):
    """Turns a PAN into a token; the PAN is not kept by the caller afterwards.

    Implementations: :class:`LocalTokenizer` (a keyed hash, the default), or a
    payment processor's vault behind the same method.
    """

    name: str

    def tokenize(self, pan: str) -> CardToken:
        """Tokenize ``pan`` (only the digits 0-9).

        Raises:
            ProviderError: a remote vault failed (a local tokenizer never raises).
        """
        ...


class LocalTokenizer:
    """A keyed hash of the PAN as its token: HMAC-SHA256 with a deployment secret.

    The same card gives the same token (so repeat payments can be matched) and the
    PAN cannot be recovered from it without the key. Nothing is stored: charging
    the card is the payment processor's job, reached through its own tokenizer.

    Args:
        key: the secret; ``VOICERAIL_PCI_KEY`` from the environment when None, else
            a random key per process (tokens then differ across restarts).
    """

    name = "local"

    def __init__(self, key: bytes | None = None) -> None:
        env = os.environ.get("VOICERAIL_PCI_KEY")
        self._key = key or (env.encode() if env else os.urandom(32))

    def tokenize(self, pan: str) -> CardToken:
        """A ``tok_`` + 24 hex digits token when ``pan`` passes the Luhn check."""
        ok = MIN_PAN_DIGITS <= len(pan) <= MAX_PAN_DIGITS and pan.isdigit() and luhn_valid(pan)
        token = ""
        if ok:
            token = "tok_" + hmac.new(self._key, pan.encode(), hashlib.sha256).hexdigest()[:24]
        return CardToken(token, pan[-4:] if len(pan) >= 4 else "", len(pan), ok)


class CardEntry:
    """The digits of one card being keyed (rule 1); never printed, never stored.

    ``receive_key`` returns True when the entry is finished (``#``, or the
    longest PAN reached). ``*`` clears what was keyed (start again).
    """

    def __init__(self) -> None:
        self._digits: list[str] = []
        self.finished = False

    def __repr__(self) -> str:  # never the digits (rule 1)
        return f"CardEntry(num_digits={len(self._digits)}, finished={self.finished})"

    @property
    def num_digits(self) -> int:
        """Digits keyed so far."""
        return len(self._digits)

    def receive_key(self, key: str) -> bool:
        """Add one keypad key (``"0"``-``"9"``, ``"*"``, ``"#"``); True when finished."""
        if self.finished:
            return True
        if key == "#":
            self.finished = True
        elif key == "*":
            self._digits.clear()
        elif key.isdigit() and len(key) == 1:
            self._digits.append(key)
            self.finished = len(self._digits) >= MAX_PAN_DIGITS
        return self.finished

    def take(self, tokenizer: Tokenizer) -> CardToken:
        """Tokenize the digits keyed and forget them."""
        pan = "".join(self._digits)
        self._digits.clear()
        self.finished = True
        return tokenizer.tokenize(pan)


def _digits_of(run: str) -> str:
    parts = re.findall(_NUMBER_TOKEN, run, flags=re.IGNORECASE)
    return "".join(p if p.isdigit() else _WORDS[p.lower()] for p in parts)


def redact_spoken_card(text: str, *, paused: bool) -> str:
    """Rule 3: ``text`` with spoken card numbers (or, when ``paused``, any number) replaced.

    A run is digits and digit words separated by spaces, commas, dashes or
    periods ("4111 1111 1111 1111", "four one one one, one one …").

    >>> redact_spoken_card("my card is 4111 1111 1111 1111 thanks", paused=False)
    'my card is [redacted:card] thanks'
    >>> redact_spoken_card("it's four one one one", paused=True)
    "it's [redacted:digits]"
    """

    def replace(match: re.Match[str]) -> str:
        run = match.group(0)
        digits = _digits_of(run)
        if paused and (len(digits) >= 2 or any(ch.isdigit() for ch in run)):
            return DIGITS_MARKER
        if MIN_PAN_DIGITS <= len(digits) <= MAX_PAN_DIGITS and luhn_valid(digits):
            return CARD_MARKER
        return run

    return _NUMBER_RUN.sub(replace, text)
