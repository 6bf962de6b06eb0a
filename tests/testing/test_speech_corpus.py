"""Finding recorded test speech and normalizing transcripts for WER."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicerail.testing import speech_corpus
from voicerail.testing.speech_corpus import (
    CorpusUnavailable,
    asterisk_prompts,
    normalize_text,
    number_words,
    parse_asterisk_transcripts,
    pocketsphinx_clips,
    read_pcm,
)


def test_asterisk_transcript_lines_are_parsed() -> None:
    lines = [
        "; Core Asterisk Sounds in English",
        "",
        "agent-pass: Please enter your password followed by the pound key.",
        "beep: [this is a simple beep tone]",
        "digits/5: five",
        "odd-line-without-colon",
        "at-tone: At the sound of the tone, the time will be exactly...",
    ]
    assert parse_asterisk_transcripts(lines) == {
        "agent-pass": "Please enter your password followed by the pound key.",
        "digits/5": "five",
        "at-tone": "At the sound of the tone, the time will be exactly...",
    }


@pytest.mark.parametrize(
    ("number", "words"),
    [
        (0, "zero"),
        (13, "thirteen"),
        (40, "forty"),
        (42, "forty two"),
        (100, "one hundred"),
        (907, "nine hundred seven"),
        (2024, "two thousand twenty four"),
        (1_000_000, "one zero zero zero zero zero zero"),
    ],
)
def test_number_words(number: int, words: str) -> None:
    assert number_words(number) == words


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("Press 1, then #.", "press one then pound"),
        ("Call-Forward on Busy.", "call forward on busy"),
        ("Waldo's premier provider!", "waldo's premier provider"),
        ("Mr. John Dashwood", "mister john dashwood"),
        ("It costs 1,250 dollars", "it costs one thousand two hundred fifty dollars"),
        ("  ...  ", ""),
    ],
)
def test_normalize_text(text: str, normalized: str) -> None:
    assert normalize_text(text) == normalized


def test_missing_asterisk_package_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(speech_corpus, "ASTERISK_TRANSCRIPTS", tmp_path / "absent.txt.gz")
    with pytest.raises(
        CorpusUnavailable, match="install the debian package asterisk-core-sounds-en"
    ):
        asterisk_prompts()


def test_missing_pocketsphinx_package_names_the_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(speech_corpus, "POCKETSPHINX_DATA_DIR", tmp_path)
    with pytest.raises(CorpusUnavailable) as caught:
        pocketsphinx_clips()
    assert caught.value.package == "pocketsphinx-testdata"


def _or_skip(load):
    try:
        return load()
    except CorpusUnavailable as missing:
        pytest.skip(str(missing))


def test_asterisk_prompts_pair_wavs_with_transcripts() -> None:
    samples = _or_skip(asterisk_prompts)
    assert len(samples) > 300
    assert all(s.path.is_file() and s.transcript and s.sample_rate_hz == 8000 for s in samples)
    assert not any(s.transcript.startswith("[") for s in samples)


def test_asterisk_prompts_by_name_keep_the_order_asked() -> None:
    samples = _or_skip(lambda: asterisk_prompts(["transfer", "agent-pass"]))
    assert [s.path.stem for s in samples] == ["transfer", "agent-pass"]
    assert samples[0].transcript == "Please hold while I try that extension."


def test_unknown_asterisk_prompt_is_a_key_error() -> None:
    _or_skip(lambda: asterisk_prompts([]))
    with pytest.raises(KeyError, match="no-such-prompt"):
        asterisk_prompts(["no-such-prompt"])


def test_pocketsphinx_clips_have_transcripts_without_sphinx_tags() -> None:
    samples = _or_skip(pocketsphinx_clips)
    assert len(samples) == 10
    by_name = {s.path.name: s for s in samples}
    assert by_name["001.wav"].transcript == "ten of clubs"
    assert by_name["sense_and_sensibility_01_austen_64kb-0880.wav"].transcript == (
        "he was not an ill disposed young man"
    )
    assert all(s.sample_rate_hz == 16000 for s in samples)


def test_read_pcm_resamples_8k_to_16k() -> None:
    (sample,) = _or_skip(lambda: asterisk_prompts(["transfer"]))
    pcm_8k = read_pcm(sample)
    pcm_16k = read_pcm(sample, 16000)
    assert len(pcm_16k) == pytest.approx(2 * len(pcm_8k), abs=4)
