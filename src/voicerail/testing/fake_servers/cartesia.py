"""A fake Cartesia ``/tts/websocket`` text-to-speech server on a real socket.

It reproduces the documented protocol (see :mod:`voicerail.providers.cartesia`
for the references): the API version (``Cartesia-Version`` header or
``cartesia_version`` query) and the credential (``Authorization: Bearer``,
``X-API-Key``, or the ``api_key``/``access_token`` query) checked at the
handshake; generation requests validated field by field; ``chunk`` replies with
base64 raw ``pcm_s16le`` audio, then ``done``, each with the request's
``context_id``; ``error`` replies with ``status_code`` and the reason in
``error`` (versions before 2026-03-01) or ``title``/``message``/``error_code``;
``cancel`` messages recorded. The socket stays open for more contexts.

The audio is a sine tone, ``seconds_per_char`` long per character, sent in
chunks of ``chunk_s`` seconds. Failure modes besides the shared ones:
``error_status`` answers every generation with an ``error`` reply of that status.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

from voicerail.testing.fake_servers._common import (
    FakeWebSocketServer,
    RecordedConnection,
    Session,
    check_credential,
    run_websocket_fake,
    tone_pcm,
)

SAMPLE_RATES_HZ = (8000, 16000, 22050, 24000, 44100, 48000)
_NEW_ERROR_SHAPE_VERSION = "2026-03-01"  # replies carry title/message/error_code from here on


@dataclass
class FakeCartesia(FakeWebSocketServer):
    """A scripted Cartesia; see the module docstring.

    Attributes:
        seconds_per_char: audio length per character of the transcript.
        chunk_s: audio per ``chunk`` reply.
        chunk_delay_s: pause before each ``chunk`` reply.
        error_status: answer every generation with an ``error`` reply of this status.
        cancelled: context ids the client cancelled.
    """

    seconds_per_char: float = 0.05
    chunk_s: float = 0.25
    chunk_delay_s: float = 0.0
    error_status: int | None = None
    cancelled: list[str] = field(default_factory=list)

    def check_handshake(self, record: RecordedConnection) -> tuple[int, str] | None:
        if record.path != "/tts/websocket":
            return 404, f"unknown path {record.path}"
        scheme, _, bearer = record.headers.get("authorization", "").partition(" ")
        key = (
            (bearer if scheme.lower() == "bearer" else None)
            or record.headers.get("x-api-key")
            or record.query.get("api_key")
            or record.query.get("access_token")
        )
        refusal = check_credential(key, self.api_key)
        if refusal is not None:
            return refusal
        if not _version(record):
            return 400, "a Cartesia-Version header or cartesia_version query is required"
        return None

    def reject_response(self, status: int, detail: str) -> tuple[dict[str, str], bytes]:
        body = {"title": "Request refused", "message": detail, "error_code": f"http_{status}"}
        return {"Content-Type": "application/json"}, json.dumps(body).encode()

    async def serve_connection(self, session: Session) -> None:
        while (raw := await session.receive()) is not None:
            request: Any = None
            with contextlib.suppress(ValueError):
                request = json.loads(raw)
            if not isinstance(request, dict):
                continue
            context_id = str(request.get("context_id") or "")
            if request.get("cancel"):
                self.cancelled.append(context_id)
                continue
            problem = _invalid(request)
            if problem is not None or self.error_status is not None:
                status = 400 if problem is not None else self.error_status or 500
                await session.send_json(
                    _error(session.record, context_id, status, problem or "fake failure")
                )
                continue
            await self._generate(session, request, context_id)

    async def _generate(self, session: Session, request: dict[str, Any], context_id: str) -> None:
        rate_hz = int(request["output_format"]["sample_rate"])
        pcm = tone_pcm(len(str(request["transcript"])) * self.seconds_per_char, rate_hz)
        chunk_num_bytes = max(2, round(self.chunk_s * rate_hz) * 2)
        for offset in range(0, len(pcm), chunk_num_bytes):
            await asyncio.sleep(self.chunk_delay_s)
            await session.send_json(
                {
                    "type": "chunk",
                    "data": base64.b64encode(pcm[offset : offset + chunk_num_bytes]).decode(),
                    "done": False,
                    "status_code": 206,
                    "step_time": 12.5,
                    "context_id": context_id,
                }
            )
        await session.send_json(
            {"type": "done", "done": True, "status_code": 206, "context_id": context_id}
        )


def _version(record: RecordedConnection) -> str:
    return record.query.get("cartesia_version") or record.headers.get("cartesia-version", "")


def _invalid(request: dict[str, Any]) -> str | None:
    """Why a generation request is invalid, or None."""
    for name in ("model_id", "transcript", "voice", "output_format", "context_id"):
        if not request.get(name):
            return f"missing field {name}"
    voice = request["voice"]
    if not isinstance(voice, dict) or voice.get("mode") != "id" or not voice.get("id"):
        return "voice must be {mode: id, id: <voice id>}"
    output = request["output_format"]
    if not isinstance(output, dict) or output.get("container") != "raw":
        return "the fake produces container raw only"
    if output.get("encoding") != "pcm_s16le":
        return "the fake produces encoding pcm_s16le only"
    if output.get("sample_rate") not in SAMPLE_RATES_HZ:
        return f"sample_rate must be one of {SAMPLE_RATES_HZ}"
    return None


def _error(record: RecordedConnection, context_id: str, status: int, detail: str) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": "error", "done": True, "status_code": status}
    if _version(record) >= _NEW_ERROR_SHAPE_VERSION:
        reply |= {"title": "Generation failed", "message": detail, "error_code": f"http_{status}"}
    else:
        reply["error"] = detail
    return reply | {"context_id": context_id}


def run_fake_cartesia(fake: FakeCartesia) -> contextlib.AbstractAsyncContextManager[str]:
    """Serve ``fake`` on 127.0.0.1; yields the base URL (``ws://127.0.0.1:<port>``)."""
    return run_websocket_fake(fake)
