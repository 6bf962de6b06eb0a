"""Splitting agent text into the pieces that are synthesized one by one.

Rules:

1. A reply is spoken sentence by sentence: a sentence ends at . ! ? followed by
   space and a capital, digit or quote (so "Dr. smith" or "a.m. today" stay whole).
2. The first audio of a reply waits for its whole first piece to be synthesized
   (piper synthesizes a piece at a time), so the first sentence is split once
   more, at its first clause boundary (a comma, semicolon, colon or dash followed
   by space), when both sides have at least ``min_clause_words`` words: the caller
   hears the first clause while the rest is synthesized. Shorter clauses ("Sorry,"
   "Okay,") are not split off: they are quick to synthesize anyway, and a split
   costs the prosody across the boundary.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")
_CLAUSE = re.compile(r"(?<=[,;:\u2014])\s+")

MIN_CLAUSE_WORDS = 3
"""Words each side of a clause boundary needs before the first sentence is split there."""


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences (rule 1); whitespace-only pieces are dropped.

    >>> split_sentences("Hello there. How can I help? Bye")
    ['Hello there.', 'How can I help?', 'Bye']
    """
    return [part.strip() for part in _BOUNDARY.split(text.strip()) if part.strip()]


def split_for_speech(
    text: str,
    min_clause_words: int | None = MIN_CLAUSE_WORDS,
    *,
    ready: Callable[[str], bool] = lambda sentence: False,
) -> list[str]:
    """The pieces of ``text`` to synthesize in order: sentences, the first split at
    its first clause boundary (rule 2; ``min_clause_words`` None: never). A first
    sentence that is ``ready`` (its audio is cached) is kept whole: splitting it
    would only turn audio that costs nothing into two syntheses.

    >>> split_for_speech("So that's Tuesday at 3 PM, for Maria Lopez. Shall I book it?")
    ["So that's Tuesday at 3 PM,", 'for Maria Lopez.', 'Shall I book it?']
    >>> split_for_speech("Sorry, I didn't quite get that.")
    ["Sorry, I didn't quite get that."]
    """
    sentences = split_sentences(text)
    if not sentences or min_clause_words is None or ready(sentences[0]):
        return sentences
    first = sentences[0]
    for match in _CLAUSE.finditer(first):
        head, tail = first[: match.start()], first[match.end() :]
        if len(head.split()) < min_clause_words:
            continue  # a later boundary may leave a long enough first clause
        if len(tail.split()) >= min_clause_words:
            return [head, tail, *sentences[1:]]
        break
    return sentences
