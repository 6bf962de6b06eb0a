"""Caller audio for demos and tests: synthesized voices and real recorded speech."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

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
