"""End to end per provider: the clinic agent books an appointment through a call
that starts at Telnyx's, Plivo's or Vonage's webhook (and Twilio's) and streams in
that provider's protocol, with the embedded models."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from voicerail.demo import demo_turns
from voicerail.sim.api_client import fetch_call, summarize
from voicerail.sim.provider_calls import answer_call
from voicerail.testing.callers import synthesize_caller_wav

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("transport", ["twilio", "telnyx", "plivo", "vonage"])
async def test_a_booking_call_through_each_provider(clinic_server, caller_audio, transport):
    """Webhook, then stream: the booking is written and the call completes."""
    base_url, data_dir = clinic_server
    caller = await answer_call(transport, base_url)
    result = await caller.run(demo_turns(caller_audio))
    server = await fetch_call(base_url, result.call_sid)
    assert server is not None, "the server never finished recording the call"
    summary = summarize(result, server)
    assert server["outcome"] == "completed", json.dumps(summary, indent=1)
    assert server["data"]["transport"] == transport
    booking_id = server["data"]["booking_id"]
    with sqlite3.connect(data_dir / "bookings.sqlite3") as db:
        rows = db.execute("SELECT * FROM bookings").fetchall()
    assert any(booking_id in map(str, row) for row in rows)
    kinds = [e["kind"] for e in server["events"]]
    assert "MarkPlayed" in kinds and "BookingWritten" in kinds
    assert result.protocol_errors == []
    assert all(t["v2v_latency_ms"] and t["v2v_latency_ms"] > 0 for t in summary["turns"])


def test_voicerail_call_starts_at_the_providers_webhook(clinic_server, caller_audio):
    """`voicerail call --transport vonage --server URL --json` prints the same JSON."""
    base_url, _ = clinic_server
    wav = synthesize_caller_wav("What are your opening hours?", caller_audio / "hours.wav")
    argv = ["call", "--transport", "vonage", "--server", base_url, "--say", str(wav), "--json"]
    out = subprocess.run(
        [sys.executable, "-m", "voicerail.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    body = json.loads(out.stdout)
    assert set(body) >= {"call_id", "outcome", "turns"}
    [turn] = body["turns"]
    assert "open" in turn["transcript"].lower()
    assert "Monday to Friday" in turn["agent_text"]
