"""End to end: a real server with real speech models, called as Twilio would."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
import websockets

from voicerail.demo import demo_turns
from voicerail.sim.api_client import fetch_call, summarize
from voicerail.sim.caller import CallerTurn, SimulatedTwilioCall
from voicerail.testing.callers import synthesize_caller_wav
from voicerail.testing.server import media_url, serve_process
from voicerail.wire import twilio

pytestmark = pytest.mark.slow


def kinds(events: list[dict]) -> list[str]:
    return [e["kind"] for e in events]


async def place(base_url: str, turns: list[CallerTurn], **kwargs) -> tuple:
    caller = SimulatedTwilioCall(media_url(base_url), **kwargs)
    result = await caller.run(turns)
    server = await fetch_call(base_url, result.call_sid)
    assert server is not None, "the server never finished recording the call"
    return result, server


async def test_demo_call_books_an_appointment(clinic_server, caller_audio):
    """Real + synthesized speech books an appointment; booking and events are stored."""
    base_url, data_dir = clinic_server
    result, server = await place(base_url, demo_turns(caller_audio))
    summary = summarize(result, server)
    assert server["outcome"] == "completed", json.dumps(summary, indent=1)
    assert "booking_id" in server["data"], json.dumps(summary, indent=1)
    booking_id = server["data"]["booking_id"]
    with sqlite3.connect(data_dir / "bookings.sqlite3") as db:
        rows = db.execute("SELECT * FROM bookings").fetchall()
    assert any(booking_id in map(str, row) for row in rows)
    assert any("maria" in " ".join(map(str, row)).lower() for row in rows), rows
    got = kinds(server["events"])
    for kind in [
        "CallStarted",
        "StreamStarted",
        "UserTurnStarted",
        "UserTurnEnded",
        "TranscriptFinal",
        "DialogDecided",
        "TTSFirstAudio",
        "MarkPlayed",
        "BookingWritten",
        "CallEnded",
    ]:
        assert kind in got, f"{kind} missing from {got}"
    assert got[0] == "CallStarted" and got[-1] == "CallEnded"
    greeting = summary["greeting"].lower()
    assert "ai" in greeting.split() or "artificial" in greeting or "virtual" in greeting
    assert "record" in greeting
    latencies = [t["v2v_latency_ms"] for t in summary["turns"]]
    assert all(ms is not None and ms > 0 for ms in latencies), latencies
    # Smart Turn v3 is on by default: finished sentences end before the silence window.
    ends = [e["data"] for e in server["events"] if e["kind"] == "UserTurnEnded"]
    assert any(end["ended_by"] == "model" for end in ends), ends
    assert all(end["ended_by"] in ("model", "silence") for end in ends), ends


async def test_barge_in_clears_agent_audio_and_keeps_only_what_was_heard(
    clinic_server, caller_audio
):
    """Talking over the greeting sends clear, stops the audio, truncates the context."""
    base_url, _ = clinic_server
    wav = synthesize_caller_wav(
        "Sorry to interrupt, I want to book an appointment please.",
        caller_audio / "barge.wav",
    )
    turn = CallerTurn.from_wav(wav, barge_in_after_s=1.0)
    result, server = await place(base_url, [turn])
    assert result.clears_received >= 1
    assert result.agent_audio_after_clear_s < 0.1
    barge = [e for e in server["events"] if e["kind"] == "BargeIn"]
    assert len(barge) == 1
    heard, full = barge[0]["pii"]["heard_text"], barge[0]["pii"]["full_text"]
    assert full.startswith(heard) and len(heard) < len(full)


async def test_silence_reprompts_then_hangs_up(tmp_path):
    """A silent caller is reprompted, then the agent says goodbye and hangs up."""
    args = ["--reprompt-after", "2", "--hangup-after", "6"]
    with serve_process(args, data_dir=tmp_path) as base_url:
        turn = CallerTurn(label="silence", silence_s=20.0)
        result, server = await place(base_url, [turn], max_reply_wait_s=20)
    assert result.hung_up_by == "agent"
    got = kinds(server["events"])
    assert "Reprompted" in got
    assert server["outcome"] == "abandoned"
    assert server["events"][-1]["data"]["ended_by"] == "silence"


@pytest.mark.parametrize(
    ("messages", "error_fragment"),
    [
        (["this is not json"], "json"),
        (
            [twilio.serialize_inbound(twilio.Media(1, "MZ1", "inbound", 1, 0, b"\xff" * 160))],
            "start",
        ),
        (["x" * 200_000], "exceeds"),
    ],
    ids=["garbage", "wrong-order", "huge"],
)
async def test_bad_input_ends_only_that_call(clinic_server, messages, error_fragment):
    """A peer's protocol violation closes its stream with the reason; the server serves
    on. Before 'start' there is no call yet, so nothing is recorded (issue 11)."""
    base_url, _ = clinic_server
    async with httpx.AsyncClient(base_url=base_url) as client:
        before = (await client.get("/api/calls", params={"limit": 1000})).json()["calls"]
    async with websockets.connect(media_url(base_url), max_size=2**22) as ws:
        for message in messages:
            await ws.send(message)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert error_fragment in closed.value.rcvd.reason.lower()
    async with httpx.AsyncClient(base_url=base_url) as client:
        after = (await client.get("/api/calls", params={"limit": 1000})).json()["calls"]
        assert len(after) == len(before)
        assert (await client.get("/healthz")).json()["status"] == "ok"
    # and the next call is served normally
    _, server = await place(base_url, [], max_reply_wait_s=20)
    assert "TTSFirstAudio" in kinds(server["events"])
    assert server["outcome"] != "failed"


def test_caller_wav_any_rate_is_converted(tmp_path: Path):
    """`CallerTurn.from_wav` accepts a 22.05 kHz WAV and yields 8 kHz μ-law."""
    wav = synthesize_caller_wav("hello", tmp_path / "h.wav", engine="espeak-ng")
    turn = CallerTurn.from_wav(wav)
    assert len(turn.ulaw) > 1600  # more than 0.2 s at 8000 bytes/s


def test_voicerail_call_cli_prints_the_turns_as_json(clinic_server, caller_audio, tmp_path):
    """`voicerail call --json` reports what the server heard and said, and latency."""
    import subprocess
    import sys

    base_url, _ = clinic_server
    wav = synthesize_caller_wav("What are your opening hours?", caller_audio / "hours.wav")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "voicerail.cli",
            "call",
            "--url",
            media_url(base_url),
            "--say",
            str(wav),
            "--record-dir",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    body = json.loads(out.stdout)
    assert set(body) >= {"call_id", "outcome", "turns"}
    [turn] = body["turns"]
    assert turn["caller_audio"] == str(wav)
    assert "open" in turn["transcript"].lower()
    assert "Monday to Friday" in turn["agent_text"]
    assert turn["v2v_latency_ms"] > 0
    assert Path(body["agent_audio"]).stat().st_size > 8000
