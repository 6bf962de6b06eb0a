"""A fake ElevenLabs ``stream-input`` text-to-speech server on a real socket.

It reproduces the documented protocol (see :mod:`voicerail.providers.elevenlabs`
for the references): the ``xi-api-key`` check at the handshake (or
``xi_api_key`` in the first message), refusals with a ``{"detail": {"status",
"message"}}`` body, the first ``{"text": " "}`` message, text buffered until
``flush`` (or ``try_trigger_generation``) or the end-of-input ``{"text": ""}``,
audio frames with base64 ``audio`` and ``alignment``/``normalizedAlignment``
character timing, a last ``{"isFinal": true}`` frame and a close with 1000.

The audio is a sine tone, ``seconds_per_char`` long per character, s16le at the
``pcm_<rate>`` of ``output_format`` (the fake produces no other format), sent in
frames of ``chunk_s`` seconds.

Failure modes besides the shared ones: ``error`` sends an error frame (``error``
code, ``message`` and ``code``) after the first message and closes with
``error_close_code``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from voicerail.testing.fake_servers._common import (
    FakeWebSocketServer,
    RecordedConnection,
    Session,
    StopScript,
    check_credential,
    close_abruptly,
    run_websocket_fake,
    tone_pcm,
)

_PATH = re.compile(r"^/v1/text-to-speech/([^/]+)/stream-input$")
_STATUS_NAMES = {
    401: "invalid_api_key",
    404: "voice_not_found",
    429: "too_many_concurrent_requests",
}


@dataclass
class FakeElevenLabs(FakeWebSocketServer):
    """A scripted ElevenLabs; see the module docstring.

    Attributes:
        seconds_per_char: audio length per character of text.
        chunk_s: audio per frame.
        chunk_delay_s: pause before each audio frame.
        error: an ElevenLabs error code (``quota_exceeded``,
            ``input_timeout_exceeded``, …) to fail every request with.
        error_close_code: the close code sent after ``error``.
    """

    seconds_per_char: float = 0.05
    chunk_s: float = 0.25
    chunk_delay_s: float = 0.0
    error: str | None = None
    error_close_code: int = 1008

    def check_handshake(self, record: RecordedConnection) -> tuple[int, str] | None:
        if not _PATH.match(record.path):
            return 404, f"unknown path {record.path}"
        key = record.headers.get("xi-api-key")
        if key is not None and (refusal := check_credential(key, self.api_key)):
            return refusal
        fmt = record.query.get("output_format", "mp3_44100_128")
        kind, _, rate = fmt.partition("_")
        if kind != "pcm" or not rate.isdigit():
            return 400, f"the fake produces pcm_<rate> only, not {fmt}"
        return None

    def reject_response(self, status: int, detail: str) -> tuple[dict[str, str], bytes]:
        body = {"detail": {"status": _STATUS_NAMES.get(status, "error"), "message": detail}}
        return {"Content-Type": "application/json"}, json.dumps(body).encode()

    async def serve_connection(self, session: Session) -> None:
        sample_rate_hz = int(session.record.query["output_format"].partition("_")[2])
        pending = ""
        first = True
        while (raw := await session.receive()) is not None:
            message = _decode(raw)
            if first:
                first = False
                await self._open(session, message)
                continue
            text = message.get("text")
            if text == "":
                await self._speak(session, pending, sample_rate_hz)
                await session.send_json({"isFinal": True})
                await session.socket.close()
                return
            pending += str(text or "")
            if message.get("flush") or message.get("try_trigger_generation"):
                await self._speak(session, pending, sample_rate_hz)
                pending = ""

    async def _open(self, session: Session, message: dict[str, Any]) -> None:
        key = session.record.headers.get("xi-api-key") or message.get("xi_api_key")
        if check_credential(key, self.api_key) is not None:
            await self._fail(session, "invalid_api_key", "the api key is missing or invalid")
        if message.get("text") != " ":
            await self._fail(session, "invalid_request", "the first message must have text ' '")
        if self.error is not None:
            await self._fail(session, self.error, "fake failure")

    async def _fail(self, session: Session, error: str, detail: str) -> None:
        await session.socket.send(
            json.dumps({"message": detail, "error": error, "code": self.error_close_code})
        )
        await close_abruptly(session.socket, self.error_close_code, error)
        raise StopScript

    async def _speak(self, session: Session, text: str, sample_rate_hz: int) -> None:
        text = text.strip()
        if not text:
            return
        pcm = tone_pcm(len(text) * self.seconds_per_char, sample_rate_hz)
        chunk_num_bytes = max(2, round(self.chunk_s * sample_rate_hz) * 2)
        char_ms = self.seconds_per_char * 1000
        for offset in range(0, len(pcm), chunk_num_bytes):
            await asyncio.sleep(self.chunk_delay_s)
            start_ms = offset / 2 / sample_rate_hz * 1000
            end_ms = (offset + chunk_num_bytes) / 2 / sample_rate_hz * 1000
            chars = [(i, c) for i, c in enumerate(text) if start_ms <= i * char_ms < end_ms]
            alignment = {
                "chars": [c for _, c in chars],
                "charStartTimesMs": [round(i * char_ms) for i, _ in chars],
                "charsDurationsMs": [round(char_ms)] * len(chars),
            }
            await session.send_json(
                {
                    "audio": base64.b64encode(pcm[offset : offset + chunk_num_bytes]).decode(),
                    "isFinal": None,
                    "normalizedAlignment": alignment,
                    "alignment": alignment,
                }
            )


def _decode(raw: str | bytes) -> dict[str, Any]:
    with contextlib.suppress(ValueError):
        message = json.loads(raw)
        if isinstance(message, dict):
            return message
    return {}


def run_fake_elevenlabs(fake: FakeElevenLabs) -> contextlib.AbstractAsyncContextManager[str]:
    """Serve ``fake`` on 127.0.0.1; yields the base URL (``ws://127.0.0.1:<port>``)."""
    return run_websocket_fake(fake)
