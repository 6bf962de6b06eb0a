"""Intent recognition by nearest example phrases in sentence-embedding space.

Rules kept here:

1. An agent's intents come with example phrases. Their embeddings are computed
   once, when the agent loads, into one read-only matrix shared by every call.
2. An utterance is embedded once per turn and scored against each intent as the
   mean of that intent's ``top_k`` best cosine similarities: steadier than the
   single best example when one example is an outlier.
3. Keywords complement the embeddings in two small ways. A very short reply
   (at most ``KEYWORD_MAX_WORDS`` words) that no intent reaches ``threshold``
   with scores 1.0 for the intent whose keyword it contains: "Operator." or
   "Representative, please." score poorly as sentences. In longer sentences a
   keyword only adds ``KEYWORD_BONUS`` to its intent: MiniLM places "book",
   "cancel" and "move my appointment" close together (the topic dominates the
   verb), and the verb is what separates them; a bonus breaks such near-ties
   without letting a keyword override a clear embedding match ("are you
   human?" is a question about the agent, not a request for a human).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

KEYWORD_MAX_WORDS = 3
KEYWORD_BONUS = 0.05


class Embedder(Protocol):
    """Anything that turns sentences into unit vectors (``[n, dim]`` float32)."""

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts``; rows of unit L2 norm."""
        ...


@dataclass(frozen=True)
class IntentMatch:
    """An intent and its score for one utterance.

    Attributes:
        name: the intent.
        score: cosine similarity (-1..1), or 1.0 for a keyword hit.
    """

    name: str
    score: float


class IntentClassifier:
    """Scores utterances against intents given by example phrases.

    Args:
        embedder: the sentence embedder.
        intents: intent name → example phrases (at least one each).
        threshold: the score an intent needs for :meth:`classify` to return it.
        top_k: how many best examples are averaged per intent.
        keywords: intent name → words or phrases for short replies (rule 3).

    Raises:
        ValueError: an intent has no examples, or a keyword names an unknown intent.
    """

    def __init__(
        self,
        embedder: Embedder,
        intents: Mapping[str, Sequence[str]],
        threshold: float = 0.45,
        *,
        top_k: int = 2,
        keywords: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        for name, examples in intents.items():
            if not examples:
                raise ValueError(f"intent {name!r} has no example phrases")
        for name in keywords or {}:
            if name not in intents:
                raise ValueError(f"keywords for unknown intent {name!r}")
        self._embedder = embedder
        self.threshold = threshold
        self._top_k = max(1, top_k)
        self.names = tuple(intents)
        phrases = [p for examples in intents.values() for p in examples]
        owners = [i for i, examples in enumerate(intents.values()) for _ in examples]
        self._examples = embedder.embed(phrases)
        self._examples.setflags(write=False)
        self._owner = np.asarray(owners)
        self._keywords = {
            name: re.compile(r"\b(" + "|".join(re.escape(k.lower()) for k in words) + r")\b")
            for name, words in (keywords or {}).items()
            if words
        }

    def scores(self, text: str) -> dict[str, float]:
        """Every intent's score for ``text`` (rules 2 and 3); all -1.0 for blank text."""
        if not text.strip():
            return dict.fromkeys(self.names, -1.0)
        query = self._embedder.embed([text])[0]
        similarities = self._examples @ query
        result: dict[str, float] = {}
        for index, name in enumerate(self.names):
            own = np.sort(similarities[self._owner == index])[::-1][: self._top_k]
            result[name] = float(own.mean())
        lowered = text.lower()
        hits = [name for name, pattern in self._keywords.items() if pattern.search(lowered)]
        short = len(text.split()) <= KEYWORD_MAX_WORDS
        if short and max(result.values()) < self.threshold:
            result.update(dict.fromkeys(hits, 1.0))
        else:
            for name in hits:
                result[name] += KEYWORD_BONUS
        return result

    def rank(self, text: str, *, among: Sequence[str] | None = None) -> list[IntentMatch]:
        """Intents (all, or those in ``among``) scored for ``text``, best first."""
        scores = self.scores(text)
        names = self.names if among is None else [n for n in among if n in scores]
        return sorted((IntentMatch(n, scores[n]) for n in names), key=lambda m: -m.score)

    def classify(
        self, text: str, *, among: Sequence[str] | None = None, threshold: float | None = None
    ) -> IntentMatch | None:
        """The best intent when it reaches ``threshold`` (default: the classifier's), else None."""
        ranked = self.rank(text, among=among)
        limit = self.threshold if threshold is None else threshold
        return ranked[0] if ranked and ranked[0].score >= limit else None
