"""The simulated caller plays agent audio by bytes, as Twilio does, whatever the message size."""

from __future__ import annotations

import asyncio
import base64
import json

import websockets

from voicerail.sim.call_result import CallerTurn
from voicerail.sim.caller import FRAME_NUM_BYTES, SimulatedTwilioCall


def test_payloads_that_are_not_whole_frames_play_as_continuous_audio() -> None:
    caller = SimulatedTwilioCall("ws://127.0.0.1:9/twilio/media")
    for _ in range(3):
        caller._on_agent_media(b"\x00" * 240)  # 30 ms each: 720 bytes = 4.5 frames
    frames = [item for item in caller._playback if isinstance(item, bytes)]
    assert [len(f) for f in frames] == [FRAME_NUM_BYTES] * 4
    caller._flush_partial()  # a mark follows: the last half frame plays, padded
    frames = [item for item in caller._playback if isinstance(item, bytes)]
    assert [len(f) for f in frames] == [FRAME_NUM_BYTES] * 5
    assert b"".join(frames)[:720] == b"\x00" * 720
    assert b"".join(frames)[720:] == b"\xff" * 80


def test_a_100_ms_message_is_not_an_arrival_gap_when_the_next_comes_100_ms_later() -> None:
    caller = SimulatedTwilioCall("ws://127.0.0.1:9/twilio/media")
    for k in range(20):
        caller._track_arrival(10.0 + k * 0.1, num_frames=5)
    assert caller.result.arrival_gaps_s == []
    caller._track_arrival(10.0 + 19 * 0.1 + 0.15, num_frames=5)  # 50 ms late
    assert len(caller.result.arrival_gaps_s) == 1


async def test_the_agent_hanging_up_while_the_caller_speaks_ends_the_call() -> None:
    """The server closes the socket mid-utterance: the caller's run returns (it used to
    wait forever for its speech to drain) and records who hung up."""
    silence_b64 = base64.b64encode(b"\xff" * FRAME_NUM_BYTES).decode()
    heard_speech = asyncio.Event()

    async def agent(ws: websockets.ServerConnection) -> None:
        stream_sid = ""
        async for text in ws:
            message = json.loads(text)
            if message["event"] == "start":
                stream_sid = message["start"]["streamSid"]
                for _ in range(10):  # a 200 ms greeting, then quiet
                    payload = base64.b64encode(b"\x7f" * FRAME_NUM_BYTES).decode()
                    media = {"payload": payload}
                    await ws.send(
                        json.dumps({"event": "media", "streamSid": stream_sid, "media": media})
                    )
            elif message["event"] == "media" and message["media"]["payload"] != silence_b64:
                heard_speech.set()
                await ws.close()
                return

    async with websockets.serve(agent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        caller = SimulatedTwilioCall(
            f"ws://127.0.0.1:{port}/twilio/media", turn_gap_s=0.3, max_reply_wait_s=5.0
        )
        speech = CallerTurn(ulaw=b"\x10" * (FRAME_NUM_BYTES * 150), label="3 s of speech")
        result = await asyncio.wait_for(caller.run([speech, speech]), timeout=10.0)
    assert heard_speech.is_set()
    assert result.hung_up_by == "agent"
    assert len(result.turns) <= 1  # the second turn was never started
