"""A fake Deepgram live transcription server (``/v1/listen``) on a real socket.

It reproduces the documented protocol (see :mod:`voicerail.providers.deepgram`
for the references): the ``Authorization: Token`` check and query validation at
the handshake, refusals with ``dg-error``/``dg-request-id`` headers and an
``err_code``/``err_msg`` body, interim and final ``Results`` messages with the
documented fields, ``Finalize``/``KeepAlive``/``CloseStream`` control messages, a
``Metadata`` summary and a close with 1000.

What it hears: each binary frame that is not silent reveals one more word of
``transcript`` as an interim result; every ``words_per_final`` words become a
final segment; ``CloseStream`` finalizes the rest (all of ``transcript`` once any
speech was heard, an empty final segment when only silence was). Timing fields
count the audio received at the query's ``sample_rate``.

Usage::

    fake = FakeDeepgram(transcript="book me for tuesday", api_key="dg-key")
    async with run_fake_deepgram(fake) as url:
        stt = DeepgramSTT(api_key="dg-key", base_url=url)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from voicerail.testing.fake_servers._common import (
    FakeWebSocketServer,
    RecordedConnection,
    Session,
    check_credential,
    is_silent,
    run_websocket_fake,
)

_ERROR_CODES = {
    400: "Bad Request",
    401: "INVALID_AUTH",
    402: "ASR_PAYMENT_REQUIRED",
    429: "TOO_MANY_REQUESTS",
}


@dataclass
class FakeDeepgram(FakeWebSocketServer):
    """A scripted Deepgram; see the module docstring.

    Attributes:
        transcript: the words the fake hears in non-silent audio.
        words_per_final: words per final segment.
        confidence: reported for every segment.
        model_name: ``model_info.name`` reported.
        model_version: ``model_info.version`` reported.
        model_uuid: key of ``model_info`` in the ``Metadata`` summary.
        finalize_delay_s: wait after ``CloseStream`` before the last results (the
            provider's finalization latency, for benchmarks).
    """

    transcript: str = "book me for tuesday at three"
    words_per_final: int = 3
    confidence: float = 0.93
    model_name: str = "general-nova-3"
    model_version: str = "2025-01-15.12345"
    model_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    finalize_delay_s: float = 0.0

    def check_handshake(self, record: RecordedConnection) -> tuple[int, str] | None:
        if record.path != "/v1/listen":
            return 404, f"unknown path {record.path}"
        scheme, _, key = record.headers.get("authorization", "").partition(" ")
        refusal = check_credential(key if scheme.lower() == "token" else None, self.api_key)
        if refusal is not None:
            return refusal
        query = record.query
        if query.get("encoding") != "linear16":
            return 400, "the fake decodes encoding=linear16 only"
        if not query.get("sample_rate", "").isdigit():
            return 400, "sample_rate is required for raw audio"
        if query.get("channels", "1") != "1":
            return 400, "the fake transcribes channels=1 only"
        return None

    def reject_response(self, status: int, detail: str) -> tuple[dict[str, str], bytes]:
        request_id = str(uuid.uuid4())
        body = {"err_code": _ERROR_CODES.get(status, "INTERNAL_SERVER_ERROR"), "err_msg": detail}
        headers = {
            "Content-Type": "application/json",
            "dg-error": detail,
            "dg-request-id": request_id,
        }
        return headers, json.dumps({**body, "request_id": request_id}).encode()

    async def serve_connection(self, session: Session) -> None:
        stream = _Stream(self, session)
        while (message := await session.receive()) is not None:
            if isinstance(message, bytes):
                await stream.receive_audio(message)
                continue
            with contextlib.suppress(ValueError, AttributeError):
                kind = json.loads(message).get("type")
                if kind == "Finalize":
                    await stream.send_final(from_finalize=True)
                elif kind == "CloseStream":
                    await stream.close()
                    return


class _Stream:
    """One connection's transcription state."""

    def __init__(self, fake: FakeDeepgram, session: Session) -> None:
        self.fake, self.session = fake, session
        self.sample_rate_hz = int(session.record.query["sample_rate"])
        self.words = fake.transcript.split()
        self.request_id = str(uuid.uuid4())
        self.num_heard = 0  # words revealed so far
        self.num_final = 0  # words already in final segments
        self.audio_num_bytes = 0
        self.segment_start_s = 0.0

    @property
    def audio_s(self) -> float:
        return self.audio_num_bytes / 2 / self.sample_rate_hz

    async def receive_audio(self, pcm: bytes) -> None:
        self.audio_num_bytes += len(pcm)
        if is_silent(pcm) or self.num_heard >= len(self.words):
            return
        self.num_heard += 1
        if self.num_heard - self.num_final >= self.fake.words_per_final:
            await self.send_final()
        else:
            await self.session.send_json(self._results(is_final=False))

    async def send_final(self, *, from_finalize: bool = False, speech_final: bool = False) -> None:
        await self.session.send_json(
            self._results(is_final=True, speech_final=speech_final, from_finalize=from_finalize)
        )
        self.num_final = self.num_heard
        self.segment_start_s = self.audio_s

    async def close(self) -> None:
        await asyncio.sleep(self.fake.finalize_delay_s)
        if self.num_heard > 0:
            self.num_heard = len(self.words)  # it heard the whole utterance
        if self.num_heard > self.num_final or self.num_final == 0:
            await self.send_final(from_finalize=True, speech_final=True)
        await self.session.send_json(self._metadata())
        await self.session.socket.close()

    def _results(
        self, *, is_final: bool, speech_final: bool = False, from_finalize: bool = False
    ) -> dict[str, Any]:
        words = self.words[self.num_final : self.num_heard]
        duration_s = max(self.audio_s - self.segment_start_s, 0.0)
        step_s = duration_s / len(words) if words else 0.0
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": duration_s,
            "start": self.segment_start_s,
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {
                "alternatives": [
                    {
                        "transcript": " ".join(words),
                        "confidence": self.fake.confidence if words else 0.0,
                        "words": [
                            {
                                "word": word,
                                "start": self.segment_start_s + i * step_s,
                                "end": self.segment_start_s + (i + 1) * step_s,
                                "confidence": self.fake.confidence,
                                "punctuated_word": word,
                            }
                            for i, word in enumerate(words)
                        ],
                    }
                ]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_info": {
                    "name": self.fake.model_name,
                    "version": self.fake.model_version,
                    "arch": "nova-3",
                },
                "model_uuid": self.fake.model_uuid,
            },
        }

    def _metadata(self) -> dict[str, Any]:
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "0" * 64,
            "created": "2026-11-22T12:00:00.000Z",
            "duration": self.audio_s,
            "channels": 1,
            "models": [self.fake.model_uuid],
            "model_info": {
                self.fake.model_uuid: {
                    "name": self.fake.model_name,
                    "version": self.fake.model_version,
                    "arch": "nova-3",
                }
            },
        }


def run_fake_deepgram(fake: FakeDeepgram) -> contextlib.AbstractAsyncContextManager[str]:
    """Serve ``fake`` on 127.0.0.1; yields the base URL (``ws://127.0.0.1:<port>``)."""
    return run_websocket_fake(fake)
