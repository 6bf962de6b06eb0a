"""``voicerail serve`` refuses a bad deployment file with one line, before loading anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicerail import cli

CLOUD_VARIABLES = (
    "DEEPGRAM_API_KEY",
    "ELEVENLABS_API_KEY",
    "CARTESIA_API_KEY",
    "OPENAI_API_KEY",
    "VOICERAIL_LLM_API_KEY",
    "VOICERAIL_PROVIDERS",
    "VOICERAIL_CREDENTIALS",
)


@pytest.fixture(autouse=True)
def no_cloud_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in CLOUD_VARIABLES:
        monkeypatch.delenv(variable, raising=False)


def serve(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str], *flags: str) -> str:
    """Run ``serve`` on a deployment file ``text``; return its stderr after exit 2."""
    path = tmp_path / "voicerail.yaml"
    path.write_text(text, encoding="utf-8")
    data_dir = tmp_path / "data"
    argv = ["serve", "--data-dir", str(data_dir), "--skip-credential-check", *flags]
    if "--no-file-flag" not in flags:
        argv += ["--providers", str(path)]
    else:
        argv.remove("--no-file-flag")
    assert cli.main(argv) == 2
    stores = list(data_dir.glob("*.sqlite3")) if data_dir.exists() else []
    assert stores == [], "serve created its stores before refusing"
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def test_an_unknown_provider_names_the_file_and_the_entry(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DEEPGRAM_API_KEY", "dg")
    err = serve(tmp_path, "providers: {stt: [deepgram, whisper]}", capsys)
    assert err == (
        f"voicerail: {tmp_path / 'voicerail.yaml'}: providers.stt[1]: unknown stt provider "
        "'whisper' (known: deepgram, faster-whisper, pocketsphinx)"
    )


def test_a_missing_key_names_the_provider_and_its_variable(tmp_path, capsys):
    err = serve(tmp_path, "providers: {stt: [deepgram]}", capsys)
    assert err.endswith(
        "providers.stt[0].deepgram.credential: "
        "no key: set DEEPGRAM_API_KEY or add a 'deepgram' credential"
    )


def test_a_bad_option_names_the_provider_and_the_option(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ELEVENLABS_API_KEY", "el")
    err = serve(tmp_path, "providers: {tts: [{elevenlabs: {voice_id: v, timeout: 3}}]}", capsys)
    assert err.endswith("providers.tts[0].elevenlabs.timeout: unknown option")


def test_a_key_in_the_file_is_refused(tmp_path, capsys):
    err = serve(tmp_path, "providers: {tts: [{elevenlabs: {api_key: sk-live}}]}", capsys)
    assert "providers.tts[0].elevenlabs.api_key: secrets are not read from this file" in err
    assert "sk-live" not in err


def test_the_file_can_come_from_the_environment(tmp_path, capsys, monkeypatch):
    path = tmp_path / "voicerail.yaml"
    monkeypatch.setenv("VOICERAIL_PROVIDERS", str(path))
    err = serve(tmp_path, "providers: {llm: [openai]}", capsys, "--no-file-flag")
    assert err.endswith("providers.llm[0].openai.credential: no key: set VOICERAIL_LLM_API_KEY "
                        "or add a 'openai' credential")  # fmt: skip
