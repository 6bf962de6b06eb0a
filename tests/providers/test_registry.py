"""The provider registry and its deployment file: parsing, checks, secrets, wrappers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from voicerail.errors import ConfigError
from voicerail.events.model import Stage
from voicerail.ops.credentials import Credential
from voicerail.providers.registry import (
    ProviderFactory,
    ProviderRegistry,
    ProviderSpec,
    load_providers,
    parse_providers,
    secret_lookup,
)


class EchoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str | None = None
    model: str = "m1"
    timeout_s: float = 5.0
    credential: str | None = None


class Built:
    def __init__(self, name: str, options: Any, secret: str | None) -> None:
        self.name, self.options, self.secret = name, options, secret


def make(provider: str) -> Any:
    return lambda options, secret: Built(options.name or provider, options, secret)


def registry() -> ProviderRegistry:
    return ProviderRegistry(
        [
            ProviderFactory("local-stt", Stage.STT, EchoOptions, make("local-stt")),
            ProviderFactory("cloud-stt", Stage.STT, EchoOptions, make("cloud-stt"), ("CLOUD_KEY",)),
            ProviderFactory("local-tts", Stage.TTS, EchoOptions, make("local-tts")),
        ]
    )


def no_secrets(factory: ProviderFactory, spec: ProviderSpec) -> str | None:
    return None


def resolve(stage: Stage, text: str, secrets: Any = no_secrets) -> list[Any]:
    config = parse_providers(yaml.safe_load(text), "voicerail.yaml")
    return registry().resolve(stage, config.chains[stage], secrets, "voicerail.yaml")


def refusal(stage: Stage, text: str, secrets: Any = no_secrets) -> str:
    with pytest.raises(ConfigError) as error:
        resolve(stage, text, secrets)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_names_and_option_mappings_parse_in_order_with_their_fields():
    config = parse_providers(
        yaml.safe_load(
            "providers:\n"
            "  stt: [cloud-stt, {local-stt: {model: m2}}]\n"
            "  tts: [{local-tts: }]\n"
            "routing:\n"
            "  tts: {ttfb_timeout_s: 0.8, hedge: false}\n"
        ),
        "voicerail.yaml",
    )
    assert config.chains[Stage.STT] == [
        ProviderSpec("cloud-stt", {}, "providers.stt[0]"),
        ProviderSpec("local-stt", {"model": "m2"}, "providers.stt[1]"),
    ]
    assert config.chains[Stage.TTS] == [ProviderSpec("local-tts", {}, "providers.tts[0]")]
    assert Stage.LLM not in config.chains
    assert config.routing == {Stage.TTS: {"ttfb_timeout_s": 0.8, "hedge": False}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[stt]", "voicerail.yaml: expected a mapping with 'providers'"),
        ("providers: {}\nextra: 1", "voicerail.yaml: extra: unknown section"),
        ("providers: {vad: [x]}", "voicerail.yaml: providers.vad: unknown stage"),
        ("providers: {stt: []}", "voicerail.yaml: providers.stt: expected a non-empty list"),
        ("providers: {stt: [{a: {}, b: {}}]}", "voicerail.yaml: providers.stt[0]: expected a"),
        ("providers: {stt: [{a: 3}]}", "voicerail.yaml: providers.stt[0].a: expected a mapping"),
        ("routing: {stt: {hedge: 2}}", "voicerail.yaml: routing.stt.hedge: expected true or"),
        ("routing: {stt: {ttfb_timeout_s: -1}}", "routing.stt.ttfb_timeout_s: expected a number"),
        ("routing: {stt: {providers: [x]}}", "routing.stt.providers: unknown routing option"),
    ],
)
def test_a_file_of_the_wrong_shape_is_refused_naming_the_field(text: str, expected: str):
    with pytest.raises(ConfigError) as error:
        parse_providers(yaml.safe_load(text), "voicerail.yaml")
    assert expected in str(error.value)


def test_an_unreadable_file_is_one_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read providers file"):
        load_providers(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_providers(bad)


def test_an_unknown_provider_is_refused_with_the_known_ones():
    message = refusal(Stage.STT, "providers: {stt: [deepgramm]}")
    assert message == (
        "voicerail.yaml: providers.stt[0]: unknown stt provider 'deepgramm' "
        "(known: cloud-stt, local-stt)"
    )


def test_a_provider_of_another_stage_is_refused():
    assert "unknown tts provider 'local-stt'" in refusal(Stage.TTS, "providers: {tts: [local-stt]}")


@pytest.mark.parametrize("option", ["api_key", "apiKey", "key", "token", "auth_token", "secret"])
def test_a_secret_in_the_file_is_refused(option: str):
    message = refusal(Stage.STT, f"providers: {{stt: [{{cloud-stt: {{{option}: sk-1}}}}]}}")
    assert message.startswith(f"voicerail.yaml: providers.stt[0].cloud-stt.{option}: secrets")
    assert "set CLOUD_KEY" in message and "sk-1" not in message


def test_an_unknown_option_and_a_bad_value_are_refused_naming_the_option():
    assert refusal(Stage.STT, "providers: {stt: [{local-stt: {modle: m2}}]}") == (
        "voicerail.yaml: providers.stt[0].local-stt.modle: unknown option"
    )
    message = refusal(Stage.STT, "providers: {stt: [{local-stt: {timeout_s: soon}}]}")
    assert message.startswith("voicerail.yaml: providers.stt[0].local-stt.timeout_s: input")


def test_a_missing_key_is_refused_naming_the_variable_and_credential():
    assert refusal(Stage.STT, "providers: {stt: [cloud-stt]}") == (
        "voicerail.yaml: providers.stt[0].cloud-stt.credential: "
        "no key: set CLOUD_KEY or add a 'cloud-stt' credential"
    )


def test_one_name_twice_is_refused_and_a_rename_allows_it():
    text = "providers: {stt: [local-stt, local-stt]}"
    assert "provider name 'local-stt' used twice" in refusal(Stage.STT, text)
    resolved = resolve(Stage.STT, "providers: {stt: [local-stt, {local-stt: {name: backup}}]}")
    assert [p.name for p in registry().build(resolved)] == ["local-stt", "backup"]


def test_keys_come_from_the_credentials_registry_then_the_well_known_variable():
    environ = {"CLOUD_KEY": "from-env", "TEAM_B_KEY": "from-registry"}
    credentials = [Credential("team-b", "TEAM_B_KEY")]
    lookup = secret_lookup(credentials, environ)
    plain = resolve(Stage.STT, "providers: {stt: [cloud-stt]}", lookup)
    named = resolve(Stage.STT, "providers: {stt: [{cloud-stt: {credential: team-b}}]}", lookup)
    assert [plain[0].secret, named[0].secret] == ["from-env", "from-registry"]
    registered = secret_lookup([Credential("cloud-stt", "TEAM_B_KEY")], environ)
    assert resolve(Stage.STT, "providers: {stt: [cloud-stt]}", registered)[0].secret == (
        "from-registry"
    )


def test_a_named_credential_that_is_not_registered_does_not_fall_back_to_the_variable():
    lookup = secret_lookup([], {"CLOUD_KEY": "from-env"})
    text = "providers: {stt: [{cloud-stt: {credential: team-c}}]}"
    assert "add a 'team-c' credential" in refusal(Stage.STT, text, lookup)


def test_a_wrapped_registry_passes_every_built_provider_through_its_wrappers():
    wrapped = registry().wrapped(lambda p: ("outer", p)).wrapped(lambda p: ("outermost", p))
    [spec] = parse_providers({"providers": {"tts": ["local-tts"]}}).chains[Stage.TTS]
    [provider] = wrapped.build(wrapped.resolve(Stage.TTS, [spec], no_secrets, "f"))
    assert provider[0] == "outermost" and provider[1][0] == "outer"
    assert provider[1][1].name == "local-tts"
    # the original registry is unchanged
    [plain] = registry().build(registry().resolve(Stage.TTS, [spec], no_secrets, "f"))
    assert isinstance(plain, Built)


def test_a_factory_that_refuses_at_build_names_the_entry():
    def broken(options: Any, secret: str | None) -> Any:
        raise ValueError("sample_rate_hz must be one of (8000,), got 7")

    def missing(options: Any, secret: str | None) -> Any:
        raise ConfigError("piper voice file 'x' does not exist", field="tts.voice")

    reg = ProviderRegistry(
        [
            ProviderFactory("broken", Stage.TTS, EchoOptions, broken),
            ProviderFactory("missing", Stage.TTS, EchoOptions, missing),
        ]
    )
    for name, expected in [("broken", "sample_rate_hz"), ("missing", "cannot build: ")]:
        spec = ProviderSpec(name, {}, "providers.tts[0]")
        with pytest.raises(ConfigError) as error:
            reg.build(reg.resolve(Stage.TTS, [spec], no_secrets, "f.yaml"))
        assert str(error.value).startswith(f"f.yaml: providers.tts[0].{name}: ")
        assert expected in str(error.value)
