"""Fault injection for tests and benchmarks: re-exported from :mod:`voicerail.routing.faults`.

Fault injection is part of the runtime (``voicerail serve --faults`` and the
provider registry use it), so it lives in ``voicerail.routing``; this module
keeps the earlier import path working for the test kit.
"""

from voicerail.routing.faults import (
    Delay,
    FakeLLM,
    FakeSTT,
    FakeTTS,
    FaultProfile,
    FaultyLLM,
    FaultySTT,
    FaultyTTS,
    load_faults,
    with_faults,
)

__all__ = [
    "Delay",
    "FakeLLM",
    "FakeSTT",
    "FakeTTS",
    "FaultProfile",
    "FaultyLLM",
    "FaultySTT",
    "FaultyTTS",
    "load_faults",
    "with_faults",
]
