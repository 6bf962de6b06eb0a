"""The server measures how late it sees each turn's end against the caller's audio
clock. Runs the call driver on virtual time (fake transport, AutoClock): the late
first frame and the stalled window are exact, not slept."""

from __future__ import annotations

import asyncio
import math
import struct
from pathlib import Path

from voicerail.events.model import EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.session.driver import CallSession
from voicerail.session.runtime import AudioConfig, Runtime
from voicerail.sim.checks import inbound_lags_ms
from voicerail.testing.clock import AutoClock, run_virtual
from voicerail.testing.doubles import QuietAgent, SilentSTT, SilentTTS
from voicerail.testing.transport import FakeTransport
from voicerail.wire.transport import AudioReceived, CallAnswered, CallHungUp

FRAME_S = 0.02
RATE_HZ = 8000


def frames(pcm: bytes) -> list[bytes]:
    """20 ms frames of s16le PCM."""
    return [pcm[i : i + 320] for i in range(0, len(pcm), 320)]


def tone(seconds: float) -> bytes:
    """A 300 Hz tone at about -9 dBFS: speech to the energy VAD."""
    n = int(seconds * RATE_HZ)
    return struct.pack(
        f"<{n}h", *(int(12000 * math.sin(2 * math.pi * 300 * i / RATE_HZ)) for i in range(n))
    )


def silence(seconds: float) -> bytes:
    return bytes(2 * int(seconds * RATE_HZ))


def test_a_late_first_frame_is_not_lag_and_a_stalled_turn_end_is(tmp_path: Path) -> None:
    """The caller's audio starts 0.4 s after the call is answered (not the server's
    fault: the lag stays near zero, where counting from the answer would give
    0.4 s); in the second turn the frames that complete the endpointing window
    arrive 0.35 s late, as to a server that falls behind, and that turn's end is
    reported that late."""
    turn_1 = frames(silence(0.4) + tone(0.8) + silence(2.5))
    turn_2 = frames(tone(0.8))
    after_2 = frames(silence(1.5))
    store = SQLiteEventStore(tmp_path / "events.sqlite3")

    async def main() -> str:
        clock = AutoClock()
        runtime = Runtime(
            agent=QuietAgent(),
            stt=SilentSTT(),
            tts=SilentTTS(),
            events=store,
            clock=clock,
            audio=AudioConfig(speculative_stt_after_s=None, turn_check_after_s=None),
        )
        transport = FakeTransport()

        async def send(frame: str | bytes) -> None:  # pragma: no cover
            raise AssertionError("nothing goes to a socket")

        async def close(code: int, reason: str) -> None:
            pass

        session = CallSession(runtime, send, close, transport=transport)
        task = asyncio.get_running_loop().create_task(session.run(transport.frames()))
        transport.push(CallAnswered("CA1", "MZ1"))
        await clock.sleep(0.4)  # the caller's first frame is late
        origin = clock.monotonic()
        for index, chunk in enumerate(turn_1 + turn_2 + after_2):
            if index == len(turn_1) + len(turn_2) + 23:
                # 0.46 s into the 0.5 s endpointing window: the rest arrives late
                await clock.sleep(0.35)
                origin += 0.35
            due = origin + (index + 1) * FRAME_S
            await clock.sleep(due - clock.monotonic())
            transport.push(AudioReceived(chunk))
        transport.push(CallHungUp())
        await task
        return session.call_id

    call_id = run_virtual(main())
    events = [e.to_dict() for e in store.events(call_id)]
    store.close()
    ended = [e for e in events if e["kind"] == EventKind.USER_TURN_ENDED]
    assert len(ended) == 2, [e["kind"] for e in events]
    first, second = (e["data"]["inbound_lag_s"] for e in ended)
    # within a frame and a VAD window of rounding
    assert 0.0 <= first < 0.06
    assert 0.3 <= second < 0.4
    assert inbound_lags_ms(events) == [first * 1000, second * 1000]
    # What the old origin (the answer) would have said about the first turn:
    started = next(e["at_mono"] for e in events if e["kind"] == EventKind.STREAM_STARTED)
    data = ended[0]["data"]
    due = started + data["speech_end_s"] + data["endpoint_wait_s"]
    assert ended[0]["at_mono"] - due > 0.35
