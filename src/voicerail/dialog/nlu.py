"""Intent recognition by nearest example phrases in MiniLM embedding space.

An agent's intents come with example phrases. Their embeddings are computed
once per agent (shared, read-only, by every call); a caller's utterance is
embedded and scored against each intent as the mean of its ``top_k`` best
cosine similarities, which is steadier than the single best match when one
example is an outlier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt


class Embedder(Protocol):
    """Anything that turns sentences into unit vectors (``[n, dim]`` float32)."""

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]: ...


@dataclass(frozen=True)
class IntentMatch:
    """The best intent for an utterance and its score (cosine similarity, -1..1)."""

    name: str
    score: float


class IntentClassifier:
    """Scores utterances against intents given by example phrases.

    Args:
        embedder: the sentence embedder.
        intents: intent name → example phrases (at least one each).
        top_k: how many best examples are averaged per intent.

    Raises:
        ValueError: an intent has no examples.
    """

    def __init__(self, embedder: Embedder, intents: dict[str, list[str]], *, top_k: int = 2):
        for name, examples in intents.items():
            if not examples:
                raise ValueError(f"intent {name!r} has no example phrases")
        self._embedder = embedder
        self._top_k = top_k
        self._names = list(intents)
        self._vectors = {name: embedder.embed(list(ex)) for name, ex in intents.items()}

    def scores(self, text: str, *, among: list[str] | None = None) -> list[IntentMatch]:
        """Every intent (or those in ``among``) scored for ``text``, best first."""
        query = self._embedder.embed([text])[0]
        matches = []
        for name in among or self._names:
            sims = np.sort(self._vectors[name] @ query)[::-1][: self._top_k]
            matches.append(IntentMatch(name, float(sims.mean())))
        return sorted(matches, key=lambda m: m.score, reverse=True)

    def classify(
        self, text: str, *, threshold: float, among: list[str] | None = None
    ) -> IntentMatch | None:
        """The best intent when its score reaches ``threshold``, else None."""
        if not text.strip():
            return None
        best = self.scores(text, among=among)[0]
        return best if best.score >= threshold else None
