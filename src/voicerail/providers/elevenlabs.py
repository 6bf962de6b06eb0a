"""ElevenLabs streaming text-to-speech over the WebSocket ``stream-input`` API.

Protocol (https://elevenlabs.io/docs/api-reference/text-to-speech/v-1-text-to-speech-voice-id-stream-input,
read 2026-11): connect to ``/v1/text-to-speech/{voice_id}/stream-input`` with
``model_id`` and ``output_format`` query parameters; the first message carries
``text: " "``, ``voice_settings`` and ``xi_api_key``; then text messages (here
one sentence with ``flush: true``); then ``{"text": ""}`` to end. The server
answers JSON messages with base64 ``audio`` (raw PCM for ``pcm_*`` formats) and
``alignment``, and ``isFinal: true`` at the end; errors carry ``error`` or
``message``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from urllib.parse import urlencode

from voicerail.errors import ErrorClass, ProviderError
from voicerail.providers._ws import open_socket
from voicerail.providers.base import TTSCapabilities, TTSChunk, Usage


class ElevenLabsTTS:
    """Streaming :class:`~voicerail.providers.base.TextToSpeech` on ElevenLabs.

    Args:
        voice_id: the ElevenLabs voice.
        model: ``eleven_flash_v2_5`` by default.
        api_key: sent as ``xi_api_key`` in the first message.
        base_url: ``wss://api.elevenlabs.io`` (a fake server in tests).
        sample_rate_hz: PCM rate requested as ``output_format=pcm_<rate>``.
        name: provider name in events and routing.
    """

    def __init__(
        self,
        voice_id: str,
        *,
        model: str = "eleven_flash_v2_5",
        api_key: str,
        base_url: str = "wss://api.elevenlabs.io",
        sample_rate_hz: int = 16000,
        name: str = "elevenlabs",
    ) -> None:
        self.voice_id, self.model, self.name = voice_id, model, name
        self.capabilities = TTSCapabilities(sample_rate_hz=sample_rate_hz, voices=(voice_id,))
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        rate = self.capabilities.sample_rate_hz
        query = urlencode({"model_id": self.model, "output_format": f"pcm_{rate}"})
        url = f"{self._base_url}/v1/text-to-speech/{self.voice_id}/stream-input?{query}"
        num_bytes = 0
        async with open_socket(url, self.name) as ws:
            await ws.send(
                json.dumps(
                    {
                        "text": " ",
                        "voice_settings": {"stability": 0.5, "similarity_boost": 0.8},
                        "xi_api_key": self._api_key,
                    }
                )
            )
            await ws.send(json.dumps({"text": text + " ", "flush": True}))
            await ws.send(json.dumps({"text": ""}))
            async for raw in ws:
                message = json.loads(raw)
                if message.get("error") or (message.get("message") and "audio" not in message):
                    detail = message.get("message") or message.get("error")
                    permanent = "auth" in str(message.get("error", "")).lower()
                    raise ProviderError(
                        f"stream error: {detail}",
                        provider=self.name,
                        error_class=ErrorClass.PERMANENT if permanent else ErrorClass.TRANSIENT,
                    )
                if message.get("audio"):
                    pcm = base64.b64decode(message["audio"])
                    num_bytes += len(pcm)
                    yield TTSChunk(pcm, rate)
                if message.get("isFinal"):
                    break
        if num_bytes == 0:
            raise ProviderError("stream ended without audio", provider=self.name)
        usage = Usage(self.name, self.model, audio_s=num_bytes / 2 / rate, characters=len(text))
        yield TTSChunk(b"", rate, text, usage)
