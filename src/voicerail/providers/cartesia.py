"""Cartesia streaming text-to-speech over WebSocket.

Wire protocol (https://docs.cartesia.ai/api-reference/tts/websocket and
https://docs.cartesia.ai/use-the-api/api-conventions, read 2026-11):

* Connect to ``wss://api.cartesia.ai/tts/websocket``. Server-side clients send
  ``Authorization: Bearer <api key>`` and ``Cartesia-Version: <YYYY-MM-DD>``
  headers (browsers, which cannot set headers, use ``access_token`` and
  ``cartesia_version`` query parameters instead; older versions took
  ``api_key`` in the query). Versions documented: 2024-06-10, 2024-11-13,
  2025-04-16, 2026-03-01.
* One text frame per generation: ``{"model_id", "transcript", "voice": {"mode":
  "id", "id"}, "language", "context_id", "output_format": {"container": "raw",
  "encoding": "pcm_s16le", "sample_rate"}, "continue": false}``. One socket can
  carry many contexts; every reply names its ``context_id``.
* Replies: ``{"type": "chunk", "data": <base64 audio>, "done": false, ...}``,
  optional ``timestamps`` and ``flush_done``, then ``{"type": "done", "done":
  true}``; or ``{"type": "error", "done": true, "status_code", ...}`` with the
  reason in ``error`` (2024 versions) or ``title``/``message``/``error_code``
  (2026 versions).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

from voicerail.errors import ErrorClass, ProviderError, classify_http_status
from voicerail.providers._cloud import SampleAligner
from voicerail.providers._ws import open_socket, receive_json
from voicerail.providers.base import TTSCapabilities, TTSChunk, Usage

CARTESIA_VERSION = "2025-04-16"
SAMPLE_RATES_HZ = (8000, 16000, 22050, 24000, 44100, 48000)


def error_from_message(message: dict[str, Any], provider: str) -> ProviderError:
    """The :class:`ProviderError` for a ``type: error`` reply, classified by ``status_code``."""
    status = message.get("status_code")
    status = status if isinstance(status, int) and 400 <= status <= 599 else None
    parts = [message.get("error_code"), message.get("title"), message.get("message")]
    detail = ": ".join(str(p) for p in parts if p) or str(message.get("error") or "unknown")
    return ProviderError(
        f"error reply: {detail[:200]}",
        provider=provider,
        status=status,
        error_class=classify_http_status(status) if status is not None else ErrorClass.TRANSIENT,
    )


class CartesiaTTS:
    """Streaming :class:`~voicerail.providers.base.TextToSpeech` on Cartesia Sonic.

    One WebSocket and one context per request.

    Args:
        voice_id: the Cartesia voice.
        model: ``sonic-2`` by default.
        api_key: sent as ``Authorization: Bearer``.
        base_url: ``wss://api.cartesia.ai``, or a fake server's ``ws://`` URL.
        sample_rate_hz: raw PCM rate requested; one of :data:`SAMPLE_RATES_HZ`.
        language: language code of the text.
        version: the ``Cartesia-Version`` sent.
        name: provider name in events and routing.
        timeout_s: longest wait for each reply, first audio included, seconds.
        open_timeout_s: longest wait for the connection, seconds.

    Raises:
        ValueError: ``sample_rate_hz`` is not one Cartesia produces.
    """

    def __init__(
        self,
        voice_id: str,
        *,
        model: str = "sonic-2",
        api_key: str,
        base_url: str = "wss://api.cartesia.ai",
        sample_rate_hz: int = 16000,
        language: str = "en",
        version: str = CARTESIA_VERSION,
        name: str = "cartesia",
        timeout_s: float = 5.0,
        open_timeout_s: float = 5.0,
    ) -> None:
        if sample_rate_hz not in SAMPLE_RATES_HZ:
            raise ValueError(
                f"sample_rate_hz must be one of {SAMPLE_RATES_HZ}, got {sample_rate_hz}"
            )
        self.voice_id, self.model, self.name = voice_id, model, name
        self.capabilities = TTSCapabilities(
            sample_rate_hz=sample_rate_hz, streaming=True, voices=(voice_id,)
        )
        self.language, self.version = language, version
        self.timeout_s, self.open_timeout_s = timeout_s, open_timeout_s
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")

    def request(self, text: str, context_id: str) -> dict[str, Any]:
        """The generation request sent for ``text``."""
        return {
            "model_id": self.model,
            "transcript": text,
            "voice": {"mode": "id", "id": self.voice_id},
            "language": self.language,
            "context_id": context_id,
            "output_format": {
                "container": "raw",
                "encoding": "pcm_s16le",
                "sample_rate": self.capabilities.sample_rate_hz,
            },
            "continue": False,
        }

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        """Synthesize ``text``; see :meth:`TextToSpeech.synthesize`.

        Yields:
            s16le mono PCM chunks at ``capabilities.sample_rate_hz``, then an empty
            chunk carrying ``text`` and ``usage``.

        Raises:
            ProviderError: handshake refused (HTTP status); an ``error`` reply
                (classified by its ``status_code``); connection closed before
                ``done`` or without audio (transient).
            ProviderTimeout: no connection within ``open_timeout_s`` or no reply
                for ``timeout_s``.
        """
        rate_hz = self.capabilities.sample_rate_hz
        context_id = str(uuid.uuid4())
        aligner = SampleAligner()
        headers = {"Authorization": f"Bearer {self._api_key}", "Cartesia-Version": self.version}
        async with open_socket(
            f"{self._base_url}/tts/websocket",
            provider=self.name,
            headers=headers,
            open_timeout_s=self.open_timeout_s,
        ) as socket:
            await socket.send(json.dumps(self.request(text, context_id)))
            while True:
                reply = await receive_json(socket, provider=self.name, timeout_s=self.timeout_s)
                if reply is None:
                    raise ProviderError("connection closed before 'done'", provider=self.name)
                if reply.get("context_id") not in (None, context_id):
                    continue  # another context's reply; none is expected on this socket
                kind = reply.get("type")
                if kind == "error":
                    raise error_from_message(reply, self.name)
                if kind == "chunk":
                    pcm = aligner.receive(self._audio(reply))
                    if pcm:
                        yield TTSChunk(pcm, rate_hz)
                if kind == "done" or reply.get("done") is True:
                    break
        if aligner.num_bytes == 0:
            raise ProviderError("stream ended without audio", provider=self.name)
        usage = Usage(
            self.name, self.model, audio_s=aligner.num_bytes / 2 / rate_hz, characters=len(text)
        )
        yield TTSChunk(b"", rate_hz, text, usage)

    def _audio(self, reply: dict[str, Any]) -> bytes:
        encoded = reply.get("data")
        if not encoded:
            return b""
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, TypeError):
            raise ProviderError(
                f"audio is not base64 ({len(str(encoded))} characters)", provider=self.name
            ) from None
