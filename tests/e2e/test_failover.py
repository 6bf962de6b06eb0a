"""Real failover between real engines on the demo agent, with the primaries made to fail."""

from __future__ import annotations

import pytest

from voicerail.sim.api_client import fetch_call
from voicerail.sim.caller import CallerTurn, SimulatedTwilioCall
from voicerail.testing.callers import synthesize_caller_wav
from voicerail.testing.server import serve_process

pytestmark = pytest.mark.slow

FAULTS = """
piper:
  hang_rate: 1.0          # piper never answers
faster-whisper:
  error_rates: {"503": 1.0}
"""


async def test_call_keeps_talking_when_piper_hangs_and_whisper_fails(tmp_path):
    """espeak-ng speaks every reply and pocketsphinx transcribes; the call never fails."""
    faults = tmp_path / "faults.yaml"
    faults.write_text(FAULTS)
    wav = synthesize_caller_wav("What are your opening hours?", tmp_path / "hours.wav")
    # No phrase cache: the fixed sentences must reach the hung piper too.
    args = ["--faults", str(faults), "--no-phrase-cache"]
    with serve_process(args, data_dir=tmp_path / "data") as base_url:
        caller = SimulatedTwilioCall(base_url.replace("http", "ws") + "/twilio/media")
        result = await caller.run([CallerTurn.from_wav(wav)])
        server = await fetch_call(base_url, result.call_sid)
    assert server is not None and server["outcome"] != "failed", server and server["error"]
    events = server["events"]
    attempts = [
        (e["provider"], e["outcome"], e["error_class"])
        for e in events
        if e["kind"] == "ProviderAttempted"
    ]
    # piper is abandoned at the deadline or overtaken by a hedged espeak-ng request.
    assert {("piper", "error", "timeout"), ("piper", "hedge_lost", "timeout")} & set(attempts)
    assert ("espeak-ng", "ok", None) in attempts
    assert ("faster-whisper", "error", "transient") in attempts
    assert ("pocketsphinx", "ok", None) in attempts
    finals = [e for e in events if e["kind"] == "TranscriptFinal"]
    assert finals and all(e["provider"] == "pocketsphinx" for e in finals)
    failovers = [e for e in events if e["kind"] == "ProviderFailedOver"]
    assert {e["provider"] for e in failovers} >= {"espeak-ng", "pocketsphinx"}
    # The greeting reached the caller within the first-byte deadline plus synthesis.
    first_audio = next(e for e in events if e["kind"] == "TTSFirstAudio")
    assert first_audio["latency_s"] < 2.0  # the 1.5 s TTS first-byte deadline, then espeak-ng
    assert result.turns[0].v2v_latency_s is not None
