"""Voice activity detection: Silero VAD on onnxruntime, and a cheap energy VAD.

Both detectors take PCM in chunks of any length (for example 20 ms Twilio frames),
buffer it, and return one speech probability per completed analysis window. Feed
the probabilities to :class:`voicerail.audio.endpointing.Endpointer`.

Silero VAD v5 (https://github.com/snakers4/silero-vad; the ``silero_vad.onnx`` in
the ``silero-vad`` 6.2 wheel) runs without torch. This module reproduces
``OnnxWrapper.__call__`` of that wheel's ``silero_vad/utils_vad.py``:

- samples are float32, ``int16 / 32768``;
- a window is 256 samples at 8000 Hz, 512 at 16000 Hz (32 ms either way);
- the model input is the window preceded by a context: the last 32 (8000 Hz) or
  64 (16000 Hz) samples of the previous model input, zeros for the first window;
- the recurrent state is float32 ``[2, 1, 128]``, zeros at the start, replaced by
  the model's second output after every window;
- ``sr`` is an int64 scalar; the first output ``[1, 1]`` is the speech probability.

The model (weights and one ``InferenceSession``) is shared by every call of a
process; each call owns a :class:`SileroVAD` with its own state and context.

Without the ``silero-vad`` package (a plain ``pip install 'voicerail[speech]'``:
``make setup`` installs it ``--no-deps``, since it declares torch), the model is
the ``silero_vad_v6.onnx`` that faster-whisper ships in its assets (faster-whisper
1.2, ``faster_whisper/vad.py``). That export has another signature, which
:class:`SileroVADModel` adapts so that callers see no difference:

- inputs ``input`` float32 ``[seq, 576]`` (64 context + 512 samples, 16000 Hz
  only), ``h`` and ``c`` float32 ``[1, 1, 128]``; outputs ``speech_probs``
  ``[seq]``, ``hn``, ``cn``. Rows of ``input`` are one stream's consecutive
  windows, so streams cannot share a run: a batch is run row by row;
- the v5 state ``[2, batch, 128]`` carries ``h`` in ``[0]`` and ``c`` in ``[1]``;
- 8000 Hz windows (32 context + 256 samples) are upsampled ×2 by linear
  interpolation to 576 samples. On the 40 first Asterisk prompts (8 kHz) its
  speech/non-speech decisions at 0.5 agree with v5's on 94 % of windows; the
  remaining differences are the model's (v6 on a band-limited resampling gave
  92 to 93 %).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from voicerail.errors import ConfigError

SILERO_SAMPLE_RATES_HZ = (8000, 16000)
"""Sample rates the Silero model accepts."""

_SILERO_WINDOW_NUM_SAMPLES = {8000: 256, 16000: 512}
_SILERO_CONTEXT_NUM_SAMPLES = {8000: 32, 16000: 64}
_SILERO_STATE_SHAPE = (2, 1, 128)
_INT16_FULL_SCALE = 32768.0

Float32Array = npt.NDArray[np.float32]


class VoiceActivityDetector(Protocol):
    """What the session driver needs from a VAD: PCM in, probabilities out."""

    @property
    def sample_rate_hz(self) -> int:
        """Sample rate of the PCM that :meth:`process` takes."""
        ...

    @property
    def frame_num_samples(self) -> int:
        """Samples per analysis window (one probability each)."""
        ...

    def process(self, pcm: bytes) -> list[float]:
        """Take signed 16-bit little-endian mono PCM; return one probability per window."""
        ...

    def reset(self) -> None:
        """Forget buffered audio and state, as at the start of a call."""
        ...


def default_silero_model_path() -> Path:
    """Locate the Silero VAD ONNX file among the installed packages.

    ``silero_vad.onnx`` of the ``silero-vad`` package when it is installed, else
    ``silero_vad_v6.onnx`` from faster-whisper's assets (see the module docstring).

    Returns:
        The path of the ONNX file (not checked for existence).

    Raises:
        ConfigError: neither package is installed (one line naming the extra).
    """
    # Importing silero_vad runs its __init__, which imports torch (not installed);
    # importing faster_whisper loads ctranslate2. find_spec() on a top-level
    # package only locates it.
    silero = _package_dir("silero_vad")
    if silero is not None:
        return silero / "data" / "silero_vad.onnx"
    whisper = _package_dir("faster_whisper")
    if whisper is not None:
        return whisper / "assets" / "silero_vad_v6.onnx"
    raise ConfigError(
        "no silero vad model: pip install 'voicerail[speech]' (faster-whisper ships one), "
        "or serve with --vad energy",
        field="model_path",
    )


def _package_dir(name: str) -> Path | None:
    """An installed top-level package's directory, without importing it, or None."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


class SileroVADModel:
    """The Silero VAD ONNX model, loaded once and shared by every call.

    ``InferenceSession.run`` is thread-safe and this object holds no per-call state,
    so one instance can serve any number of :class:`SileroVAD` at once. It uses one
    intra-op and one inter-op thread: a 32 ms window takes about 0.25 ms, and
    concurrent calls are the parallelism.

    Args:
        model_path: an ONNX file; by default the one shipped in the ``silero-vad``
            package, else faster-whisper's (see :func:`default_silero_model_path`).

    Raises:
        ConfigError: the package is missing, or the file is missing or not a
            loadable ONNX model.
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None) -> None:
        path = Path(model_path) if model_path is not None else default_silero_model_path()
        if not path.is_file():
            raise ConfigError(f"silero vad model not found at {path}", field="model_path")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        # onnxruntime's load errors (InvalidProtobuf, NoSuchFile, Fail, ...) share no
        # base class but Exception; each becomes a ConfigError naming the file.
        except Exception as exc:
            raise ConfigError(
                f"cannot load silero vad model {path}: {exc}", field="model_path"
            ) from exc
        self.model_path = path
        inputs = {i.name for i in self._session.get_inputs()}
        #: ``h/c`` for faster-whisper's v6 export, ``state`` for the silero-vad wheel's.
        self.signature = "h/c" if {"h", "c"} <= inputs else "state"

    def run(
        self, model_input: Float32Array, state: Float32Array, sample_rate_hz: int
    ) -> tuple[float, Float32Array]:
        """Run the model on one window.

        Args:
            model_input: float32 ``[1, context + window]`` samples in [-1, 1): the
                context then the window (see the module docstring).
            state: float32 ``[2, 1, 128]`` recurrent state from the previous window.
            sample_rate_hz: 8000 or 16000.

        Returns:
            ``(probability, new_state)``.
        """
        probability, new_state = self.run_batch(model_input, state, sample_rate_hz)
        return float(probability[0, 0]), new_state

    def run_batch(
        self, model_inputs: Float32Array, states: Float32Array, sample_rate_hz: int
    ) -> tuple[Float32Array, Float32Array]:
        """Run the model on one window from each of several streams at once.

        Rows are independent: row ``i`` gives what :meth:`run` gives for
        ``model_inputs[i:i+1]`` and ``states[:, i:i+1]``.

        Args:
            model_inputs: float32 ``[batch, context + window]``.
            states: float32 ``[2, batch, 128]``.
            sample_rate_hz: 8000 or 16000, the same for every row.

        Returns:
            ``(probabilities [batch, 1], new_states [2, batch, 128])``.
        """
        if self.signature == "h/c":
            return self._run_rows_v6(model_inputs, states, sample_rate_hz)
        probabilities, new_states = self._session.run(
            None,
            {
                "input": model_inputs,
                "state": states,
                "sr": np.array(sample_rate_hz, dtype=np.int64),
            },
        )
        return probabilities, new_states

    def _run_rows_v6(
        self, model_inputs: Float32Array, states: Float32Array, sample_rate_hz: int
    ) -> tuple[Float32Array, Float32Array]:
        """:meth:`run_batch` on faster-whisper's v6 export (module docstring)."""
        if sample_rate_hz == 8000:
            model_inputs = _upsample_2x(model_inputs)
        batch = model_inputs.shape[0]
        probabilities = np.empty((batch, 1), dtype=np.float32)
        new_states = np.empty_like(states)
        for row in range(batch):
            speech, h, c = self._session.run(
                None,
                {
                    "input": model_inputs[row : row + 1],
                    "h": np.ascontiguousarray(states[0:1, row : row + 1]),
                    "c": np.ascontiguousarray(states[1:2, row : row + 1]),
                },
            )
            probabilities[row, 0] = speech[0]
            new_states[0, row] = h[0, 0]
            new_states[1, row] = c[0, 0]
        return probabilities, new_states


def _upsample_2x(rows: Float32Array) -> Float32Array:
    """8000 → 16000 Hz by linear interpolation, each row alone: ``[b, n]`` → ``[b, 2n]``
    (the last sample is held, as ``np.interp`` does)."""
    upsampled = np.empty((rows.shape[0], 2 * rows.shape[1]), dtype=np.float32)
    upsampled[:, 0::2] = rows
    upsampled[:, 1:-1:2] = (rows[:, :-1] + rows[:, 1:]) * np.float32(0.5)
    upsampled[:, -1] = rows[:, -1]
    return upsampled


class _WindowedVAD:
    """What both detectors share: fixed windows over s16le mono PCM, one score each.

    Subclasses implement ``_score(window) -> float`` and, when they keep state
    across windows, ``_reset_state()``.
    """

    def __init__(self, sample_rate_hz: int, window_num_samples: int) -> None:
        self._sample_rate_hz = sample_rate_hz
        self._windows = _WindowBuffer(window_num_samples)

    @property
    def sample_rate_hz(self) -> int:
        """Sample rate of the PCM that :meth:`process` takes."""
        return self._sample_rate_hz

    @property
    def frame_num_samples(self) -> int:
        """Samples per window (Silero: 256 at 8000 Hz, 512 at 16000 Hz)."""
        return self._windows.window_num_samples

    @property
    def frame_duration_s(self) -> float:
        """Duration of one window in seconds (0.032 for Silero)."""
        return self.frame_num_samples / self._sample_rate_hz

    def process(self, pcm: bytes) -> list[float]:
        """Add audio and score every window it completes.

        Args:
            pcm: signed 16-bit little-endian mono PCM at ``sample_rate_hz``, any
                length; a trailing partial window (or odd byte) waits for the next
                call.

        Returns:
            One score in [0, 1] per completed window, oldest first; empty when no
            window completed.
        """
        return [self._score(window) for window in self._windows.push(pcm)]

    def reset(self) -> None:
        """Forget buffered audio and any state, as at the start of a call."""
        self._windows.clear()
        self._reset_state()

    def _score(self, window: npt.NDArray[np.int16]) -> float:
        raise NotImplementedError

    def _reset_state(self) -> None:
        """Nothing to reset by default."""


class SileroVAD(_WindowedVAD):
    """One call's Silero VAD: the recurrent state over a shared model.

    Not thread-safe: one instance per audio stream.

    Args:
        model: the shared model.
        sample_rate_hz: rate of the PCM given to :meth:`process`: 8000 or 16000.

    Raises:
        ValueError: ``sample_rate_hz`` is not 8000 or 16000.
    """

    def __init__(self, model: SileroVADModel, sample_rate_hz: int = 8000) -> None:
        if sample_rate_hz not in SILERO_SAMPLE_RATES_HZ:
            raise ValueError(f"silero vad takes 8000 or 16000 hz audio, got {sample_rate_hz} hz")
        super().__init__(sample_rate_hz, _SILERO_WINDOW_NUM_SAMPLES[sample_rate_hz])
        self._model = model
        self._context_num_samples = _SILERO_CONTEXT_NUM_SAMPLES[sample_rate_hz]
        self._state: Float32Array = np.zeros(_SILERO_STATE_SHAPE, dtype=np.float32)
        self._context: Float32Array = np.zeros(self._context_num_samples, dtype=np.float32)

    def _score(self, window: npt.NDArray[np.int16]) -> float:
        model_input = self._model_input(window)
        probability, self._state = self._model.run(model_input, self._state, self._sample_rate_hz)
        return probability

    def _model_input(self, window: npt.NDArray[np.int16]) -> Float32Array:
        """``[1, context + window]`` float32 for ``window``; the context moves on."""
        samples = window.astype(np.float32) / np.float32(_INT16_FULL_SCALE)
        model_input = np.concatenate((self._context, samples))[np.newaxis, :]
        self._context = model_input[0, -self._context_num_samples :]
        return model_input

    def _reset_state(self) -> None:
        self._state = np.zeros(_SILERO_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(self._context_num_samples, dtype=np.float32)


class EnergyVAD(_WindowedVAD):
    """A cheap VAD on the RMS level of each window, for load tests and fallbacks.

    The level is in dBFS relative to a full-scale square wave (RMS 32768). The
    "probability" is a logistic of the level: 0.5 at ``threshold_dbfs``, rising
    towards 1 above it with a scale of ``slope_db``, so that the endpointer's
    threshold and hysteresis keep their meaning. Digital silence scores 0.

    Args:
        sample_rate_hz: rate of the PCM given to :meth:`process`.
        threshold_dbfs: level that scores 0.5. Telephone speech sits around -20 to
            -30 dBFS, line noise below -50.
        slope_db: dB over which the score moves from 0.5 to about 0.73.
        frame_duration_s: window duration; 0.032 s by default, like Silero.

    Raises:
        ValueError: a rate, slope or window duration is not positive, or the window
            holds no sample.
    """

    def __init__(
        self,
        sample_rate_hz: int = 8000,
        threshold_dbfs: float = -40.0,
        slope_db: float = 3.0,
        frame_duration_s: float = 0.032,
    ) -> None:
        if sample_rate_hz <= 0 or slope_db <= 0 or frame_duration_s <= 0:
            raise ValueError(
                f"sample_rate_hz, slope_db and frame_duration_s must be positive, got "
                f"{sample_rate_hz}, {slope_db} and {frame_duration_s}"
            )
        window_num_samples = round(sample_rate_hz * frame_duration_s)
        if window_num_samples < 1:
            raise ValueError(
                f"a {frame_duration_s} s window at {sample_rate_hz} hz holds no sample"
            )
        self.threshold_dbfs = threshold_dbfs
        self.slope_db = slope_db
        super().__init__(sample_rate_hz, window_num_samples)

    def _score(self, window: npt.NDArray[np.int16]) -> float:
        samples = window.astype(np.float64)
        mean_square = float(np.mean(samples * samples))
        if mean_square == 0.0:
            return 0.0
        level_dbfs = 10.0 * math.log10(mean_square / _INT16_FULL_SCALE**2)
        # Clamped so that exp() cannot overflow on extreme levels or slopes.
        z = max(-50.0, min(50.0, (level_dbfs - self.threshold_dbfs) / self.slope_db))
        return 1.0 / (1.0 + math.exp(-z))


class _WindowBuffer:
    """Collects PCM bytes and hands out whole windows of int16 samples."""

    def __init__(self, window_num_samples: int) -> None:
        self.window_num_samples = window_num_samples
        self._window_num_bytes = 2 * window_num_samples
        self._pending = bytearray()
        self._no_windows: npt.NDArray[np.int16] = np.empty((0, window_num_samples), np.int16)

    def push(self, pcm: bytes) -> npt.NDArray[np.int16]:
        """Append ``pcm``; return the completed windows as ``[num_windows, window]``."""
        self._pending += pcm
        num_windows = len(self._pending) // self._window_num_bytes
        if num_windows == 0:  # most 20 ms frames complete no 32 ms window
            return self._no_windows
        num_bytes = num_windows * self._window_num_bytes
        samples = np.frombuffer(bytes(self._pending[:num_bytes]), dtype="<i2")
        del self._pending[:num_bytes]
        return samples.astype(np.int16, copy=False).reshape(num_windows, self.window_num_samples)

    def clear(self) -> None:
        self._pending.clear()
