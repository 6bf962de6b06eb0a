"""Cartesia streaming text-to-speech over WebSocket.

Protocol (https://docs.cartesia.ai/api-reference/tts/websocket, read 2026-11):
connect to ``/tts/websocket?api_key=…&cartesia_version=…``; send a generation
request ``{"model_id", "transcript", "voice": {"mode": "id", "id"},
"output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate"},
"context_id", "continue": false}``; receive ``{"type": "chunk", "data":
base64}`` messages, then ``{"type": "done"}``, or ``{"type": "error",
"error": …}``, each with the request's ``context_id``.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlencode

from voicerail.errors import ProviderError
from voicerail.providers._ws import open_socket
from voicerail.providers.base import TTSCapabilities, TTSChunk, Usage


class CartesiaTTS:
    """Streaming :class:`~voicerail.providers.base.TextToSpeech` on Cartesia.

    Args:
        voice_id: the Cartesia voice.
        model: ``sonic-2`` by default.
        api_key: sent as the ``api_key`` query parameter.
        base_url: ``wss://api.cartesia.ai`` (a fake server in tests).
        sample_rate_hz: raw PCM rate requested.
        version: the ``cartesia_version`` API version.
        name: provider name in events and routing.
    """

    def __init__(
        self,
        voice_id: str,
        *,
        model: str = "sonic-2",
        api_key: str,
        base_url: str = "wss://api.cartesia.ai",
        sample_rate_hz: int = 16000,
        version: str = "2024-11-13",
        name: str = "cartesia",
    ) -> None:
        self.voice_id, self.model, self.name = voice_id, model, name
        self.capabilities = TTSCapabilities(sample_rate_hz=sample_rate_hz, voices=(voice_id,))
        self._api_key, self._version = api_key, version
        self._base_url = base_url.rstrip("/")

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        rate = self.capabilities.sample_rate_hz
        query = urlencode({"api_key": self._api_key, "cartesia_version": self._version})
        context_id = uuid.uuid4().hex
        num_bytes = 0
        async with open_socket(f"{self._base_url}/tts/websocket?{query}", self.name) as ws:
            await ws.send(
                json.dumps(
                    {
                        "model_id": self.model,
                        "transcript": text,
                        "voice": {"mode": "id", "id": self.voice_id},
                        "output_format": {
                            "container": "raw",
                            "encoding": "pcm_s16le",
                            "sample_rate": rate,
                        },
                        "context_id": context_id,
                        "continue": False,
                    }
                )
            )
            async for raw in ws:
                message = json.loads(raw)
                if message.get("context_id") not in (None, context_id):
                    continue
                kind = message.get("type")
                if kind == "error":
                    raise ProviderError(f"stream error: {message.get('error')}", provider=self.name)
                if kind == "chunk":
                    pcm = base64.b64decode(message["data"])
                    num_bytes += len(pcm)
                    yield TTSChunk(pcm, rate)
                if kind == "done" or message.get("done"):
                    break
            else:
                raise ProviderError("stream ended before 'done'", provider=self.name)
        usage = Usage(self.name, self.model, audio_s=num_bytes / 2 / rate, characters=len(text))
        yield TTSChunk(b"", rate, text, usage)
