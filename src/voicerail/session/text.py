"""Splitting agent text into the sentences that are synthesized one by one."""

from __future__ import annotations

import re

# A sentence ends at . ! ? followed by space, unless the period ends a short
# abbreviation such as "Dr." or "a.m." followed by a lower-case word.
_BOUNDARY = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])")


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences; whitespace-only pieces are dropped.

    >>> split_sentences("Hello there. How can I help? Bye")
    ['Hello there.', 'How can I help?', 'Bye']
    """
    return [part.strip() for part in _BOUNDARY.split(text.strip()) if part.strip()]
