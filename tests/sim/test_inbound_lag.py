"""The server measures how late it sees each turn's end against the caller's audio clock."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
from pathlib import Path

import websockets

from voicerail.audio.g711 import pcm16_to_ulaw
from voicerail.sim.api_client import fetch_call
from voicerail.sim.checks import inbound_lags_ms
from voicerail.sim.fake_server import FakeServerConfig, serve_in_process
from voicerail.sim.fakes import CloudLatency

FRAME_S = 0.02
RATE_HZ = 8000
STREAM_SID = "MZ" + "1" * 32
CALL_SID = "CA" + "2" * 32


def frames(pcm: bytes) -> list[bytes]:
    """μ-law 20 ms frames of s16le PCM."""
    ulaw = pcm16_to_ulaw(pcm)
    return [ulaw[i : i + 160] for i in range(0, len(ulaw), 160)]


def tone(seconds: float) -> bytes:
    """A 300 Hz tone at about -9 dBFS: speech to the energy VAD."""
    n = int(seconds * RATE_HZ)
    return struct.pack(
        f"<{n}h", *(int(12000 * math.sin(2 * math.pi * 300 * i / RATE_HZ)) for i in range(n))
    )


def silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * RATE_HZ))


def media(seq: int, chunk: bytes) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": STREAM_SID,
            "media": {
                "track": "inbound",
                "chunk": str(seq - 1),
                "timestamp": str((seq - 2) * 20),
                "payload": base64.b64encode(chunk).decode(),
            },
        }
    )


async def test_a_late_first_frame_is_not_lag_and_a_stalled_turn_end_is(
    data_dir: Path, fast: CloudLatency
) -> None:
    """The caller's audio starts 0.4 s after ``start`` (not the server's fault: the
    lag stays near zero, where counting from ``start`` would give 0.4 s); in the
    second turn the frames that complete the endpointing window arrive 0.35 s
    late, as to a server that falls behind, and that turn's end is reported about
    that late."""
    config = FakeServerConfig(agent="echo", data_dir=data_dir, vad="energy", latency=fast)
    turn_1 = frames(silence(0.4) + tone(0.8) + silence(2.5))
    turn_2 = frames(tone(0.8))
    after_2 = frames(silence(1.5))
    async with serve_in_process(config) as base_url:
        url = base_url.replace("http://", "ws://") + "/twilio/media"
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1"}))
            start = {
                "streamSid": STREAM_SID,
                "accountSid": "AC" + "3" * 32,
                "callSid": CALL_SID,
                "tracks": ["inbound"],
                "customParameters": {},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            }
            await ws.send(
                json.dumps(
                    {
                        "event": "start",
                        "sequenceNumber": "1",
                        "streamSid": STREAM_SID,
                        "start": start,
                    }
                )
            )
            await asyncio.sleep(0.4)  # the caller's first frame is late
            seq = 2
            origin = time.monotonic()
            for index, chunk in enumerate(turn_1 + turn_2 + after_2):
                if index == len(turn_1) + len(turn_2) + 23:
                    # 0.46 s into the 0.5 s endpointing window: the rest arrives late
                    await asyncio.sleep(0.35)
                due = origin + (index + 1) * FRAME_S
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                await ws.send(media(seq, chunk))
                seq += 1
            stop = {"accountSid": "AC" + "3" * 32, "callSid": CALL_SID}
            await ws.send(
                json.dumps(
                    {
                        "event": "stop",
                        "sequenceNumber": str(seq),
                        "streamSid": STREAM_SID,
                        "stop": stop,
                    }
                )
            )
        server = await fetch_call(base_url, CALL_SID)
    assert server is not None
    ended = [e for e in server["events"] if e["kind"] == "UserTurnEnded"]
    assert len(ended) == 2, [e["kind"] for e in server["events"]]
    first, second = (e["data"]["inbound_lag_s"] for e in ended)
    assert -0.01 < first < 0.12
    assert 0.25 < second < 0.6
    assert inbound_lags_ms(server["events"]) == [first * 1000, second * 1000]
    # What the old origin (the start message) would have said about the first turn:
    started = next(e["at_mono"] for e in server["events"] if e["kind"] == "StreamStarted")
    data = ended[0]["data"]
    due = started + data["speech_end_s"] + data["endpoint_wait_s"]
    assert ended[0]["at_mono"] - due > 0.35
