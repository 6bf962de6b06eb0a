"""The built-in providers' factories and options, for :mod:`voicerail.providers.registry`.

Each provider module is imported only when a provider of it is built, so naming
``deepgram`` in a file loads no speech model and naming ``piper`` loads no
WebSocket client. The option models mirror the adapters' constructor arguments
(see each adapter's docstring for units and defaults); keys come from the
environment (rule 3 of the registry), never from options.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from voicerail.events.model import Stage
from voicerail.extras import extra_missing, missing_modules
from voicerail.ops.credentials import KNOWN_ENV
from voicerail.providers.registry import ProviderFactory, ProviderRegistry


def _env(credential: str) -> tuple[str, ...]:
    """The well-known variables of ``credential`` (``ops.credentials.KNOWN_ENV``)."""
    return next(variables for name, variables, _, _ in KNOWN_ENV if name == credential)


class _Options(BaseModel):
    # "model" is an option name here, not pydantic's namespace.
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())

    name: str | None = Field(None, min_length=1)


class _CloudOptions(_Options):
    credential: str | None = None
    timeout_s: float = Field(5.0, gt=0)


class FasterWhisperOptions(_Options):
    """``faster-whisper``: local Whisper (:class:`~.whisper.FasterWhisperSTT`)."""

    model: str = "tiny.en"
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = Field(2, ge=1)
    beam_size: int = Field(1, ge=1)
    initial_prompt: str | None = None
    hotwords: str | None = None


class PocketsphinxOptions(_Options):
    """``pocketsphinx``: local streaming STT (:class:`~.pocketsphinx_stt.PocketsphinxSTT`)."""

    model_dir: str | None = None
    max_decoders: int = Field(4, ge=1)
    max_idle_decoders: int = Field(2, ge=1)
    num_threads: int = Field(2, ge=1)


class DeepgramOptions(_CloudOptions):
    """``deepgram``: streaming STT (:class:`~voicerail.providers.deepgram.DeepgramSTT`)."""

    model: str = "nova-3"
    base_url: str = "wss://api.deepgram.com"
    endpointing_ms: int | None = Field(None, ge=0)
    open_timeout_s: float = Field(5.0, gt=0)


class PiperOptions(_Options):
    """``piper``: local TTS (:class:`~voicerail.providers.piper.PiperTTS`)."""

    voice: str = "en_US-joe-medium"
    length_scale: float | None = Field(None, gt=0)


class EspeakOptions(_Options):
    """``espeak-ng``: local TTS (:class:`~voicerail.providers.espeak.EspeakTTS`)."""

    voice: str = "en-us"
    rate_wpm: int = Field(175, ge=80, le=450)


class ElevenLabsOptions(_CloudOptions):
    """``elevenlabs``: streaming TTS (:class:`~voicerail.providers.elevenlabs.ElevenLabsTTS`)."""

    voice_id: str = Field(min_length=1)
    model: str = "eleven_flash_v2_5"
    base_url: str = "wss://api.elevenlabs.io"
    output_format: str = Field("pcm_16000", pattern=r"^pcm_\d+$")
    voice_settings: dict[str, Any] | None = None
    open_timeout_s: float = Field(5.0, gt=0)


class CartesiaOptions(_CloudOptions):
    """``cartesia``: streaming TTS (:class:`~voicerail.providers.cartesia.CartesiaTTS`)."""

    voice_id: str = Field(min_length=1)
    model: str = "sonic-2"
    base_url: str = "wss://api.cartesia.ai"
    sample_rate_hz: Literal[8000, 16000, 22050, 24000, 44100, 48000] = 16000
    language: str = "en"
    open_timeout_s: float = Field(5.0, gt=0)


class OpenAITTSOptions(_CloudOptions):
    """``openai-tts``: streaming TTS (:class:`~voicerail.providers.openai_tts.OpenAITTS`)."""

    model: str = "gpt-4o-mini-tts"
    voice: str = "alloy"
    base_url: str = "https://api.openai.com/v1"
    instructions: str | None = None
    speed: float | None = Field(None, ge=0.25, le=4.0)
    timeout_s: float = Field(30.0, gt=0)


class OpenAIChatOptions(_CloudOptions):
    """``openai``: an OpenAI-compatible chat endpoint (:class:`~.openai_chat.OpenAIChatLLM`)."""

    model: str = "gpt-4o-mini"
    base_url: str = "https://api.openai.com/v1"
    timeout_s: float = Field(30.0, gt=0)


def _named(options: _Options, default: str) -> dict[str, Any]:
    """Constructor keyword arguments: every option but ``credential``, ``name`` defaulted."""
    kwargs = options.model_dump(exclude={"credential"})
    kwargs["name"] = options.name or default
    return kwargs


def _speech(provider: str, module: str) -> None:
    """Refuse a local engine whose package (the ``speech`` extra) is not installed.

    Raises:
        ConfigError: ``module`` cannot be imported; names the extra.
    """
    if missing_modules([module]):
        raise extra_missing("speech", f"the {provider} provider", [module])


def _faster_whisper(options: Any, secret: str | None) -> Any:
    _speech("faster-whisper", "faster_whisper")
    from voicerail.providers.whisper import FasterWhisperSTT

    return FasterWhisperSTT(**_named(options, "faster-whisper"))


def _pocketsphinx(options: Any, secret: str | None) -> Any:
    _speech("pocketsphinx", "pocketsphinx")
    from voicerail.providers.pocketsphinx_stt import PocketsphinxSTT

    return PocketsphinxSTT(**_named(options, "pocketsphinx"))


def _deepgram(options: Any, secret: str | None) -> Any:
    from voicerail.providers.deepgram import DeepgramSTT

    return DeepgramSTT(api_key=secret or "", **_named(options, "deepgram"))


def _piper(options: Any, secret: str | None) -> Any:
    _speech("piper", "piper")
    from voicerail.providers.piper import PiperTTS

    return PiperTTS(**_named(options, "piper"))


def _espeak(options: Any, secret: str | None) -> Any:
    _speech("espeak-ng", "espeakng_loader")
    from voicerail.providers.espeak import EspeakTTS

    return EspeakTTS(**_named(options, "espeak-ng"))


def _elevenlabs(options: Any, secret: str | None) -> Any:
    from voicerail.providers.elevenlabs import ElevenLabsTTS

    return ElevenLabsTTS(api_key=secret or "", **_named(options, "elevenlabs"))


def _cartesia(options: Any, secret: str | None) -> Any:
    from voicerail.providers.cartesia import CartesiaTTS

    return CartesiaTTS(api_key=secret or "", **_named(options, "cartesia"))


def _openai_tts(options: Any, secret: str | None) -> Any:
    from voicerail.providers.openai_tts import OpenAITTS

    return OpenAITTS(api_key=secret, **_named(options, "openai-tts"))


def _openai_chat(options: Any, secret: str | None) -> Any:
    from voicerail.providers.openai_chat import OpenAIChatLLM

    return OpenAIChatLLM(api_key=secret, **_named(options, "openai"))


BUILTIN_FACTORIES = (
    ProviderFactory("faster-whisper", Stage.STT, FasterWhisperOptions, _faster_whisper),
    ProviderFactory("pocketsphinx", Stage.STT, PocketsphinxOptions, _pocketsphinx),
    ProviderFactory("deepgram", Stage.STT, DeepgramOptions, _deepgram, _env("deepgram")),
    ProviderFactory("piper", Stage.TTS, PiperOptions, _piper),
    ProviderFactory("espeak-ng", Stage.TTS, EspeakOptions, _espeak),
    ProviderFactory("elevenlabs", Stage.TTS, ElevenLabsOptions, _elevenlabs, _env("elevenlabs")),
    ProviderFactory("cartesia", Stage.TTS, CartesiaOptions, _cartesia, _env("cartesia")),
    ProviderFactory("openai-tts", Stage.TTS, OpenAITTSOptions, _openai_tts, _env("openai")),
    ProviderFactory("openai", Stage.LLM, OpenAIChatOptions, _openai_chat, _env("openai")),
)


def default_registry() -> ProviderRegistry:
    """A registry of every built-in provider (a new one each call: safe to extend)."""
    return ProviderRegistry(BUILTIN_FACTORIES)
