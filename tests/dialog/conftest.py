"""Fixtures of the dialog tests: one MiniLM embedder for the whole session."""

from __future__ import annotations

import pytest

from voicerail.dialog.embeddings import MiniLMEmbedder


@pytest.fixture(scope="session")
def embedder() -> MiniLMEmbedder:
    """The packaged all-MiniLM-L6-v2 (int8 ONNX), loaded once per test session."""
    return MiniLMEmbedder()
