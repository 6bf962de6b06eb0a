"""Voice-to-voice latency at the caller's ear for the demo scenario, with the embedded models.

Runs ``voicerail serve`` (clinic agent, faster-whisper tiny.en, piper joe,
Silero VAD), places ``--calls`` demo calls one after another, and breaks each
caller turn's latency at the ear (end of the caller's *speech*, its last audible
frame sent, → the first *audible* agent frame played at the caller; see
:mod:`voicerail.sim.caller`) into parts that add up to it:

* endpointing — from the end of the caller's speech to the server's end-of-turn
  decision (the endpointing window, plus inbound transport and VAD);
* stt — how long the turn waited for its transcript after the endpoint
  (``TranscriptFinal.data.wait_after_turn_end_s``; with speculative STT most of
  the decode already ran during the endpointing window);
* dialog — ``DialogDecided.latency_s``;
* first_audio — ``TTSFirstAudio.latency_s`` (synthesis start → first frame);
* runtime — the rest of the server's time between endpoint and first frame
  (audio slicing and resampling, events, scheduling): voicerail's own share;
* transport — from the server's first audio frame to its arrival at the caller;
* leading_silence — from that arrival to the first audible frame playing: the
  reply's silent leading frames and the caller's 20 ms playback clock.

It also prints the older measure (end of the audio file → first frame received,
``v2v_received``) and the ratio of v2v to the sum of model compute times (the
STT decode, whether or not it overlapped the window, + dialog + first audio).

Usage: ``.venv/bin/python bench/v2v_latency.py [--calls 3] [--serve-args "..."]``
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import statistics
import tempfile
from pathlib import Path
from typing import Any

from voicerail.demo import demo_turns
from voicerail.sim.api_client import fetch_call
from voicerail.sim.caller import SimulatedTwilioCall
from voicerail.testing.server import serve_process

PARTS = [
    "endpointing",
    "stt",
    "dialog",
    "first_audio",
    "runtime",
    "transport",
    "leading_silence",
    "v2v",
    "v2v_received",
]


def breakdown(result: Any, events: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Per answered caller turn, the latency parts in milliseconds (and ``compute``)."""
    rows = []
    ends = [e for e in events if e["kind"] == "UserTurnEnded"]
    for end in ends:
        turn = end["data"]["turn"]
        after = [e for e in events if e["seq"] > end["seq"]]
        stt = next(
            (e for e in after if e["kind"] == "TranscriptFinal" and e["outcome"] == "ok"), None
        )
        dialog = next((e for e in after if e["kind"] == "DialogDecided"), None)
        first = next(
            (e for e in after if e["kind"] == "TTSFirstAudio" and e["data"].get("turn") == turn),
            None,
        )
        if stt is None or dialog is None or first is None:
            continue
        caller = _caller_turn_for(result, end["at_wall"])
        if caller is None or caller.v2v_latency_s is None or caller.first_agent_audio_at is None:
            continue
        server_total = first["at_mono"] - end["at_mono"]
        stt_wait = stt["data"].get("wait_after_turn_end_s", stt["latency_s"])
        # Both processes run on this machine, so their wall clocks agree.
        parts = {
            "v2v": caller.v2v_latency_s,
            "v2v_received": caller.v2v_received_latency_s,
            "endpointing": end["at_wall"] - caller.speech_ended_at,
            "stt": stt_wait,
            "dialog": dialog["latency_s"],
            "first_audio": first["latency_s"],
            "runtime": server_total - stt_wait - dialog["latency_s"] - first["latency_s"],
            "transport": caller.first_agent_audio_at - first["at_wall"],
            "leading_silence": caller.first_audible_at - caller.first_agent_audio_at,
            "compute": stt["latency_s"] + dialog["latency_s"] + first["latency_s"],
            "stt_decode": stt["latency_s"],
            "turn_model": end["data"].get("turn_model_s") or 0.0,
        }
        row = {k: v * 1000 for k, v in parts.items()}
        row["ended_by_model"] = float(end["data"].get("ended_by") == "model")
        rows.append(row)
    return rows


def _caller_turn_for(result: Any, at_wall: float) -> Any:
    started = [t for t in result.turns if t.started_at <= at_wall]
    return started[-1] if started else None


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def speculations(events: list[dict[str, Any]]) -> tuple[int, int]:
    """(STT speculations started, transcripts a turn end took from one) in one call."""
    ends = [e for e in events if e["kind"] == "UserTurnEnded"]
    started = (ends[-1]["data"].get("speculations") or [0, 0])[0] if ends else 0
    used = sum(1 for e in events if e["kind"] == "TranscriptFinal" and e["data"].get("speculative"))
    return started, used


async def run(base_url: str, calls: int, work: Path) -> tuple[list[dict[str, float]], list[int]]:
    turns = demo_turns(work / "audio")
    rows: list[dict[str, float]] = []
    spec = [0, 0]
    media_url = base_url.replace("http://", "ws://") + "/twilio/media"
    for _ in range(calls):
        result = await SimulatedTwilioCall(media_url).run(turns)
        server = await fetch_call(base_url, result.call_sid)
        events = server["events"] if server else []
        rows.extend(breakdown(result, events))
        started, used = speculations(events)
        spec = [spec[0] + started, spec[1] + used]
    return rows, spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument(
        "--serve-args", default="", help="extra `voicerail serve` arguments (one string)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        serve_args = shlex.split(args.serve_args)
        with serve_process(serve_args, data_dir=work / "data") as base_url:
            rows, spec = asyncio.run(run(base_url, args.calls, work))
    if not rows:
        raise SystemExit("no answered turns were measured")
    print(f"voice-to-voice latency at the caller's ear: {len(rows)} turns over {args.calls} calls")
    print(f"serve arguments: {args.serve_args or '(defaults)'}")
    print(f"{'part':<18}{'p50 ms':>10}{'p95 ms':>10}")
    for key in PARTS:
        values = [r[key] for r in rows]
        print(f"{key:<18}{percentile(values, 50):>10.1f}{percentile(values, 95):>10.1f}")
    print("not parts of the sum:")
    for key in ["stt_decode", "turn_model"]:
        values = [r[key] for r in rows]
        print(f"{key:<18}{percentile(values, 50):>10.1f}{percentile(values, 95):>10.1f}")
    ended = [r["ended_by_model"] for r in rows]
    print(f"turns ended by the end-of-turn model: {sum(ended):.0f} of {len(rows)}")
    print(f"STT speculations: {spec[0]} started, {spec[1]} used by a turn end")
    v2v = [r["v2v"] for r in rows]
    print(
        f"target p50 <= 600 ms, p95 <= 800 ms at the ear: p50 {percentile(v2v, 50) - 600:+.0f} ms,"
        f" p95 {percentile(v2v, 95) - 800:+.0f} ms from it"
    )
    ratio = statistics.median(r["v2v"] / r["compute"] for r in rows)
    print(f"v2v / sum of model compute (stt + dialog + first audio), median: {ratio:.2f}")
    share = statistics.median(r["runtime"] / r["v2v"] * 100 for r in rows)
    print(f"runtime's own share of v2v (median): {share:.2f}%")


if __name__ == "__main__":
    main()
