"""The call driver over the browser page's protocol, in process on a clock that
advances itself: the page gets the live transcript (the caller's words before the
agent's answer is heard), the agent's audio at its own rate, and its ``played``
reports become the call's marks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from voicerail.dialog.base import AgentReply
from voicerail.events.model import EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.session.driver import TICK_S, CallSession
from voicerail.session.runtime import AudioConfig, Runtime
from voicerail.testing.clock import AutoClock, run_virtual
from voicerail.testing.doubles import HearingSTT, ToneTTS
from voicerail.wire.browser import BrowserCallProtocol

RATE_HZ = 16000
BLOCK = int(RATE_HZ * 0.02)
SILENCE = b"\x00\x00" * BLOCK
THINK_S = 2.0
TONE = (np.sin(np.arange(BLOCK) * 2 * np.pi * 300 / RATE_HZ) * 8000).astype("<i2").tobytes()


class Dialog:
    """Thinks for ``THINK_S`` (on the call's clock) before answering a turn."""

    def __init__(self, clock: AutoClock) -> None:
        self.clock = clock

    async def start(self) -> AgentReply:
        return AgentReply("Hello, how can I help?")

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        await self.clock.sleep(THINK_S)
        return AgentReply(f"You said {text}. Goodbye.", end_call=True)

    async def on_dtmf(self, digits: str) -> AgentReply:
        return AgentReply("Pressed.")

    async def on_silence(self, count: int, final: bool = False) -> AgentReply:
        return AgentReply("Still there?")

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        pass


class Agent:
    name = "script"

    def __init__(self, clock: AutoClock) -> None:
        self.clock = clock

    def new_dialog(self, call_id: str) -> Dialog:
        return Dialog(self.clock)


class Page:
    """The page's side: 20 ms microphone blocks on the call's clock, and every mark
    reported played as soon as it arrives (a page with no output latency)."""

    def __init__(self, clock: AutoClock) -> None:
        self.clock = clock
        self.inbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.received: list[str | bytes] = []
        self.received_at: list[float] = []  # the call's clock, seconds
        self.speech_blocks = 0

    async def frames(self) -> AsyncIterator[str | bytes]:
        while True:
            yield await self.inbox.get()

    async def send(self, frame: str | bytes) -> None:  # the server writes to the page
        self.received.append(frame)
        self.received_at.append(self.clock.monotonic())
        if isinstance(frame, str):
            message = json.loads(frame)
            if message["event"] == "mark":
                self.inbox.put_nowait(json.dumps({"event": "played", "mark": message["name"]}))

    async def microphone(self) -> None:
        while True:
            await self.clock.sleep(0.02)
            speaking = self.speech_blocks > 0
            self.speech_blocks -= speaking
            self.inbox.put_nowait(TONE if speaking else SILENCE)

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(f) for f in self.received if isinstance(f, str)]


def test_the_page_sees_the_transcript_live_and_its_played_marks_count(tmp_path):
    async def main() -> tuple[Any, Page, SQLiteEventStore, str]:
        clock = AutoClock()
        store = SQLiteEventStore(tmp_path / "events.sqlite3")
        audio = AudioConfig(speculative_stt_after_s=None, turn_check_after_s=None)
        runtime = Runtime(
            agent=Agent(clock),
            stt=HearingSTT("book a cleaning"),
            tts=ToneTTS(num_samples=1600),
            events=store,
            clock=clock,
            audio=audio,
        )
        page = Page(clock)

        async def close(code: int, reason: str) -> None:
            pass

        session = CallSession(runtime, page.send, close, transport=BrowserCallProtocol("web_1"))
        page.inbox.put_nowait(json.dumps({"event": "start", "sampleRateHz": RATE_HZ}))
        task = asyncio.get_running_loop().create_task(session.run(page.frames()))
        mic = asyncio.get_running_loop().create_task(page.microphone())
        while not any(m["event"] == "mark" for m in page.messages()):
            await clock.sleep(0.02)  # the greeting was sent
        await clock.sleep(0.5)
        page.speech_blocks = 50  # one second of speech
        record = await asyncio.wait_for(task, 600)
        mic.cancel()
        return record, page, store, session.call_id

    record, page, store, call_id = run_virtual(main())
    messages = page.messages()
    assert messages[0] == {"event": "started", "callRef": "web_1", "sampleRateHz": RATE_HZ}
    transcript = [(m["role"], m["text"]) for m in messages if m["event"] == "transcript"]
    assert transcript == [
        ("agent", "Hello, how can I help?"),
        ("caller", "book a cleaning"),
        ("agent", "You said book a cleaning. Goodbye."),
    ]
    # The caller's words reach the page while the agent still thinks, not with
    # its answer (the driver flushes what the transport queued within a tick).
    caller_at = page.received.index(
        json.dumps({"event": "transcript", "role": "caller", "text": "book a cleaning"})
    )
    answer_at = page.received.index(
        json.dumps(
            {"event": "transcript", "role": "agent", "text": "You said book a cleaning. Goodbye."}
        )
    )
    assert page.received_at[answer_at] - page.received_at[caller_at] >= THINK_S - TICK_S
    audio = b"".join(f for f in page.received if isinstance(f, bytes))
    assert len(audio) // 2 >= 2 * 3200  # two 0.2 s replies at 16 kHz
    assert record.outcome == "completed" and record.data["transport"] == "browser"
    marks = [e for e in store.events(call_id) if e.kind == EventKind.MARK_PLAYED]
    assert [m.data["mark"] for m in marks][:1] == ["r1.s0"]
    store.close()
