"""Caller audio for simulations: synthesized once, mixed with noise, pre-encoded.

Every turn is turned into 8 kHz μ-law before the first call is placed, so the
callers do no audio work while the run is timed. Synthesis goes through
Debian's ``flite`` and ``espeak-ng`` (a voice other than the agent's), cached
on disk by voice and text; recorded speech comes from WAV files or from the
Debian speech packages (see :mod:`voicerail.testing.speech_corpus`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from voicerail.audio.g711 import pcm16_to_ulaw
from voicerail.audio.resample import read_wav_mono, resample
from voicerail.errors import ConfigError
from voicerail.sim.caller import CallerTurn
from voicerail.sim.scenario import CallPlan, NoiseSpec, TurnPlan
from voicerail.testing.speech_corpus import ASTERISK_SOUNDS_DIR, POCKETSPHINX_DATA_DIR

RATE_HZ = 8000
BABBLE_PROMPTS = ("agent-pass", "all-circuits-busy-now", "vm-intro", "auth-thankyou")


def synthesize_wav(text: str, voice: str, cache_dir: Path) -> Path:
    """Speak ``text`` with ``voice`` (``flite:slt``, ``espeak-ng:en-us+f3``) into a cached WAV.

    Raises:
        ConfigError: unknown engine, or the engine is not installed.
    """
    engine, _, name = voice.partition(":")
    digest = hashlib.sha1(f"{voice}\n{text}".encode()).hexdigest()[:20]
    path = cache_dir / f"{digest}.wav"
    if path.exists():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    exe = shutil.which(engine)
    if exe is None or engine not in ("flite", "espeak-ng"):
        raise ConfigError(f"voice {voice!r}: {engine} is not installed (apt-get install {engine})")
    partial = path.with_suffix(".part.wav")
    if engine == "flite":
        command = [exe, "-voice", name, "-t", text, "-o", str(partial)]
    else:
        command = [exe, "-v", name, "-s", "165", "-w", str(partial), text]
    subprocess.run(command, check=True, capture_output=True)
    partial.replace(path)
    return path


def resolve_audio(reference: str, base_dir: Path) -> Path:
    """The WAV file an ``audio:`` reference names.

    Raises:
        ConfigError: the file does not exist (names the Debian package to install).
    """
    scheme, sep, rest = reference.partition(":")
    if sep and scheme == "asterisk":
        path = ASTERISK_SOUNDS_DIR / f"{rest}.wav"
        package = "asterisk-core-sounds-en-wav"
    elif sep and scheme == "pocketsphinx":
        path = POCKETSPHINX_DATA_DIR / f"{rest}.wav"
        package = "pocketsphinx-testdata"
    else:
        path = Path(reference) if Path(reference).is_absolute() else base_dir / reference
        package = ""
    if not path.is_file():
        hint = f" (apt-get install {package})" if package else ""
        raise ConfigError(f"audio file {path} not found{hint}")
    return path


def load_pcm8k(path: Path) -> bytes:
    """A WAV as s16le mono PCM at 8 kHz."""
    pcm, rate_hz = read_wav_mono(path)
    return resample(pcm, rate_hz, RATE_HZ) if rate_hz != RATE_HZ else pcm


def trim_silence(pcm: bytes, *, threshold: int = 32, keep_s: float = 0.05) -> bytes:
    """Cut a synthesizer's digital silence at both ends of s16le 8 kHz PCM, keeping
    ``keep_s``, so that "the end of the caller's audio" is the end of the speech."""
    samples = np.frombuffer(pcm, dtype="<i2")
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > threshold)
    if not len(loud):
        return pcm
    keep = int(keep_s * RATE_HZ)
    start, end = max(0, int(loud[0]) - keep), min(len(samples), int(loud[-1]) + 1 + keep)
    return samples[start:end].tobytes()


def mix_noise(pcm: bytes, noise: NoiseSpec, *, seed: int = 0) -> bytes:
    """Mix noise into s16le mono PCM (8 kHz) at ``noise.snr_db``; 0.3 s of noise
    lead and tail, as a caller in a noisy place has before and after speaking."""
    speech = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    pad = np.zeros(int(0.3 * RATE_HZ))
    speech = np.concatenate([pad, speech, pad])
    rng = np.random.default_rng(seed)
    if noise.kind == "white":
        background = rng.standard_normal(len(speech))
    elif noise.kind == "pink":
        background = _pink(len(speech), rng)
    else:
        background = _babble(len(speech))
    speech_rms = float(np.sqrt(np.mean(speech**2))) or 1.0
    noise_rms = float(np.sqrt(np.mean(background**2))) or 1.0
    scale = speech_rms / noise_rms / (10 ** (noise.snr_db / 20))
    mixed = np.clip(speech + background * scale, -32768, 32767)
    return mixed.astype("<i2").tobytes()


def _pink(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.arange(len(spectrum), dtype=np.float64)
    freqs[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(freqs), n=num_samples)


def _babble(num_samples: int) -> np.ndarray:
    total = np.zeros(num_samples)
    for offset, name in enumerate(BABBLE_PROMPTS):
        path = ASTERISK_SOUNDS_DIR / f"{name}.wav"
        if not path.is_file():
            raise ConfigError(f"{path} not found (apt-get install asterisk-core-sounds-en-wav)")
        voice = np.frombuffer(load_pcm8k(path), dtype="<i2").astype(np.float64)
        voice = np.tile(voice, num_samples // max(len(voice), 1) + 2)
        start = (offset * 1777) % max(len(voice) - num_samples, 1)
        total += voice[start : start + num_samples]
    return total


class AudioLibrary:
    """Pre-encoded caller turns, shared by every caller that says the same thing.

    Args:
        cache_dir: where synthesized WAVs are kept between runs.
        workers: parallel synthesis processes.
    """

    def __init__(self, cache_dir: Path, *, workers: int = 2) -> None:
        self.cache_dir = cache_dir
        self.workers = workers
        self._ulaw: dict[tuple[str, str, str, str], bytes] = {}

    def prepare(self, plans: Sequence[CallPlan]) -> list[list[CallerTurn]]:
        """The :class:`CallerTurn` lists of ``plans``, in order.

        Raises:
            ConfigError: a voice or audio file is missing.
        """
        wanted = {
            _key(turn, plan.base_dir): (turn, plan.base_dir)
            for plan in plans
            for turn in plan.turns
            if turn.kind in ("say", "audio")
        }
        missing = [k for k in wanted if k not in self._ulaw]
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            encoded = list(pool.map(lambda k: self._encode(*wanted[k]), missing))
        self._ulaw.update(zip(missing, encoded, strict=True))
        return [[self._turn(turn, plan.base_dir) for turn in plan.turns] for plan in plans]

    def _encode(self, turn: TurnPlan, base_dir: Path) -> bytes:
        if turn.kind == "say":
            path = synthesize_wav(turn.text, turn.voice, self.cache_dir)
            pcm = trim_silence(load_pcm8k(path))
        else:
            pcm = load_pcm8k(resolve_audio(turn.text, base_dir))
        if turn.noise is not None:
            seed = int(hashlib.sha1(turn.text.encode()).hexdigest()[:8], 16)
            pcm = mix_noise(pcm, turn.noise, seed=seed)
        return pcm16_to_ulaw(pcm)

    def _turn(self, turn: TurnPlan, base_dir: Path) -> CallerTurn:
        if turn.kind in ("say", "audio"):
            label = turn.text if turn.kind == "audio" else f"say: {turn.text}"
            return CallerTurn(
                ulaw=self._ulaw[_key(turn, base_dir)],
                label=label,
                barge_in_after_s=turn.barge_in_after_s,
            )
        if turn.kind == "silence":
            return CallerTurn(label=f"silence {turn.silence_s:g} s", silence_s=turn.silence_s)
        if turn.kind == "dtmf":
            return CallerTurn(
                label=f"dtmf {turn.dtmf}", dtmf=turn.dtmf, barge_in_after_s=turn.barge_in_after_s
            )
        return CallerTurn(label="hangup", hangup=True, barge_in_after_s=turn.barge_in_after_s)


def _key(turn: TurnPlan, base_dir: Path) -> tuple[str, str, str, str]:
    noise = turn.noise.model_dump_json() if turn.noise is not None else ""
    where = str(base_dir) if turn.kind == "audio" else ""
    return (turn.kind, turn.voice, turn.text + "\n" + where, noise)
