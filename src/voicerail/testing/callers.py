"""Caller audio for demos and tests: synthesized voices and real recorded speech."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from voicerail.sim.call_result import CallerTurn

ASTERISK_SOUNDS = Path("/usr/share/asterisk/sounds/en")


def synthesize_caller_wav(text: str, path: Path, *, engine: str = "flite") -> Path:
    """Speak ``text`` into a WAV with a voice other than the agent's.

    Uses Debian's ``flite`` (voice ``slt``) or ``espeak-ng`` (voice ``en-us+f3``);
    the agent speaks with piper's ``joe``. The file is cached by path.

    Raises:
        FileNotFoundError: the engine is not installed (``make setup`` installs both).
    """
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    if engine == "flite":
        exe = shutil.which("flite")
        if exe is None:
            raise FileNotFoundError("flite is not installed (apt-get install flite)")
        subprocess.run([exe, "-voice", "slt", "-t", text, "-o", str(path)], check=True)
    else:
        exe = shutil.which("espeak-ng")
        if exe is None:
            raise FileNotFoundError("espeak-ng is not installed (apt-get install espeak-ng)")
        subprocess.run([exe, "-v", "en-us+f3", "-s", "160", "-w", str(path), text], check=True)
    return path


def recorded_prompt(name: str) -> Path:
    """A real recorded human prompt from Debian's ``asterisk-core-sounds-en-wav``.

    Raises:
        FileNotFoundError: the package is not installed.
    """
    path = ASTERISK_SOUNDS / f"{name}.wav"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing (apt-get install asterisk-core-sounds-en-wav)")
    return path


def caller_script_wav(
    lines: Sequence[str],
    path: Path,
    *,
    lead_s: float,
    pause_s: float,
    tail_s: float,
    sample_rate_hz: int = 16000,
) -> Path:
    """A whole caller script in one WAV, for a microphone that cannot wait for the
    agent (Chromium's fake capture device plays a file, looping).

    Args:
        lines: what the caller says, in order (synthesized as by
            :func:`synthesize_caller_wav`, cached beside ``path``).
        path: the WAV to write (16-bit mono at ``sample_rate_hz``).
        lead_s: silence before the first line (the agent's greeting), seconds.
        pause_s: silence after each line (longer than the agent's reply), seconds.
        tail_s: silence at the end, longer than the call's last reply and hang-up.
        sample_rate_hz: the file's rate.

    Raises:
        FileNotFoundError: flite is not installed.
    """
    from voicerail.audio.resample import StreamResampler, read_wav_mono, write_wav

    def silence(seconds: float) -> bytes:
        return b"\x00\x00" * int(sample_rate_hz * seconds)

    parts = [silence(lead_s)]
    for index, line in enumerate(lines):
        wav = synthesize_caller_wav(line, path.parent / f"{path.stem}-line-{index}.wav")
        pcm, rate_hz = read_wav_mono(wav)
        resampler = StreamResampler(rate_hz, sample_rate_hz)
        parts += [resampler.process(pcm), resampler.flush(), silence(pause_s)]
    parts.append(silence(tail_s))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, b"".join(parts), sample_rate_hz)
    return path


def opening_hours_turn(folder: Path) -> CallerTurn:
    """A caller turn asking "What are your opening hours?", its WAV cached in ``folder``.

    Raises:
        FileNotFoundError: flite is not installed.
    """
    return CallerTurn.from_wav(
        synthesize_caller_wav("What are your opening hours?", folder / "hours.wav")
    )
