"""OpenAI text-to-speech over HTTP, streamed.

Protocol (https://platform.openai.com/docs/api-reference/audio/createSpeech,
read 2026-11): ``POST {base_url}/audio/speech`` with ``model``, ``input``,
``voice`` and ``response_format: "pcm"``, which streams raw 24 kHz signed
16-bit little-endian mono PCM. Errors are HTTP statuses with
``{"error": {"message"}}`` bodies.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx

from voicerail.errors import ProviderError, ProviderTimeout, classify_http_status
from voicerail.providers.base import TTSCapabilities, TTSChunk, Usage

OPENAI_PCM_RATE_HZ = 24000


class OpenAITTS:
    """Streaming :class:`~voicerail.providers.base.TextToSpeech` on OpenAI's speech API.

    Args:
        model: ``gpt-4o-mini-tts`` by default.
        voice: voice name.
        base_url: API root including ``/v1``.
        api_key: sent as ``Authorization: Bearer``.
        name: provider name in events and routing.
        http_client: an ``httpx.AsyncClient`` to use.
    """

    def __init__(
        self,
        model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        name: str = "openai-tts",
        timeout_s: float = 30.0,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.model, self.voice, self.name = model, voice, name
        self.capabilities = TTSCapabilities(sample_rate_hz=OPENAI_PCM_RATE_HZ, voices=(voice,))
        self._url = base_url.rstrip("/") + "/audio/speech"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_client = http_client is None
        self._client = http_client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s))

    async def aclose(self) -> None:
        """Close the HTTP connection pool (when this object created it)."""
        if self._owns_client:
            await self._client.aclose()

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        body = {"model": self.model, "input": text, "voice": self.voice, "response_format": "pcm"}
        num_bytes = 0
        carry = b""
        try:
            async with self._client.stream(
                "POST", self._url, json=body, headers=self._headers
            ) as response:
                if response.status_code != 200:
                    raw = (await response.aread()).decode(errors="replace")
                    try:
                        detail = json.loads(raw)["error"]["message"]
                    except (ValueError, KeyError, TypeError):
                        detail = raw[:200]
                    raise ProviderError(
                        f"http {response.status_code}: {detail}",
                        provider=self.name,
                        status=response.status_code,
                        error_class=classify_http_status(response.status_code),
                    )
                async for data in response.aiter_bytes():
                    data = carry + data
                    even = len(data) - len(data) % 2  # never split a sample
                    carry = data[even:]
                    if even:
                        num_bytes += even
                        yield TTSChunk(data[:even], OPENAI_PCM_RATE_HZ)
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"timed out: {exc!r}", provider=self.name, deadline_s=0) from exc
        except httpx.HTTPError as exc:
            raise ProviderError(f"connection failed: {exc!r}", provider=self.name) from exc
        if num_bytes == 0:
            raise ProviderError("response had no audio", provider=self.name)
        usage = Usage(
            self.name,
            self.model,
            audio_s=num_bytes / 2 / OPENAI_PCM_RATE_HZ,
            characters=len(text),
        )
        yield TTSChunk(b"", OPENAI_PCM_RATE_HZ, text, usage)
