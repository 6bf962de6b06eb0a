"""A real ``voicerail serve`` (embedded models) shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from voicerail.testing.server import serve_process


@pytest.fixture(scope="session")
def clinic_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, data dir) of a clinic agent server with default timings."""
    data_dir = tmp_path_factory.mktemp("clinic-server")
    with serve_process(["--agent", "examples/clinic.yaml"], data_dir=data_dir) as base_url:
        yield base_url, data_dir


@pytest.fixture(scope="session")
def caller_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory where synthesized caller WAVs are cached for the session."""
    return tmp_path_factory.mktemp("caller-audio")
