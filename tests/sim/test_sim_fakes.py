"""The simulator's fakes come from the provider registry and run through a Router."""

from __future__ import annotations

from pathlib import Path

import pytest

from voicerail.errors import ConfigError
from voicerail.events.model import Event, EventKind, Stage
from voicerail.providers.chains import build_chains
from voicerail.providers.registry import parse_providers, secret_lookup
from voicerail.routing.faults import FakeTTS, FaultProfile, FaultySTT, FaultyTTS
from voicerail.sim.fake_server import FakeServerConfig, build_runtime
from voicerail.sim.fakes import FAKE_DEFAULTS, CloudLatency, EchoAgent, fake_registry

FAST = CloudLatency(stt_s=0.01, llm_s=0.01, tts_s=0.01, sigma=0.0, seconds_per_word=0.01)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_without_a_file_a_simulated_server_routes_one_fake_per_stage(tmp_path: Path):
    runtime, router = build_runtime(
        FakeServerConfig(agent="echo", data_dir=tmp_path, vad="energy", latency=FAST)
    )
    try:
        names = {stage: [p.name for p in chain] for stage, chain in router.chains.items()}
        assert names == {Stage.STT: ["fake-stt"], Stage.TTS: ["fake-tts"], Stage.LLM: ["fake-llm"]}
        assert runtime.router is router
        assert isinstance(runtime.agent, EchoAgent) and runtime.agent.llm.name == "router"
    finally:
        runtime.events.close()


async def test_a_simulated_server_fails_over_between_fakes_named_in_a_file(tmp_path: Path):
    """A hung first TTS (fault file) is abandoned for the second, as in production."""
    providers = write(
        tmp_path,
        "voicerail.yaml",
        "providers:\n  tts: [fake-tts, {fake-tts: {name: backup-tts}}]\n"
        "routing:\n  tts: {ttfb_timeout_s: 0.2, hedge: false}\n",
    )
    faults = write(tmp_path, "faults.yaml", "fake-tts: {hang_rate: 1.0}\n")
    runtime, router = build_runtime(
        FakeServerConfig(
            agent="echo",
            data_dir=tmp_path / "data",
            vad="energy",
            latency=FAST,
            faults=faults,
            providers=providers,
        )
    )
    runtime.events.close()
    assert [p.name for p in router.chains[Stage.TTS]] == ["fake-tts", "backup-tts"]
    events: list[Event] = []
    tts = router.bind("call-1", events.append).tts
    assert tts is not None
    words = [chunk.text async for chunk in tts.synthesize("see you on tuesday")]
    assert " ".join(w for w in words if w) == "see you on tuesday"
    attempts = [(e.provider, e.outcome) for e in events if e.kind is EventKind.PROVIDER_ATTEMPTED]
    assert attempts == [("fake-tts", "error"), ("backup-tts", "ok")]


def test_fault_profiles_set_the_fakes_latency_and_wrap_other_providers():
    registry = fake_registry({"espeak-ng": FaultProfile(hang_rate=1.0)}, FAST)
    config = parse_providers({"providers": {"tts": ["fake-tts", "espeak-ng"]}}, "f")
    chains = build_chains(registry, config, FAKE_DEFAULTS, secret_lookup([], {}))
    fake, espeak = chains.tts
    assert isinstance(fake, FakeTTS) and isinstance(espeak, FaultyTTS)
    assert isinstance(chains.stt[0], FaultySTT) and chains.stt[0].name == "fake-stt"


def test_a_bad_deployment_file_stops_the_simulated_server(tmp_path: Path):
    providers = write(tmp_path, "voicerail.yaml", "providers: {tts: [{fake-tts: {rate: 2}}]}\n")
    config = FakeServerConfig(
        agent="echo", data_dir=tmp_path / "d", vad="energy", providers=providers
    )
    with pytest.raises(ConfigError, match=r"providers.tts\[0\].fake-tts.rate: unknown option"):
        build_runtime(config)
