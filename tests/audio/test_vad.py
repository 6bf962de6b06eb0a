"""Voice activity detection on real recorded speech, silence and noise."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from voicerail.audio.endpointing import Endpointer, SpeechEnded, SpeechStarted
from voicerail.audio.resample import read_wav_mono
from voicerail.audio.vad import (
    EnergyVAD,
    SileroVAD,
    SileroVADModel,
    VoiceActivityDetector,
    default_silero_model_path,
)
from voicerail.errors import ConfigError

ASTERISK_DIR = Path("/usr/share/asterisk/sounds/en")  # 8 kHz telephone prompts
LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")  # 16 kHz read speech
LIBRIVOX_CLIP = LIBRIVOX_DIR / "sense_and_sensibility_01_austen_64kb-0880.wav"
PROMPTS = ["all-circuits-busy-now", "agent-pass", "vm-goodbye", "conf-onlyperson"]

slow = pytest.mark.slow  # loads the Silero ONNX model


def _needs(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"test speech {path} is not installed (see `make apt`)")


def _v6_path() -> Path:
    spec = importlib.util.find_spec("faster_whisper")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "silero_vad_v6.onnx"


@pytest.fixture(scope="module", params=["silero-vad", "faster-whisper-v6"])
def model(request: pytest.FixtureRequest) -> SileroVADModel:
    """Each behaviour holds for the silero-vad wheel's model and for faster-whisper's
    v6 export, which a plain pip install falls back to."""
    if request.param == "silero-vad":
        return SileroVADModel()
    return SileroVADModel(_v6_path())


def _feed_in_20ms_frames(vad: VoiceActivityDetector, pcm: bytes) -> list[float]:
    frame_num_bytes = 2 * vad.sample_rate_hz // 50
    probabilities: list[float] = []
    for start in range(0, len(pcm), frame_num_bytes):
        probabilities += vad.process(pcm[start : start + frame_num_bytes])
    return probabilities


def _padded_speech(path: Path, silence_s: float = 1.0) -> tuple[bytes, int, int]:
    """The recording between ``silence_s`` of digital silence on each side."""
    _needs(path)
    pcm, rate_hz = read_wav_mono(path)
    silence = bytes(2 * round(silence_s * rate_hz))
    return silence + pcm + silence, rate_hz, len(pcm) // 2


def _window_levels_dbfs(pcm: bytes, window_num_samples: int, num_windows: int) -> np.ndarray:
    samples = np.frombuffer(pcm, dtype="<i2")[: num_windows * window_num_samples]
    windows = samples.astype(np.float64).reshape(num_windows, window_num_samples)
    mean_square = np.maximum(np.mean(windows**2, axis=1), 1e-9)
    return 10 * np.log10(mean_square / 32768.0**2)


@slow
def test_default_model_is_found_without_importing_the_package() -> None:
    """The ONNX file comes from the installed silero-vad wheel."""
    path = default_silero_model_path()
    assert path.name == "silero_vad.onnx"
    assert path.parent.name == "data"
    assert path.is_file()


@slow
@pytest.mark.parametrize("prompt", PROMPTS)
def test_silero_scores_telephone_speech_high_and_silence_low(
    model: SileroVADModel, prompt: str
) -> None:
    """8 kHz prompts: loud windows are speech, surrounding digital silence is not."""
    pcm, rate_hz, _ = _padded_speech(ASTERISK_DIR / f"{prompt}.wav")
    vad = SileroVAD(model, sample_rate_hz=rate_hz)
    probabilities = np.array(_feed_in_20ms_frames(vad, pcm))
    assert len(probabilities) == len(pcm) // 2 // 256
    loud = _window_levels_dbfs(pcm, 256, len(probabilities)) > -30
    assert np.mean(probabilities[loud] >= 0.5) >= 0.9
    assert probabilities.max() > 0.95
    silence_num_windows = 28  # the first 0.9 s
    assert probabilities[:silence_num_windows].max() < 0.1
    assert probabilities[-silence_num_windows:].max() < 0.1


@slow
def test_silero_scores_16khz_read_speech(model: SileroVADModel) -> None:
    """16 kHz LibriVox speech: 512-sample windows, speech high, silence low."""
    pcm, rate_hz, _ = _padded_speech(LIBRIVOX_CLIP)
    vad = SileroVAD(model, sample_rate_hz=rate_hz)
    assert (vad.frame_num_samples, vad.frame_duration_s) == (512, 0.032)
    probabilities = np.array(_feed_in_20ms_frames(vad, pcm))
    loud = _window_levels_dbfs(pcm, 512, len(probabilities)) > -30
    assert np.mean(probabilities[loud] >= 0.5) >= 0.95
    assert probabilities[:28].max() < 0.1
    assert probabilities[-28:].max() < 0.1


@slow
@pytest.mark.parametrize("level_dbfs", [-60, -40, -30])
def test_silero_does_not_take_white_noise_for_speech(
    model: SileroVADModel, level_dbfs: float
) -> None:
    """Steady line noise scores low at any level."""
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(16000) * 32768 * 10 ** (level_dbfs / 20)
    probabilities = SileroVAD(model).process(noise.astype("<i2").tobytes())
    assert len(probabilities) == 62
    assert max(probabilities) < 0.2


@slow
def test_silero_results_do_not_depend_on_chunking(model: SileroVADModel) -> None:
    """All at once, 20 ms frames or odd byte counts: the same windows, the same scores."""
    pcm, _, _ = _padded_speech(ASTERISK_DIR / "vm-goodbye.wav", silence_s=0.2)
    whole = SileroVAD(model).process(pcm)
    framed = _feed_in_20ms_frames(SileroVAD(model), pcm)
    vad = SileroVAD(model)
    odd: list[float] = []
    for start in range(0, len(pcm), 333):
        odd += vad.process(pcm[start : start + 333])
    assert whole == framed == odd


@slow
def test_silero_calls_sharing_a_model_keep_their_own_state(model: SileroVADModel) -> None:
    """Interleaving two calls on one model gives each the scores it gets alone."""
    speech, _, _ = _padded_speech(ASTERISK_DIR / "vm-goodbye.wav", silence_s=0.2)
    silence = bytes(len(speech))
    alone = SileroVAD(model).process(speech)
    first, second = SileroVAD(model), SileroVAD(model)
    interleaved: list[float] = []
    for start in range(0, len(speech), 320):
        interleaved += first.process(speech[start : start + 320])
        second.process(silence[start : start + 320])
    assert interleaved == alone


@slow
def test_silero_reset_restarts_the_stream(model: SileroVADModel) -> None:
    """After reset the same audio scores the same, and a partial window is dropped."""
    pcm, _, _ = _padded_speech(ASTERISK_DIR / "vm-goodbye.wav", silence_s=0.2)
    vad = SileroVAD(model)
    first = vad.process(pcm)
    vad.process(b"\x10\x00" * 100)  # a partial window, left pending
    vad.reset()
    assert vad.process(pcm) == first


@slow
def test_silero_with_endpointer_finds_one_utterance(model: SileroVADModel) -> None:
    """A prompt between silences gives one start and one end near its edges."""
    pcm, rate_hz, num_samples = _padded_speech(ASTERISK_DIR / "all-circuits-busy-now.wav")
    vad = SileroVAD(model, sample_rate_hz=rate_hz)
    endpointer = Endpointer(window_s=vad.frame_duration_s)
    events = [e for p in _feed_in_20ms_frames(vad, pcm) for e in endpointer.process(p)]
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    ended = events[1]
    assert isinstance(ended, SpeechEnded)
    assert ended.speech_start_s == pytest.approx(1.0, abs=0.15)
    assert ended.speech_end_s == pytest.approx(1.0 + num_samples / rate_hz, abs=0.3)


@slow
def test_silero_rejects_unsupported_rates(model: SileroVADModel) -> None:
    """Only 8000 and 16000 Hz are accepted."""
    with pytest.raises(ValueError, match="8000 or 16000 hz audio, got 44100 hz"):
        SileroVAD(model, sample_rate_hz=44100)


def test_without_any_model_package_one_line_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Neither silero-vad nor faster-whisper: one line saying what to install."""
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as info:
        SileroVADModel()
    assert str(info.value) == (
        "<config>: model_path: no silero vad model: pip install 'voicerail[speech]' "
        "(faster-whisper ships one), or serve with --vad energy"
    )


@slow
def test_without_the_silero_vad_package_faster_whispers_model_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plain pip install (no silero-vad) loads faster-whisper's v6 export."""
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "silero_vad" else real_find_spec(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    model = SileroVADModel()
    assert model.model_path.name == "silero_vad_v6.onnx"
    assert model.signature == "h/c"


@slow
@pytest.mark.parametrize("rate_hz", [8000, 16000])
def test_v6_agrees_with_the_silero_vad_wheels_model(rate_hz: int) -> None:
    """Speech/non-speech at 0.5 agree on at least 90 % of windows (94 % measured at 8 kHz)."""
    clips = [ASTERISK_DIR / f"{p}.wav" for p in PROMPTS] if rate_hz == 8000 else [LIBRIVOX_CLIP]
    v5, v6 = SileroVADModel(), SileroVADModel(_v6_path())
    agree = total = 0
    for clip in clips:
        pcm, clip_rate_hz, _ = _padded_speech(clip, silence_s=0.3)
        assert clip_rate_hz == rate_hz
        a = np.array(SileroVAD(v5, rate_hz).process(pcm)) >= 0.5
        b = np.array(SileroVAD(v6, rate_hz).process(pcm)) >= 0.5
        agree += int(np.sum(a == b))
        total += len(a)
    assert agree / total >= 0.9, agree / total


@slow
def test_v6_batch_rows_are_independent_streams() -> None:
    """run_batch on faster-whisper's export gives each row what run gives it alone."""
    v6 = SileroVADModel(_v6_path())
    rng = np.random.default_rng(1)
    inputs = (rng.standard_normal((3, 288)) * 0.1).astype(np.float32)
    states = (rng.standard_normal((2, 3, 128)) * 0.1).astype(np.float32)
    probabilities, new_states = v6.run_batch(inputs, states, 8000)
    for row in range(3):
        alone, alone_state = v6.run(inputs[row : row + 1], states[:, row : row + 1], 8000)
        assert probabilities[row, 0] == pytest.approx(alone, abs=1e-6)
        np.testing.assert_allclose(new_states[:, row : row + 1], alone_state, atol=1e-6)


def test_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    """A wrong model_path names the path."""
    with pytest.raises(ConfigError, match="silero vad model not found at") as info:
        SileroVADModel(tmp_path / "nope.onnx")
    assert info.value.field == "model_path"


def test_corrupt_model_file_is_a_config_error(tmp_path: Path) -> None:
    """A file that is not ONNX fails at load with a ConfigError."""
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="cannot load silero vad model"):
        SileroVADModel(path)


def _tone(level_dbfs: float, num_samples: int) -> bytes:
    """A square wave, whose RMS equals its peak: exactly ``level_dbfs``."""
    amplitude = 32768 * 10 ** (level_dbfs / 20)
    signs = np.where(np.arange(num_samples) % 40 < 20, 1.0, -1.0)
    return np.rint(signs * amplitude).astype("<i2").tobytes()


def test_energy_vad_scores_against_its_threshold() -> None:
    """Silence is 0, the threshold level 0.5, well above it near 1, below near 0."""
    vad = EnergyVAD(sample_rate_hz=8000, threshold_dbfs=-40.0)
    assert (vad.frame_num_samples, vad.frame_duration_s) == (256, 0.032)
    assert vad.process(bytes(512)) == [0.0]
    assert vad.process(_tone(-40.0, 256)) == [pytest.approx(0.5, abs=0.01)]
    assert vad.process(_tone(-20.0, 256))[0] > 0.99
    assert vad.process(_tone(-60.0, 256))[0] < 0.01


def test_energy_vad_buffers_partial_windows() -> None:
    """20 ms frames give a score each time a 32 ms window completes."""
    vad = EnergyVAD(sample_rate_hz=16000)
    assert vad.frame_num_samples == 512
    counts = [len(vad.process(bytes(640))) for _ in range(8)]
    assert counts == [0, 1, 0, 1, 1, 0, 1, 1]
    vad.process(bytes(100))
    vad.reset()
    assert vad.process(bytes(1022)) == []


def test_energy_vad_with_endpointer_on_real_speech() -> None:
    """The cheap VAD also finds one utterance in a telephone prompt."""
    pcm, rate_hz, _ = _padded_speech(ASTERISK_DIR / "all-circuits-busy-now.wav")
    vad = EnergyVAD(sample_rate_hz=rate_hz)
    endpointer = Endpointer(window_s=vad.frame_duration_s)
    events = [e for p in _feed_in_20ms_frames(vad, pcm) for e in endpointer.process(p)]
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert events[0].speech_start_s == pytest.approx(1.0, abs=0.15)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate_hz": 0}, "must be positive, got 0, 3.0 and 0.032"),
        ({"slope_db": -1.0}, "must be positive, got 8000, -1.0 and 0.032"),
        ({"frame_duration_s": 0.00001}, "holds no sample"),
    ],
)
def test_energy_vad_rejects_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    """Non-positive settings and empty windows raise with the values."""
    with pytest.raises(ValueError, match=message):
        EnergyVAD(**kwargs)  # type: ignore[arg-type]
