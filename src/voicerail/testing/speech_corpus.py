"""Real recorded speech with transcripts, from Debian packages, for STT tests.

Two sources, both read-only and offline:

* ``asterisk-core-sounds-en-wav``: telephone prompts recorded by a voice actor,
  8 kHz s16le WAVs under ``/usr/share/asterisk/sounds/en/``; their transcripts
  are in ``asterisk-core-sounds-en``'s ``core-sounds-en.txt.gz``, one
  ``name: transcript`` per line (``;`` starts a comment).
* ``pocketsphinx-testdata``: 16 kHz WAVs under ``/usr/share/pocketsphinx/test/data/``:
  five LibriVox clips (``librivox/``) and five spoken card names (``cards/``), with
  Sphinx ``transcription`` files (``<s> words </s> (file id)``).

A missing package raises :class:`CorpusUnavailable`, whose message names the
package to install; tests turn it into a skip.
"""

from __future__ import annotations

import gzip
import re
import wave
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ASTERISK_SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en")
ASTERISK_TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
POCKETSPHINX_DATA_DIR = Path("/usr/share/pocketsphinx/test/data")

# Sphinx transcription line: "<s> words </s> (file id)"; the <s> tags are optional.
_SPHINX_LINE = re.compile(r"^\s*(?:<s>)?(?P<text>.*?)(?:</s>)?\s*\((?P<file_id>[^)]+)\)\s*$")


class CorpusUnavailable(FileNotFoundError):
    """A speech corpus package is not installed.

    A test-kit error, not part of the runtime's tree in ``voicerail.errors``: it is
    raised only by this module, for test set-up.

    Attributes:
        package: the Debian package to install.
    """

    def __init__(self, package: str, missing: Path) -> None:
        super().__init__(f"{missing} not found; install the debian package {package}")
        self.package = package


@dataclass(frozen=True)
class Sample:
    """One recorded utterance.

    Attributes:
        path: mono s16le WAV file.
        transcript: the words spoken, as the corpus writes them (case, digits and
            punctuation kept).
        sample_rate_hz: rate of the WAV.
    """

    path: Path
    transcript: str
    sample_rate_hz: int


def asterisk_prompts(names: Iterable[str] | None = None) -> list[Sample]:
    """Asterisk's English prompts that have a WAV and a spoken transcript.

    Args:
        names: prompt names as in the transcript file (``"agent-pass"``,
            ``"digits/5"``), in the order wanted; ``None`` for all of them, sorted.
            Prompts whose transcript is a bracketed description of a sound
            (``"[this is a simple beep tone]"``) are never returned.

    Returns:
        The samples, 8000 Hz.

    Raises:
        CorpusUnavailable: a package is missing.
        KeyError: a requested name has no transcript or no WAV.
    """
    transcripts = _asterisk_transcripts()
    if not ASTERISK_SOUNDS_DIR.is_dir():
        raise CorpusUnavailable("asterisk-core-sounds-en-wav", ASTERISK_SOUNDS_DIR)
    wanted = sorted(transcripts) if names is None else list(names)
    samples = []
    for name in wanted:
        path = ASTERISK_SOUNDS_DIR / f"{name}.wav"
        transcript = transcripts.get(name)
        if transcript is None or not path.is_file():
            if names is None:
                continue
            raise KeyError(f"asterisk prompt {name!r} has no transcript or no wav")
        samples.append(Sample(path=path, transcript=transcript, sample_rate_hz=8000))
    return samples


def pocketsphinx_clips(sets: Sequence[str] = ("librivox", "cards")) -> list[Sample]:
    """pocketsphinx's test recordings with their transcripts.

    Args:
        sets: subdirectories of the test data to read: ``"librivox"`` (read
            literature, 3-7 s) and ``"cards"`` (card names, "ten of clubs").

    Returns:
        The samples, 16000 Hz, in file id order.

    Raises:
        CorpusUnavailable: ``pocketsphinx-testdata`` is missing.
    """
    samples = []
    for name in sets:
        directory = POCKETSPHINX_DATA_DIR / name
        transcription = next(iter(sorted(directory.glob("*transcription"))), None)
        if transcription is None:
            raise CorpusUnavailable("pocketsphinx-testdata", directory / "transcription")
        for file_id, text in _sphinx_transcripts(transcription.read_text(encoding="utf-8")):
            path = directory / f"{file_id}.wav"
            if path.is_file():
                samples.append(Sample(path=path, transcript=text, sample_rate_hz=16000))
    return samples


def read_pcm(sample: Sample, sample_rate_hz: int | None = None) -> bytes:
    """The audio of ``sample`` as s16le mono PCM, resampled when asked.

    Args:
        sample: the recording.
        sample_rate_hz: wanted rate; ``None`` keeps the recording's rate.

    Returns:
        s16le mono PCM at ``sample_rate_hz`` (or the recording's rate).

    Raises:
        ValueError: the WAV is not 16-bit mono.
    """
    with wave.open(str(sample.path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(
                f"{sample.path}: expected 16-bit mono, got {wav.getsampwidth() * 8}-bit "
                f"{wav.getnchannels()}-channel"
            )
        rate_hz = wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    if sample_rate_hz is None or sample_rate_hz == rate_hz:
        return pcm
    import soxr

    samples = np.frombuffer(pcm, dtype="<i2")
    return np.asarray(soxr.resample(samples, rate_hz, sample_rate_hz), dtype="<i2").tobytes()


def _asterisk_transcripts() -> dict[str, str]:
    if not ASTERISK_TRANSCRIPTS.is_file():
        raise CorpusUnavailable("asterisk-core-sounds-en", ASTERISK_TRANSCRIPTS)
    with gzip.open(ASTERISK_TRANSCRIPTS, "rt", encoding="utf-8", errors="replace") as lines:
        return parse_asterisk_transcripts(lines)


def parse_asterisk_transcripts(lines: Iterable[str]) -> dict[str, str]:
    """Parse ``core-sounds-en.txt``: ``name: transcript`` lines, ``;`` comments.

    Entries whose transcript is a bracketed sound description are left out.

    Args:
        lines: the file's lines.

    Returns:
        Transcript by prompt name.
    """
    transcripts = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith(";") or ":" not in line:
            continue
        name, _, text = line.partition(":")
        text = text.strip()
        if not text or (text.startswith("[") and text.endswith("]")):
            continue
        transcripts[name.strip()] = text
    return transcripts


def _sphinx_transcripts(text: str) -> list[tuple[str, str]]:
    """``(file id, words)`` of each line of a Sphinx ``transcription`` file."""
    entries = []
    for line in text.splitlines():
        match = _SPHINX_LINE.match(line)
        if match:
            words = " ".join(match["text"].split())
            entries.append((match["file_id"].strip(), words))
    return entries


_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_SYMBOLS = {"#": " pound ", "*": " star ", "&": " and ", "%": " percent "}
# Spellings that differ between references and recognizers but are the same words.
_SPELLINGS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "ok": "okay"}


def number_words(number: int) -> str:
    """English words for 0..999999 ("one hundred twenty three"); digits otherwise.

    Args:
        number: a non-negative integer.

    Returns:
        The words, without "and" or hyphens.
    """
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    if number < 1_000_000:
        thousands, rest = divmod(number, 1000)
        return f"{number_words(thousands)} thousand" + (f" {number_words(rest)}" if rest else "")
    return " ".join(_ONES[int(digit)] for digit in str(number))


def normalize_text(text: str) -> str:
    """Normalize a transcript for word error rate: lowercase words, numbers spelled out.

    Keeps apostrophes inside words ("party's"); turns hyphens into spaces; spells
    ``#`` and ``*`` as "pound" and "star" (the phone keys) and a few abbreviations
    in full ("mr" as "mister"); drops other punctuation.

    Args:
        text: a reference or a hypothesis.

    Returns:
        Space-separated lowercase words.
    """
    for symbol, word in _SYMBOLS.items():
        text = text.replace(symbol, word)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text)
    text = re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " "))
    words = (word.strip("'") for word in text.split())
    return " ".join(_SPELLINGS.get(word, word) for word in words if word)
