"""The simulated caller measures voice-to-voice latency at the ear: from the end of
its speech (not of its audio) to the first audible agent frame it plays."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import numpy as np
import websockets

from voicerail.audio.g711 import pcm16_to_ulaw
from voicerail.audio.levels import ulaw_is_audible
from voicerail.sim.call_result import CallerTurn
from voicerail.sim.caller import FRAME_NUM_BYTES, FRAME_S, SimulatedTwilioCall

REPLY_DELAY_S = 0.3  # the fake agent answers this long after the last audible frame
LEADING_SILENCE_FRAMES = 5  # ...with 100 ms of silence before its first audible frame
TRAILING_SILENCE_S = 0.6  # the caller's recording goes on silent this long after its speech


def _tone_ulaw(num_frames: int) -> bytes:
    t = np.arange(num_frames * FRAME_NUM_BYTES) / 8000
    return pcm16_to_ulaw((8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2").tobytes())


def _tone_frames(num_frames: int) -> list[bytes]:
    tone = _tone_ulaw(num_frames)
    return [tone[k : k + FRAME_NUM_BYTES] for k in range(0, len(tone), FRAME_NUM_BYTES)]


async def _fake_agent(ws: websockets.ServerConnection) -> None:
    """Answers every utterance REPLY_DELAY_S after its last audible inbound frame arrived."""
    stream_sid = ""
    reply: asyncio.Task[None] | None = None

    async def send(frames: list[bytes]) -> None:
        for frame in frames:  # in one burst, as a server's playback lead is sent
            media = {"payload": base64.b64encode(frame).decode()}
            await ws.send(json.dumps({"event": "media", "streamSid": stream_sid, "media": media}))

    async def answer(due: float) -> None:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await send([b"\xff" * FRAME_NUM_BYTES] * LEADING_SILENCE_FRAMES + _tone_frames(10))

    async for text in ws:
        message = json.loads(text)
        if message["event"] == "start":
            stream_sid = message["start"]["streamSid"]
            await send(_tone_frames(5))  # a greeting, which the caller waits out
        elif message["event"] == "media" and ulaw_is_audible(
            base64.b64decode(message["media"]["payload"])
        ):
            if reply is not None:
                reply.cancel()
            reply = asyncio.create_task(answer(time.monotonic() + REPLY_DELAY_S))


async def test_latency_reads_the_agent_delay_within_one_frame_despite_trailing_silence() -> None:
    """A known delay plus known leading silence is read within one 20 ms frame; the
    older measure (end of file to first frame received) reads lower by the caller's
    trailing silence and the agent's leading silence."""
    trailing = b"\xff" * int(TRAILING_SILENCE_S * 8000)
    turn = CallerTurn(ulaw=_tone_ulaw(40) + trailing, label="0.8 s speech + 0.6 s silence")
    assert turn.speech_num_frames == 40
    async with websockets.serve(_fake_agent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        caller = SimulatedTwilioCall(
            f"ws://127.0.0.1:{port}/twilio/media", turn_gap_s=0.3, max_reply_wait_s=3.0
        )
        result = await asyncio.wait_for(caller.run([turn]), timeout=10.0)
    timing = result.turns[0]
    at_the_ear_s = REPLY_DELAY_S + LEADING_SILENCE_FRAMES * FRAME_S
    # The reply reaches the caller between two ticks of its playback clock, so it
    # starts playing up to one frame later: expected value at_the_ear_s + FRAME_S / 2.
    assert timing.v2v_latency_s is not None
    assert abs(timing.v2v_latency_s - (at_the_ear_s + FRAME_S / 2)) <= FRAME_S
    received = timing.v2v_received_latency_s
    assert received is not None
    assert abs(received - (REPLY_DELAY_S - TRAILING_SILENCE_S)) <= FRAME_S
