"""Smart Turn v3: finding the model file, and what it says on finished and cut-off turns."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from voicerail.audio import smart_turn
from voicerail.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from voicerail.audio.levels import ulaw_speech_num_frames
from voicerail.audio.resample import read_wav_mono, resample
from voicerail.audio.smart_turn import (
    MODEL_FILE_NAME,
    SmartTurnModel,
    resolve_smart_turn_model,
    smart_turn_features,
)
from voicerail.errors import ConfigError


def test_the_packaged_model_is_found_by_default_and_by_file_name() -> None:
    default = resolve_smart_turn_model()
    assert default.name == MODEL_FILE_NAME and default.is_file()
    assert resolve_smart_turn_model(MODEL_FILE_NAME) == default


def test_a_user_supplied_file_is_used_as_given(tmp_path: Path) -> None:
    own = tmp_path / "my-turn-model.onnx"
    shutil.copyfile(resolve_smart_turn_model(), own)
    assert resolve_smart_turn_model(own) == own
    assert SmartTurnModel(str(own)).model_path == own


def test_a_missing_user_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"smart turn model not found at .*nope\.onnx"):
        resolve_smart_turn_model(tmp_path / "nope.onnx")


def test_a_missing_package_fails_with_one_line_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "pipecat" else real_find_spec(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(smart_turn.importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError) as info:
        resolve_smart_turn_model()
    message = str(info.value)
    assert "\n" not in message
    assert "pip install --no-deps pipecat-ai" in message


def test_a_file_that_is_not_a_model_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    with pytest.raises(ConfigError, match="cannot load smart turn model"):
        SmartTurnModel(bad)


def test_features_have_the_model_shape_and_keep_the_last_8_seconds() -> None:
    rng = np.random.default_rng(0)
    ten_s = (rng.standard_normal(160_000) * 3000).astype(np.int16)
    features = smart_turn_features(ten_s)
    assert features.shape == (80, 800) and features.dtype == np.float32
    np.testing.assert_allclose(features, smart_turn_features(ten_s[-128_000:]), atol=1e-6)
    short = smart_turn_features(ten_s[:16_000])  # 1 s: zero-padded at the front
    assert short.shape == (80, 800)


def _phone_utterance(text: str, tmp_path: Path) -> np.ndarray:
    """``text`` in flite's voice, through the 8 kHz μ-law phone path, ending 0.2 s
    after the last audible frame (the moment the model is asked), at 16 kHz."""
    wav = tmp_path / "utterance.wav"
    subprocess.run(["flite", "-voice", "slt", "-t", text, "-o", str(wav)], check=True)
    pcm, rate_hz = read_wav_mono(wav)
    ulaw = pcm16_to_ulaw(resample(pcm, rate_hz, 8000))
    speech = ulaw[: ulaw_speech_num_frames(ulaw) * 160] + b"\xff" * 1600
    return np.frombuffer(resample(ulaw_to_pcm16(speech), 8000, 16000), dtype="<i2")


def test_a_finished_sentence_is_complete_and_a_cut_off_one_is_not(tmp_path: Path) -> None:
    model = SmartTurnModel()
    finished = model.probability(_phone_utterance("My name is Maria Lopez.", tmp_path))
    cut_off = model.probability(_phone_utterance("I would like to book an", tmp_path))
    assert finished > smart_turn.COMPLETE_THRESHOLD > cut_off
