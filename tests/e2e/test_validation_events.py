"""TTS validation in a served call: every spoken sentence is checked and recorded."""

from __future__ import annotations

import pytest

from voicerail.sim.api_client import fetch_call
from voicerail.sim.caller import SimulatedTwilioCall
from voicerail.testing.server import serve_process

pytestmark = pytest.mark.slow


async def test_greeting_sentences_are_validated_as_events_of_their_call(tmp_path):
    lexicon = tmp_path / "lexicon.yaml"
    lexicon.write_text("Riverside: {piper: River side}\n")
    # No phrase cache: a cached greeting is not synthesized (nor validated) per call.
    args = ["--validate-tts", "--lexicon", str(lexicon), "--no-phrase-cache"]
    with serve_process(args, data_dir=tmp_path / "data") as base_url:
        caller = SimulatedTwilioCall(base_url.replace("http", "ws") + "/twilio/media")
        result = await caller.run([])
        server = await fetch_call(base_url, result.call_sid, wait_s=20)
    assert server is not None
    checks = [e for e in server["events"] if e["kind"] == "TTSValidated"]
    assert checks, "no TTSValidated event in the call's timeline"
    assert all(e["call_id"] == server["call_id"] for e in checks)
    assert {e["provider"] for e in checks} <= {"piper", "espeak-ng"}, checks
    assert any("wpm" in str(e["data"]) for e in checks)
