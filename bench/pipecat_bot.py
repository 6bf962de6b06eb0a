"""A Pipecat bot for the side-by-side benchmark (``bench/vs_pipecat.py``).

Runs under the Pipecat virtualenv (``var/pipecat-venv``: ``pipecat-ai[websocket,silero]``
and uvicorn; Pipecat pins ``soxr~=1.0`` and ``protobuf<7``, so it is kept out of
voicerail's own environment). It imports nothing from voicerail.

One pipeline per Twilio media WebSocket, built from Pipecat's own parts:
``FastAPIWebsocketTransport`` with ``TwilioFrameSerializer`` (μ-law 8 kHz, 20 ms
output packets as Twilio sends them), ``VADProcessor`` with ``SileroVADAnalyzer``
(0.5 s stop, as voicerail's endpointing window), a ``SegmentedSTTService``, and a
``TTSService``. The STT, "LLM" and TTS are fakes with the same lognormal
latencies as voicerail's fake cloud providers, and the same behaviour as
voicerail's echo agent: greet with the AI and recording disclosure, echo what
the caller said, hang up after "goodbye". The STT knows the caller's words from
the ``sim_script`` custom parameter (one entry per VAD segment, in order).

Usage: ``var/pipecat-venv/bin/python bench/pipecat_bot.py --port 8766``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
from collections.abc import AsyncGenerator

import uvicorn
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import (
    EndFrame,
    Frame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import PipelineRunner
from pipecat.pipeline.task import PipelineParams, PipelineTask
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.serializers.twilio import TwilioFrameSerializer
from pipecat.services.stt_service import SegmentedSTTService
from pipecat.services.tts_service import TTSService
from pipecat.transports.websocket.fastapi import (
    FastAPIWebsocketParams,
    FastAPIWebsocketTransport,
)

GREETING = (
    "Hello, you're talking to an AI assistant, and this call may be recorded. How can I help?"
)
RATE_HZ = 8000


class Latency:
    """Lognormal latencies (medians in seconds), drawn from one seeded generator."""

    def __init__(self, stt_s: float, llm_s: float, tts_s: float, sigma: float, seed: int) -> None:
        self.medians = {"stt": stt_s, "llm": llm_s, "tts": tts_s}
        self.sigma = sigma
        self.rng = random.Random(seed)

    def draw(self, kind: str) -> float:
        median = self.medians[kind]
        if not self.sigma:
            return median
        return median * math.exp(self.rng.gauss(0.0, self.sigma))


def echo_reply(text: str) -> tuple[str, bool]:
    """The echo agent's reply (same rules as ``voicerail.sim.fakes.echo_reply``)."""
    lowered = text.lower()
    if "goodbye" in lowered or "bye" in lowered.split():
        return "Thank you for calling. Goodbye!", True
    if "person" in lowered or "human" in lowered:
        return "I'll transfer you to a colleague now.", True
    return f"You said: {text.strip().rstrip('.')}. What else can I do for you?", False


class ScriptedSTT(SegmentedSTTService):
    """Returns the caller's next scripted utterance for each VAD segment."""

    def __init__(self, script: list[str], latency: Latency, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._script = list(script)
        self._latency = latency
        self._index = 0

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        await asyncio.sleep(self._latency.draw("stt"))
        text = self._script[self._index] if self._index < len(self._script) else ""
        self._index += 1
        if text:
            yield TranscriptionFrame(text=text, user_id="caller", timestamp="")


class EchoLLM(FrameProcessor):
    """A fake LLM: waits its latency, then asks the TTS to speak the echo reply."""

    def __init__(self, latency: Latency) -> None:
        super().__init__()
        self._latency = latency

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            await asyncio.sleep(self._latency.draw("llm"))
            reply, end_call = echo_reply(frame.text)
            await self.push_frame(TTSSpeakFrame(reply))
            if end_call:
                await self.push_frame(EndFrame())
        else:
            await self.push_frame(frame, direction)


class ToneTTS(TTSService):
    """A fake TTS: after its first-byte latency, 0.3 s of quiet tone per word."""

    def __init__(self, latency: Latency, seconds_per_word: float, **kwargs: object) -> None:
        super().__init__(sample_rate=RATE_HZ, **kwargs)
        self._latency = latency
        self._seconds_per_word = seconds_per_word

    def can_generate_metrics(self) -> bool:
        return False

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        await asyncio.sleep(self._latency.draw("tts"))
        pcm = b"\x10\x00\xf0\xff" * int(RATE_HZ * self._seconds_per_word / 2)
        for index, _ in enumerate(text.split()):
            if index:
                await asyncio.sleep(0.01)
            yield TTSAudioRawFrame(
                audio=pcm, sample_rate=RATE_HZ, num_channels=1, context_id=context_id
            )


def create_app(args: argparse.Namespace) -> FastAPI:
    app = FastAPI()
    calls = {"active": 0, "seed": 0}

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"status": "ok", "calls_in_progress": calls["active"]}

    @app.websocket("/twilio/media")
    async def media(websocket: WebSocket) -> None:
        await websocket.accept()
        start = None
        for _ in range(2):  # "connected", then "start"
            message = json.loads(await websocket.receive_text())
            if message.get("event") == "start":
                start = message["start"]
        if start is None:
            await websocket.close(code=1008)
            return
        params = start.get("customParameters") or {}
        script = json.loads(params.get("sim_script", "[]"))
        calls["seed"] += 1
        latency = Latency(
            args.stt_latency, args.llm_latency, args.tts_latency, args.sigma, calls["seed"]
        )
        serializer = TwilioFrameSerializer(
            stream_sid=start["streamSid"],
            call_sid=start.get("callSid"),
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
        )
        transport = FastAPIWebsocketTransport(
            websocket,
            FastAPIWebsocketParams(
                audio_in_enabled=True,
                audio_out_enabled=True,
                add_wav_header=False,
                audio_out_10ms_chunks=2,  # 20 ms media messages, as Twilio sends
                serializer=serializer,
            ),
        )
        vad = VADProcessor(
            vad_analyzer=SileroVADAnalyzer(
                sample_rate=RATE_HZ, params=VADParams(stop_secs=args.endpoint_silence)
            )
        )
        pipeline = Pipeline(
            [
                transport.input(),
                vad,
                ScriptedSTT(script, latency, trailing_silence_secs=0.0),
                EchoLLM(latency),
                ToneTTS(latency, args.seconds_per_word),
                transport.output(),
            ]
        )
        task = PipelineTask(
            pipeline,
            params=PipelineParams(audio_in_sample_rate=RATE_HZ, audio_out_sample_rate=RATE_HZ),
        )

        @transport.event_handler("on_client_connected")
        async def greet(transport: object, client: object) -> None:
            await task.queue_frames([TTSSpeakFrame(GREETING)])

        @transport.event_handler("on_client_disconnected")
        async def gone(transport: object, client: object) -> None:
            await task.cancel()

        calls["active"] += 1
        try:
            await PipelineRunner(handle_sigint=False).run(task)
        finally:
            calls["active"] -= 1
            # The bot ended the call (EndFrame after "goodbye"): hang up, as Twilio
            # would on the end of the stream.
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close()

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description="Pipecat echo bot for vs_pipecat.py")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--stt-latency", type=float, default=0.12)
    parser.add_argument("--llm-latency", type=float, default=0.35)
    parser.add_argument("--tts-latency", type=float, default=0.15)
    parser.add_argument("--sigma", type=float, default=0.3)
    parser.add_argument("--seconds-per-word", type=float, default=0.3)
    parser.add_argument("--endpoint-silence", type=float, default=0.5)
    args = parser.parse_args()
    from loguru import logger

    logger.remove()  # Pipecat logs every frame at DEBUG; the benchmark needs quiet
    uvicorn.run(create_app(args), host="127.0.0.1", port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
