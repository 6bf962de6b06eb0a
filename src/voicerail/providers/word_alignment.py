"""Comparing what was meant to be said with what a recognizer heard, word by word.

Pure functions, used by the text-to-speech round trip (``tts_validation``).

Rules kept here:

1. Both sides are normalized the same way before comparison: lowercase,
   punctuation dropped (apostrophes inside words kept), hyphens split words,
   numbers spelled out ("42" → "forty two", "3rd" → "third", "2.5" → "two point
   five"), a few spoken forms of abbreviations ("dr" → "doctor").
2. A word split in two on one side and written as one on the other ("voice rail"
   and "voicerail") counts as the same word.
3. The alignment is a plain Levenshtein alignment over words (unit costs; among
   equally cheap alignments, matching words are kept together); each run of
   differences becomes one :class:`WordMismatch`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_ONES = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    *("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen"),
    *("seventeen", "eighteen", "nineteen"),
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_ENDINGS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_SYMBOLS = {"%": " percent ", "&": " and ", "+": " plus ", "@": " at "}
# Abbreviations whose spoken form is unambiguous; recognizers write either.
_SPOKEN_FORMS = {"dr": "doctor", "mr": "mister", "mrs": "missus", "ok": "okay", "vs": "versus"}

_DECIMAL = re.compile(r"(\d+)\.(\d+)")
_ORDINAL = re.compile(r"(\d+)(?:st|nd|rd|th)\b", re.IGNORECASE)
_NUMBER = re.compile(r"\d+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_NON_WORD = re.compile(r"[^a-z0-9' ]+")


@dataclass(frozen=True)
class WordMismatch:
    """Words that were meant to be said but were heard differently.

    Attributes:
        expected: the normalized words of the text ("" when words were heard
            that the text does not have).
        heard: the normalized words heard in their place ("" when nothing was).
        position: index of the first expected word of the run among the
            normalized words of the text (after rule 2's joining).
    """

    expected: str
    heard: str
    position: int


def number_words(number: int) -> str:
    """English words for 0..999999 ("one hundred twenty three"); digit by digit beyond.

    Args:
        number: a non-negative integer.
    """
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    if number < 1_000_000:
        thousands, rest = divmod(number, 1000)
        return f"{number_words(thousands)} thousand" + (f" {number_words(rest)}" if rest else "")
    return " ".join(_ONES[int(digit)] for digit in str(number))


def ordinal_words(number: int) -> str:
    """English ordinal words for 0..999999 ("twenty first", "one hundredth")."""
    *head, last = number_words(number).split()
    if last in _ORDINAL_ENDINGS:
        last = _ORDINAL_ENDINGS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return " ".join([*head, last])


def normalize_words(text: str) -> list[str]:
    """The words of ``text``, normalized for comparison (rule 1).

    >>> normalize_words("Dr. Okafor sees you at 3:30 on the 2nd, OK?")
    ['doctor', 'okafor', 'sees', 'you', 'at', 'three', 'thirty', 'on', 'the', 'second', 'okay']
    """
    for symbol, spoken in _SYMBOLS.items():
        text = text.replace(symbol, spoken)
    text = _THOUSANDS.sub("", text)
    text = _DECIMAL.sub(lambda m: f"{m[1]} point {' '.join(m[2])}", text)
    text = _ORDINAL.sub(lambda m: f" {ordinal_words(int(m[1]))} ", text)
    text = _NUMBER.sub(lambda m: f" {number_words(int(m[0]))} ", text)
    text = _NON_WORD.sub(" ", text.lower().replace("-", " "))
    words = (word.strip("'") for word in text.split())
    return [_SPOKEN_FORMS.get(word, word) for word in words if word]


def align_words(expected: Sequence[str], heard: Sequence[str]) -> list[WordMismatch]:
    """The differences between two normalized word sequences (rules 2 and 3).

    Args:
        expected: normalized words of the text that was synthesized.
        heard: normalized words the recognizer returned.

    Returns:
        One mismatch per run of substituted, deleted or inserted words, in order;
        empty when the sequences match.
    """
    expected = _join_split_words(expected, set(heard))
    heard = _join_split_words(heard, set(expected))
    mismatches: list[WordMismatch] = []
    run_expected: list[str] = []
    run_heard: list[str] = []
    run_start = 0
    for index_expected, index_heard in _alignment(expected, heard):
        word_expected = expected[index_expected] if index_expected is not None else None
        word_heard = heard[index_heard] if index_heard is not None else None
        if word_expected is not None and word_expected == word_heard:
            if run_expected or run_heard:
                mismatches.append(
                    WordMismatch(" ".join(run_expected), " ".join(run_heard), run_start)
                )
                run_expected, run_heard = [], []
            run_start = index_expected + 1 if index_expected is not None else run_start
            continue
        if word_expected is not None:
            run_expected.append(word_expected)
        if word_heard is not None:
            run_heard.append(word_heard)
    if run_expected or run_heard:
        mismatches.append(WordMismatch(" ".join(run_expected), " ".join(run_heard), run_start))
    return mismatches


def _join_split_words(words: Sequence[str], other_side: set[str]) -> list[str]:
    """Join each adjacent pair whose concatenation is a word of the other side."""
    joined: list[str] = []
    index = 0
    while index < len(words):
        pair = "".join(words[index : index + 2])
        if index + 1 < len(words) and pair in other_side and words[index] not in other_side:
            joined.append(pair)
            index += 2
        else:
            joined.append(words[index])
            index += 1
    return joined


def _alignment(a: Sequence[str], b: Sequence[str]) -> list[tuple[int | None, int | None]]:
    """Levenshtein alignment of ``a`` and ``b`` as index pairs (None: a gap)."""
    # cost[i][j]: edits turning a[:i] into b[:j].
    cost = [
        [i + j if i == 0 or j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)
    ]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost[i][j] = min(
                cost[i - 1][j - 1] + (a[i - 1] != b[j - 1]),
                cost[i - 1][j] + 1,
                cost[i][j - 1] + 1,
            )
    pairs: list[tuple[int | None, int | None]] = []
    i, j = len(a), len(b)
    while i or j:
        if i and j and a[i - 1] == b[j - 1] and cost[i][j] == cost[i - 1][j - 1]:
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((i - 1, None))
            i -= 1
        elif j and cost[i][j] == cost[i][j - 1] + 1:
            pairs.append((None, j - 1))
            j -= 1
        else:  # a substitution
            pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    return pairs[::-1]
