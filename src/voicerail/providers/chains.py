"""The chains a server runs: the deployment file over the defaults, through one registry.

Rules:

1. A stage the deployment file names is built from the file alone; a stage it
   does not name keeps the default chain (today's: faster-whisper →
   pocketsphinx, piper → espeak-ng, or the order and length the serve options
   choose), so a server with no file runs exactly what it ran before.
2. Every entry of every stage is checked (:meth:`ProviderRegistry.resolve`)
   before any provider is built: a bad file refuses with one error and loads
   nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from voicerail.events.model import Stage
from voicerail.providers.registry import (
    CHAIN_STAGES,
    ProviderRegistry,
    ProvidersConfig,
    ProviderSpec,
    SecretLookup,
)


@dataclass
class Chains:
    """Built providers by stage, first preferred, and the file's routing overrides.

    Attributes:
        stt: speech-to-text providers.
        tts: text-to-speech providers.
        llm: language models (empty unless the file names some).
        routing: stage → ``ChainConfig`` field overrides from the file.
    """

    stt: list[Any] = field(default_factory=list)
    tts: list[Any] = field(default_factory=list)
    llm: list[Any] = field(default_factory=list)
    routing: Mapping[Stage, Mapping[str, Any]] = field(default_factory=dict)


def default_specs(
    *,
    whisper_model: str = "tiny.en",
    piper_voice: str = "en_US-joe-medium",
    tts: str = "piper",
    fallback: bool = True,
) -> dict[Stage, list[ProviderSpec]]:
    """The chains of ``voicerail serve`` without a deployment file (rule 1).

    Args:
        whisper_model: faster-whisper model name or directory.
        piper_voice: piper voice name or ``.onnx`` path.
        tts: ``piper`` or ``espeak-ng``: the primary; the other is its fallback.
        fallback: False keeps only the first provider of each chain.
    """
    stt = [
        ProviderSpec("faster-whisper", {"model": whisper_model}, "defaults.stt[0]"),
        ProviderSpec("pocketsphinx", {}, "defaults.stt[1]"),
    ]
    piper = {"voice": piper_voice}
    tts_names = ["espeak-ng", "piper"] if tts == "espeak-ng" else ["piper", "espeak-ng"]
    tts_chain = [
        ProviderSpec(name, piper if name == "piper" else {}, f"defaults.tts[{index}]")
        for index, name in enumerate(tts_names)
    ]
    if not fallback:
        stt, tts_chain = stt[:1], tts_chain[:1]
    return {Stage.STT: stt, Stage.TTS: tts_chain}


def build_chains(
    registry: ProviderRegistry,
    config: ProvidersConfig | None,
    defaults: Mapping[Stage, Sequence[ProviderSpec]],
    secrets: SecretLookup,
) -> Chains:
    """Check then build every chain (rules 1, 2).

    Raises:
        ConfigError: the first bad entry, naming the file and field.
    """
    source = config.source if config is not None else "<defaults>"
    named = dict(config.chains) if config is not None else {}
    resolved = {
        stage: registry.resolve(
            stage,
            named[stage] if stage in named else defaults.get(stage, ()),
            secrets,
            source if stage in named else "<defaults>",
        )
        for stage in CHAIN_STAGES
    }
    built = {stage: registry.build(items) for stage, items in resolved.items()}
    return Chains(
        stt=built[Stage.STT],
        tts=built[Stage.TTS],
        llm=built[Stage.LLM],
        routing=dict(config.routing) if config is not None else {},
    )
