"""Shared pieces of the simulator tests: small suites and fast fake-provider servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicerail.sim.audio import AudioLibrary
from voicerail.sim.fakes import CloudLatency

# Short fake speech and fixed cloud-like latencies keep each call to a few seconds.
FAST = CloudLatency(stt_s=0.05, llm_s=0.1, tts_s=0.05, sigma=0.0, seconds_per_word=0.06)


@pytest.fixture
def fast() -> CloudLatency:
    """Fixed, short provider latencies and short fake speech."""
    return FAST


@pytest.fixture(scope="session")
def audio_library(tmp_path_factory: pytest.TempPathFactory) -> AudioLibrary:
    """Synthesized caller audio, cached for the session."""
    return AudioLibrary(tmp_path_factory.mktemp("sim-audio"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh server data directory."""
    return tmp_path / "server"
