"""The phrase cache: what an agent says whatever the caller said, synthesized once.

Greetings, disclosures, reprompts, goodbyes and holding phrases do not depend on
the caller, yet without a cache every call synthesizes them again: twenty calls
starting together synthesize the same greeting twenty times, on the same cores
that must decode the callers' speech. The cache keeps each such sentence as the
μ-law audio the call sends, so a hit costs no model time and no resampling.

Rules:

1. Only fixed sentences are cached: those of the agent's templates with no
   caller placeholder left (:func:`fixed_sentences`). A sentence that names the
   caller is never stored, in memory or on disk.
2. The key is the primary TTS provider's name, model and model version, and the
   text: a change of voice or model version misses, and the old audio is left
   alone (another deployment may still use it).
3. The cache is filled at start-up (:meth:`PhraseCache.warm`) from the primary
   provider alone, never from a fallback, so a cached sentence is in the call's
   voice. A sentence whose synthesis fails is left uncached and synthesized per
   call as before.
4. Entries live in memory and, when a directory is given, on disk
   (``<sha256 of the key>.ulaw``), written atomically; a later start loads them
   instead of synthesizing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from voicerail.audio.g711 import pcm16_to_ulaw
from voicerail.audio.resample import StreamResampler
from voicerail.errors import ProviderError
from voicerail.providers.base import TextToSpeech, TTSChunk, closing_stream
from voicerail.session.text import split_sentences

log = logging.getLogger(__name__)

TELEPHONE_RATE_HZ = 8000
ULAW_FRAME_NUM_BYTES = 160  # 20 ms of μ-law at 8 kHz
ULAW_SILENCE = b"\xff"

#: Said when a reply is slow to start under load (see the call driver).
HOLDING_PHRASE = "One moment, please."


def default_cache_dir() -> Path:
    """``$VOICERAIL_CACHE_DIR``, else ``$XDG_CACHE_HOME/voicerail/phrases``
    (``~/.cache/voicerail/phrases``)."""
    explicit = os.environ.get("VOICERAIL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "voicerail" / "phrases"


def fixed_sentences(texts: Iterable[str]) -> list[str]:
    """The sentences of ``texts`` with no ``{placeholder}`` left, once each, in order."""
    seen: dict[str, None] = {}
    for text in texts:
        for sentence in split_sentences(text):
            if "{" not in sentence and "}" not in sentence:
                seen.setdefault(sentence, None)
    return list(seen)


async def ulaw_frames(chunks: AsyncIterable[TTSChunk]) -> AsyncIterator[bytes]:
    """Turn TTS chunks into whole 20 ms frames of μ-law at 8 kHz (concatenated).

    The last frame is padded with μ-law silence. The resampler is built from
    the first chunk's rate (a routed TTS keeps one rate per request).
    """
    resampler: StreamResampler | None = None
    leftover = b""
    async for chunk in chunks:
        if resampler is None:
            resampler = StreamResampler(chunk.sample_rate_hz, TELEPHONE_RATE_HZ)
        ulaw = leftover + pcm16_to_ulaw(resampler.process(chunk.pcm))
        whole = len(ulaw) - len(ulaw) % ULAW_FRAME_NUM_BYTES
        leftover = ulaw[whole:]
        if whole:
            yield ulaw[:whole]
    if resampler is not None:
        leftover += pcm16_to_ulaw(resampler.flush())
    if leftover:
        padding = (-len(leftover)) % ULAW_FRAME_NUM_BYTES
        yield leftover + ULAW_SILENCE * padding


@dataclass(frozen=True)
class WarmResult:
    """What :meth:`PhraseCache.warm` did: sentences synthesized, loaded from disk, failed."""

    synthesized: int
    loaded: int
    failed: int


class PhraseCache:
    """Fixed sentences as μ-law audio, for one primary TTS voice.

    Args:
        tts: the primary provider (its ``name``, ``model`` and ``model_version``,
            when it has one, make the key; rule 2).
        directory: where entries persist; None keeps them in memory only.
    """

    def __init__(self, tts: TextToSpeech, directory: Path | None = None) -> None:
        self.tts = tts
        self.directory = directory
        self.identity = (tts.name, tts.model, getattr(tts, "model_version", None))
        self._audio: dict[str, bytes] = {}
        self.hits = 0

    def key(self, text: str) -> str:
        """The entry's file stem: sha256 of the identity and the text."""
        raw = json.dumps([*self.identity, text], ensure_ascii=False)
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    def get(self, text: str) -> bytes | None:
        """The cached μ-law audio of ``text`` (whole 20 ms frames), or None."""
        audio = self._audio.get(text)
        if audio is not None:
            self.hits += 1
        return audio

    def get_quietly(self, text: str) -> bytes | None:
        """As :meth:`get`, without counting a hit (audio kept ready in case)."""
        return self._audio.get(text)

    def __contains__(self, text: str) -> bool:
        return text in self._audio

    async def warm(self, texts: Iterable[str], *, timeout_s: float = 10.0) -> WarmResult:
        """Fill the cache with the fixed sentences of ``texts`` (rules 1, 3, 4); a
        sentence that takes over ``timeout_s`` to synthesize is left out."""
        synthesized = loaded = failed = 0
        for sentence in fixed_sentences(texts):
            if sentence in self._audio:
                continue
            audio = self._load(sentence)
            if audio is not None:
                loaded += 1
            else:
                try:
                    audio = await asyncio.wait_for(self._synthesize(sentence), timeout_s)
                except TimeoutError:
                    log.warning(
                        "phrase cache: %s took over %.0f s on a sentence", self.tts.name, timeout_s
                    )
                    failed += 1
                    continue
                except ProviderError as exc:
                    log.warning("phrase cache: %s failed a fixed sentence: %s", self.tts.name, exc)
                    failed += 1
                    continue
                self._store(sentence, audio)
                synthesized += 1
            self._audio[sentence] = audio
        return WarmResult(synthesized, loaded, failed)

    async def _synthesize(self, sentence: str) -> bytes:
        parts = []
        async with closing_stream(ulaw_frames(self.tts.synthesize(sentence))) as frames:
            async for piece in frames:
                parts.append(piece)
        return b"".join(parts)

    def _path(self, sentence: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{self.key(sentence)}.ulaw"

    def _load(self, sentence: str) -> bytes | None:
        path = self._path(sentence)
        try:
            audio = path.read_bytes() if path is not None else None
        except OSError:
            return None
        if audio is None or len(audio) % ULAW_FRAME_NUM_BYTES:
            return None  # absent, or a torn file from an older version: synthesize again
        return audio

    def _store(self, sentence: str, audio: bytes) -> None:
        path = self._path(sentence)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
                tmp.write(audio)
            os.replace(tmp.name, path)
        except OSError as exc:  # a read-only cache still serves from memory
            log.warning("phrase cache: cannot write %s: %s", path, exc)
