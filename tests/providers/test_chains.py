"""Chains built by the default registry: today's defaults, cloud providers from a file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from voicerail.errors import ConfigError
from voicerail.events.model import Stage
from voicerail.providers.builtin import default_registry
from voicerail.providers.cartesia import CartesiaTTS
from voicerail.providers.chains import build_chains, default_specs
from voicerail.providers.deepgram import DeepgramSTT
from voicerail.providers.elevenlabs import ElevenLabsTTS
from voicerail.providers.espeak import EspeakTTS
from voicerail.providers.openai_chat import OpenAIChatLLM
from voicerail.providers.openai_tts import OpenAITTS
from voicerail.providers.piper import PiperTTS
from voicerail.providers.pocketsphinx_stt import PocketsphinxSTT
from voicerail.providers.registry import load_providers, parse_providers, secret_lookup
from voicerail.providers.whisper import FasterWhisperSTT
from voicerail.routing.faults import FaultProfile, FaultySTT, FaultyTTS, with_faults

KEYS = {
    "DEEPGRAM_API_KEY": "dg",
    "ELEVENLABS_API_KEY": "el",
    "CARTESIA_API_KEY": "ca",
    "OPENAI_API_KEY": "oa",
}


def chains(text: str | None, environ: dict[str, str] | None = None, **defaults: Any) -> Any:
    config = parse_providers(yaml.safe_load(text), "voicerail.yaml") if text else None
    return build_chains(
        default_registry(),
        config,
        default_specs(**defaults),
        secret_lookup([], KEYS if environ is None else environ),
    )


def describe(chain: list[Any]) -> list[tuple[str, type, str]]:
    return [(p.name, type(p), p.model) for p in chain]


def test_without_a_file_the_chains_are_todays():
    """faster-whisper -> pocketsphinx and piper -> espeak-ng, no LLM chain."""
    built = chains(None, {})
    assert describe(built.stt) == [
        ("faster-whisper", FasterWhisperSTT, "tiny.en"),
        ("pocketsphinx", PocketsphinxSTT, "en-us"),
    ]
    assert describe(built.tts) == [
        ("piper", PiperTTS, "en_US-joe-medium"),
        ("espeak-ng", EspeakTTS, "en-us"),
    ]
    assert built.llm == [] and built.routing == {}


def test_the_serve_options_still_choose_the_default_order_and_length():
    built = chains(None, {}, tts="espeak-ng", fallback=False)
    assert [p.name for p in built.stt] == ["faster-whisper"]
    assert [p.name for p in built.tts] == ["espeak-ng"]
    assert [p.name for p in chains(None, {}, tts="espeak-ng").tts] == ["espeak-ng", "piper"]


def test_a_file_names_cloud_chains_with_their_options_and_keys_from_the_environment():
    built = chains(
        "providers:\n"
        "  stt: [{deepgram: {model: nova-2, endpointing_ms: 300, base_url: 'ws://127.0.0.1:9'}},"
        " faster-whisper]\n"
        "  tts:\n"
        "    - elevenlabs: {voice_id: v1, timeout_s: 2.5}\n"
        "    - cartesia: {voice_id: v2, sample_rate_hz: 24000}\n"
        "    - openai-tts: {voice: coral}\n"
        "    - piper\n"
        "  llm: [{openai: {model: gpt-4o}}]\n"
    )
    assert describe(built.stt) == [
        ("deepgram", DeepgramSTT, "nova-2"),
        ("faster-whisper", FasterWhisperSTT, "tiny.en"),
    ]
    deepgram = built.stt[0]
    assert deepgram.endpointing_ms == 300
    assert deepgram.url(16000, "en").startswith("ws://127.0.0.1:9/v1/listen?model=nova-2")
    assert [type(p) for p in built.tts] == [ElevenLabsTTS, CartesiaTTS, OpenAITTS, PiperTTS]
    eleven, cartesia, openai_tts, _ = built.tts
    assert (eleven.voice_id, eleven.timeout_s) == ("v1", 2.5)
    assert cartesia.capabilities.sample_rate_hz == 24000
    assert openai_tts.voice == "coral"
    assert describe(built.llm) == [("openai", OpenAIChatLLM, "gpt-4o")]


def test_a_stage_the_file_does_not_name_keeps_its_default_chain():
    built = chains("providers: {tts: [espeak-ng]}")
    assert [p.name for p in built.stt] == ["faster-whisper", "pocketsphinx"]
    assert [p.name for p in built.tts] == ["espeak-ng"]


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("providers: {tts: [elevenlabs]}", "providers.tts[0].elevenlabs.voice_id: field required"),
        (
            "providers: {tts: [{cartesia: {voice_id: v, sample_rate_hz: 11025}}]}",
            "providers.tts[0].cartesia.sample_rate_hz: input should be",
        ),
        (
            "providers: {tts: [{elevenlabs: {voice_id: v, output_format: mp3_44100}}]}",
            "providers.tts[0].elevenlabs.output_format: string should match",
        ),
        (
            "providers: {stt: [{faster-whisper: {cpu_threads: 0}}]}",
            "providers.stt[0].faster-whisper.cpu_threads: input should be greater",
        ),
        (
            "providers: {tts: [{piper: {voice: no-such-voice}}]}",
            "providers.tts[0].piper: cannot build: ",
        ),
    ],
)
def test_a_bad_option_of_a_builtin_provider_is_refused_naming_it(text: str, field: str):
    with pytest.raises(ConfigError) as error:
        chains(text)
    assert str(error.value).startswith(f"voicerail.yaml: {field}")


def test_the_llm_key_is_read_from_either_documented_variable():
    [llm] = chains("providers: {llm: [openai]}", {"VOICERAIL_LLM_API_KEY": "k"}).llm
    assert llm.name == "openai"
    with pytest.raises(ConfigError, match="no key: set VOICERAIL_LLM_API_KEY"):
        chains("providers: {llm: [openai]}", {})


def test_nothing_is_built_when_a_later_stage_is_refused():
    """Every stage is checked before any provider is built (piper would load a voice)."""
    built: list[str] = []
    registry = default_registry().wrapped(lambda p: built.append(p.name) or p)
    config = parse_providers(
        yaml.safe_load("providers: {tts: [piper], llm: [deepseek]}"), "voicerail.yaml"
    )
    with pytest.raises(ConfigError, match="unknown llm provider 'deepseek'"):
        build_chains(registry, config, default_specs(), secret_lookup([], {}))
    assert built == []


def test_faults_wrap_what_the_registry_builds_by_name():
    profiles = {"piper": FaultProfile(hang_rate=1.0), "deepgram": FaultProfile(drop_rate=1.0)}
    registry = default_registry().wrapped(lambda p: with_faults(p, profiles))
    config = parse_providers({"providers": {"stt": ["deepgram", "pocketsphinx"]}}, "f")
    built = build_chains(registry, config, default_specs(), secret_lookup([], KEYS))
    assert [type(p) for p in built.stt] == [FaultySTT, PocketsphinxSTT]
    assert [type(p) for p in built.tts] == [FaultyTTS, EspeakTTS]
    assert built.stt[0].name == "deepgram" and built.tts[0].name == "piper"


def test_the_example_deployment_file_builds():
    config = load_providers(Path(__file__).parents[2] / "examples" / "voicerail.yaml")
    built = build_chains(default_registry(), config, default_specs(), secret_lookup([], KEYS))
    assert [p.name for p in built.stt] == ["deepgram", "faster-whisper"]
    assert [p.name for p in built.tts] == ["elevenlabs", "piper"]
    assert [p.name for p in built.llm] == ["openai"]
    assert config.routing == {Stage.STT: {"ttfb_timeout_s": 2.5, "hedge": False}}


def test_a_local_engine_without_the_speech_extra_names_the_extra(monkeypatch):
    """A core install (no ``speech`` extra) refuses the default chain with one line."""
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    with pytest.raises(ConfigError) as error:
        chains(None, {})
    assert str(error.value) == (
        "<defaults>: defaults.stt[0].faster-whisper: cannot build: the faster-whisper "
        "provider needs the 'speech' extra (missing faster_whisper): "
        "pip install 'voicerail[speech]'"
    )


def test_a_model_error_keeps_only_its_own_message():
    with pytest.raises(ConfigError) as error:
        chains("providers: {tts: [{piper: {voice: no-such-voice}}]}")
    message = str(error.value)
    assert message.startswith("voicerail.yaml: providers.tts[0].piper: cannot build: piper voice")
    assert "<config>" not in message
