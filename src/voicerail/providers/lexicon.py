"""Pronunciation lexicon: how each text-to-speech provider should say branded terms.

A lexicon is data, one entry per term, giving the text each provider is sent in
place of the term::

    # lexicon.yaml
    Voicerail:                # the term, matched case-insensitively as whole words
      "*": Voice Rail         # any provider without an entry of its own
      piper: "[[ vˈɔɪs ɹˈeɪl ]]"   # piper reads phonemes between [[ and ]]
    Okafor: oh KAH for        # shorthand for {"*": "oh KAH for"}
    Dr. Nguyen:               # a term may hold several words and punctuation
      espeak-ng: Doctor Win

Keys under a term are configured provider names (``PiperTTS(name=...)``), or
``"*"`` for the default. A replacement is sent as written: a respelling, or the
phoneme markup a provider accepts (piper-tts 1.8 reads ``[[ phonemes ]]`` inline;
an SSML provider might take ``<phoneme alphabet="ipa" ph="...">Voicerail</phoneme>``).
A provider with neither its own entry nor ``"*"`` gets the term unchanged.

Rules kept here:

1. Matching is case-insensitive and on whole words: "Voicerail's" matches, a
   term inside a longer word ("Voicerails") does not.
2. One pass over the text: when terms overlap the longest wins, and a
   replacement is never matched again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from voicerail.errors import ConfigError

DEFAULT_PROVIDER = "*"


class PronunciationLexicon:
    """Per-provider replacements for terms that text-to-speech gets wrong.

    Args:
        entries: ``{term: {provider name or "*": replacement}}``; a bare string
            value means ``{"*": value}``.
        source: where the entries came from, for error messages.

    Raises:
        ConfigError: a term or a replacement is empty or not a string, or two
            terms differ only in case.
    """

    def __init__(
        self, entries: Mapping[str, str | Mapping[str, str]], *, source: str = "<config>"
    ) -> None:
        self._by_term: dict[str, dict[str, str]] = {}
        for term, value in entries.items():
            key = _checked_term(term, source)
            if key in self._by_term:
                raise ConfigError(f"term {term!r} is listed twice", source=source, field=term)
            self._by_term[key] = _checked_replacements(term, value, source)
        self._patterns: dict[str, re.Pattern[str] | None] = {}

    @classmethod
    def from_yaml(cls, path: str | Path) -> PronunciationLexicon:
        """Load a lexicon from a YAML file in the format of this module's docstring.

        Raises:
            ConfigError: the file cannot be read or parsed, or an entry is invalid.
        """
        import yaml

        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(
                f"cannot read lexicon: {type(error).__name__}", source=str(path)
            ) from error
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(
                f"a lexicon is a mapping of terms, got {type(raw).__name__}", source=str(path)
            )
        return cls(raw, source=str(path))

    @property
    def terms(self) -> tuple[str, ...]:
        """The terms, lowercase."""
        return tuple(self._by_term)

    def __len__(self) -> int:
        return len(self._by_term)

    def replacement(self, term: str, provider: str) -> str | None:
        """The text ``provider`` is sent for ``term``, or None when it has none."""
        replacements = self._by_term.get(_key(term), {})
        return replacements.get(provider, replacements.get(DEFAULT_PROVIDER))

    def find_terms(self, text: str) -> list[str]:
        """The lexicon's terms that occur in ``text`` (lowercase, in order of appearance)."""
        pattern = _pattern(tuple(self._by_term))
        return [] if pattern is None else [_key(m.group()) for m in pattern.finditer(text)]

    def apply(self, text: str, provider: str) -> str:
        """Replace every term in ``text`` by its replacement for ``provider``.

        Args:
            text: the text about to be synthesized.
            provider: the configured name of the provider that will speak it.

        Returns:
            The text to send to ``provider``.
        """
        if provider not in self._patterns:
            terms = tuple(t for t in self._by_term if self.replacement(t, provider) is not None)
            self._patterns[provider] = _pattern(terms)
        pattern = self._patterns[provider]
        if pattern is None:
            return text
        return pattern.sub(lambda match: self.replacement(match.group(), provider) or "", text)


def _pattern(terms: tuple[str, ...]) -> re.Pattern[str] | None:
    """One alternation of ``terms``, longest first, each bounded by non-word characters."""
    if not terms:
        return None
    alternatives = "|".join(
        r"\s+".join(re.escape(word) for word in term.split())
        for term in sorted(terms, key=len, reverse=True)
    )
    # Lookarounds rather than \b: a term may begin or end with punctuation ("Dr.").
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def _checked_term(term: Any, source: str) -> str:
    if not isinstance(term, str) or not term.strip():
        raise ConfigError(f"a term must be a non-empty string, got {term!r}", source=source)
    return _key(term)


def _key(term: str) -> str:
    """A term as stored: lowercase, single spaces."""
    return " ".join(term.split()).lower()


def _checked_replacements(term: str, value: Any, source: str) -> dict[str, str]:
    if isinstance(value, str):
        value = {DEFAULT_PROVIDER: value}
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(
            f"expected a replacement or a mapping of provider to replacement, got {value!r}",
            source=source,
            field=term,
        )
    replacements = {}
    for provider, replacement in value.items():
        if not isinstance(provider, str) or not isinstance(replacement, str) or not replacement:
            raise ConfigError(
                f"replacement for provider {provider!r} must be a non-empty string, "
                f"got {replacement!r}",
                source=source,
                field=f"{term}.{provider}",
            )
        replacements[provider] = replacement
    return replacements
