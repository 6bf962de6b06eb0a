"""End-of-turn detection with Smart Turn v3: has the caller finished, or only paused?

Smart Turn v3 (Daily, BSD-2-Clause; https://github.com/pipecat-ai/smart-turn) is
a Whisper-encoder classifier that reads the last 8 s of an utterance and gives
the probability that the speaker has finished their turn. It lets the
endpointing window be short when the caller has clearly finished and long when
they pause mid-thought (:mod:`voicerail.session.end_of_turn`).

The model file is the ``smart-turn-v3.2-cpu.onnx`` shipped in the
``pipecat-ai`` wheel (installed with ``pip install --no-deps``: only the file
is used, as for Silero). Its input, checked with onnxruntime on that file
(pipecat-ai 1.14.0) and matching pipecat's ``LocalSmartTurnAnalyzerV3``:

* ``input_features``: float32 ``(batch, 80, 800)``, Whisper log-mel features
  of 8 s of 16 kHz mono audio (hop 160, FFT 400, 80 Slaney mel bands,
  log10 clamped to 8 below the maximum, then ``(x + 4) / 4``);
* the audio is the utterance's last 8 s, zero-padded at the *front* to 8 s,
  then scaled to zero mean and unit variance before the features;
* output ``logits``: float32 ``(batch, 1)``, already a sigmoid probability;
  above 0.5 means the turn is complete.

The features are computed with faster-whisper's numpy ``FeatureExtractor``
(already installed for STT), whose output matches pipecat's own extractor to
within 3e-7 on the same input.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from voicerail.errors import ConfigError

MODEL_FILE_NAME = "smart-turn-v3.2-cpu.onnx"
"""The model file in the ``pipecat-ai`` wheel."""

MODEL_PACKAGE = "pipecat-ai"
SAMPLE_RATE_HZ = 16000
"""The model's input rate."""

MAX_AUDIO_S = 8.0
"""The model reads at most this much audio: the end of longer utterances."""

COMPLETE_THRESHOLD = 0.5
"""Probability above which the model says the turn is complete (the model's own cut)."""

_NORMALIZE_EPS = 1e-7
_MAX_NUM_SAMPLES = int(MAX_AUDIO_S * SAMPLE_RATE_HZ)


def _package_data_dir() -> Path:
    # find_spec() locates the top-level package without importing it: pipecat's
    # __init__ needs dependencies that `--no-deps` leaves out.
    spec = importlib.util.find_spec("pipecat")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            f"the smart turn model needs the {MODEL_PACKAGE} package, which is not installed: "
            f"pip install --no-deps {MODEL_PACKAGE} (or give a model file path)",
            field="turn_model",
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    return package_dir / "audio" / "turn" / "smart_turn" / "data"


def resolve_smart_turn_model(name_or_path: str | os.PathLike[str] | None = None) -> Path:
    """Find the Smart Turn ONNX file.

    Args:
        name_or_path: None for the packaged ``smart-turn-v3.2-cpu.onnx``; a path to
            a user-supplied ONNX file; or the bare file name of a model shipped in
            the ``pipecat-ai`` wheel.

    Returns:
        The path of an existing file.

    Raises:
        ConfigError: the file does not exist, or the package that ships it is not
            installed (one line naming the package).
    """
    if name_or_path is not None:
        path = Path(name_or_path)
        if path.is_file():
            return path
        if path.parent != Path("."):
            raise ConfigError(f"smart turn model not found at {path}", field="turn_model")
        name = path.name
    else:
        name = MODEL_FILE_NAME
    packaged = _package_data_dir() / name
    if not packaged.is_file():
        raise ConfigError(
            f"smart turn model {name} is not in the installed {MODEL_PACKAGE} package "
            f"(pip install --no-deps {MODEL_PACKAGE}, or give a model file path)",
            field="turn_model",
        )
    return packaged


def smart_turn_features(pcm16: npt.NDArray[np.int16]) -> npt.NDArray[np.float32]:
    """The model input for one utterance.

    Args:
        pcm16: signed 16-bit mono samples at 16 kHz, shape ``(num_samples,)``;
            only the last 8 s are used.

    Returns:
        float32 ``(80, 800)`` log-mel features (see the module docstring).
    """
    audio = pcm16[-_MAX_NUM_SAMPLES:].astype(np.float32) / 32768.0
    padded = np.zeros(_MAX_NUM_SAMPLES, dtype=np.float32)
    padded[_MAX_NUM_SAMPLES - audio.size :] = audio
    padded = (padded - padded.mean()) / np.sqrt(padded.var() + _NORMALIZE_EPS)
    # padding=0: exactly 8 s in, 800 frames out (the extractor drops the last frame)
    features = _feature_extractor()(padded, padding=0)
    return np.asarray(features, dtype=np.float32)


@functools.cache
def _feature_extractor() -> Any:
    """faster-whisper's extractor for 8 s chunks (its import is heavy: only when used)."""
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE_HZ, chunk_length=8)


class SmartTurnModel:
    """The Smart Turn v3 ONNX model, loaded once per server and shared by its calls.

    Inference runs on a small thread pool, off the event loop: 65–300 ms per
    utterance (features about 20 ms) on one core of a shared, busy 2-core machine
    (measured 2026-12 with onnxruntime 1.32). The pool has ``max_workers`` threads
    and each run uses one
    onnxruntime thread, so end-of-turn checks never take more than
    ``max_workers`` cores however many calls pause at once; more checks queue.

    Args:
        name_or_path: see :func:`resolve_smart_turn_model`.
        max_workers: threads running inference (at least 1).

    Raises:
        ConfigError: the model file cannot be found or loaded.
        ValueError: ``max_workers`` is below 1.
    """

    def __init__(
        self, name_or_path: str | os.PathLike[str] | None = None, *, max_workers: int = 1
    ) -> None:
        if max_workers < 1:
            raise ValueError(f"max_workers must be at least 1, got {max_workers}")
        path = resolve_smart_turn_model(name_or_path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        # onnxruntime's load errors share no base class but Exception; each becomes
        # a ConfigError naming the file.
        except Exception as exc:
            raise ConfigError(
                f"cannot load smart turn model {path}: {exc}", field="turn_model"
            ) from exc
        self.model_path = path
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="turn")

    def probability(self, pcm16: npt.NDArray[np.int16]) -> float:
        """Probability that the utterance in ``pcm16`` is a finished turn (blocking).

        Args:
            pcm16: signed 16-bit mono samples at 16 kHz ending where the caller
                stopped speaking, shape ``(num_samples,)``.

        Returns:
            A probability in [0, 1]; above :data:`COMPLETE_THRESHOLD` is complete.
        """
        features = smart_turn_features(pcm16)[np.newaxis]
        outputs = self._session.run(None, {"input_features": features})
        return float(np.asarray(outputs[0]).reshape(-1)[0])

    async def probability_async(self, pcm16: npt.NDArray[np.int16]) -> float:
        """:meth:`probability` on the model's thread pool; cancelling abandons the result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.probability, pcm16)

    def close(self) -> None:
        """Stop the thread pool (runs under way finish)."""
        self._executor.shutdown(wait=False, cancel_futures=True)
