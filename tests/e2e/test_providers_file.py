"""``voicerail serve --providers FILE`` with cloud providers against local fake servers.

Deepgram, ElevenLabs and two OpenAI-compatible endpoints (the first failing) run
in this process on loopback; the server reads their URLs from the deployment
file and their keys from the environment, and a simulated Twilio call routes
through all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from voicerail.sim.api_client import fetch_call
from voicerail.sim.caller import CallerTurn, SimulatedTwilioCall
from voicerail.testing.callers import synthesize_caller_wav
from voicerail.testing.fake_servers.deepgram import FakeDeepgram, run_fake_deepgram
from voicerail.testing.fake_servers.elevenlabs import FakeElevenLabs, run_fake_elevenlabs
from voicerail.testing.fake_servers.openai import FakeOpenAI, ScriptedReply, run_fake_openai
from voicerail.testing.server import serve_process

pytestmark = pytest.mark.slow

DEPLOYMENT = """
providers:
  stt:
    - deepgram: {{model: nova-3, base_url: "{deepgram}"}}
  tts:
    - elevenlabs: {{voice_id: clinic-voice, base_url: "{elevenlabs}", timeout_s: 3}}
    - espeak-ng
  llm:
    - openai: {{name: openai-down, model: gpt-4o-mini, base_url: "{down}"}}
    - openai: {{model: gpt-4o-mini, base_url: "{up}"}}
routing:
  llm: {{ttfb_timeout_s: 3.0, hedge: false}}
"""


async def test_a_call_routes_through_the_cloud_providers_the_file_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Transcripts from Deepgram, replies from the second LLM after the first fails,
    speech from ElevenLabs: each provider is the one the file names, keyed from the
    environment."""
    for variable, key in [
        ("DEEPGRAM_API_KEY", "dg-key"),
        ("ELEVENLABS_API_KEY", "el-key"),
        ("OPENAI_API_KEY", "oa-key"),
    ]:
        monkeypatch.setenv(variable, key)
    wav = synthesize_caller_wav("What are your opening hours?", tmp_path / "hours.wav")
    deepgram = FakeDeepgram(transcript="what are your opening hours", api_key="dg-key")
    elevenlabs = FakeElevenLabs(api_key="el-key")
    down = FakeOpenAI(status=503, api_key="oa-key")
    up = FakeOpenAI(replies=[ScriptedReply("We are open Monday to Friday.")], api_key="oa-key")
    async with contextlib.AsyncExitStack() as fakes:
        urls = {
            "deepgram": await fakes.enter_async_context(run_fake_deepgram(deepgram)),
            "elevenlabs": await fakes.enter_async_context(run_fake_elevenlabs(elevenlabs)),
            "down": await fakes.enter_async_context(run_fake_openai(down)),
            "up": await fakes.enter_async_context(run_fake_openai(up)),
        }
        deployment = tmp_path / "voicerail.yaml"
        deployment.write_text(DEPLOYMENT.format(**urls), encoding="utf-8")
        args = ["--agent", "examples/clinic_llm.yaml", "--vad", "energy"]
        args += ["--providers", str(deployment), "--skip-credential-check"]
        with contextlib.ExitStack() as server:
            # Start-up runs in a thread: the fakes must keep answering the warm-up.
            base_url = await asyncio.to_thread(
                server.enter_context, serve_process(args, data_dir=tmp_path / "data")
            )
            caller = SimulatedTwilioCall(base_url.replace("http", "ws") + "/twilio/media")
            result = await caller.run([CallerTurn.from_wav(wav)])
            call = await fetch_call(base_url, result.call_sid)
            await asyncio.to_thread(server.close)
    assert call is not None, "the server has no record of the call"
    events = call["events"]
    attempts = {
        (e["stage"], e["provider"], e["outcome"])
        for e in events
        if e["kind"] == "ProviderAttempted"
    }
    assert ("stt", "deepgram", "ok") in attempts
    assert ("tts", "elevenlabs", "ok") in attempts
    assert ("llm", "openai-down", "error") in attempts
    assert ("llm", "openai", "ok") in attempts
    assert not {a for a in attempts if a[1] == "espeak-ng"}, "elevenlabs should have spoken"
    finals = [e for e in events if e["kind"] == "TranscriptFinal" and e["outcome"] != "error"]
    assert finals, "no transcript reached the dialog"
    spoken = " ".join(str(e.get("pii", {}).get("agent_text", "")) for e in events)
    assert "Monday to Friday" in spoken
    assert any(c.path == "/v1/listen" for c in deepgram.connections)
    assert any("clinic-voice" in c.path for c in elevenlabs.connections)
    assert [r.headers["authorization"] for r in up.requests][:1] == ["Bearer oa-key"]
