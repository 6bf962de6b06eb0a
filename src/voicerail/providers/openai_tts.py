"""OpenAI text-to-speech over HTTP, streamed.

Wire protocol (https://platform.openai.com/docs/api-reference/audio/createSpeech
and https://platform.openai.com/docs/guides/text-to-speech, read 2026-11):
``POST {base_url}/audio/speech`` with JSON ``model``, ``input``, ``voice``,
``response_format: "pcm"`` and optionally ``instructions`` and ``speed``;
``Authorization: Bearer <key>``. With ``pcm`` the body is raw signed 16-bit
little-endian mono samples at 24 kHz, without a header, sent in chunks as they
are generated. Errors are HTTP statuses with OpenAI's error envelope.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from voicerail.errors import ProviderError
from voicerail.providers._cloud import SampleAligner
from voicerail.providers._http import (
    bearer_headers,
    new_client,
    status_error,
    transport_error,
)
from voicerail.providers.base import TTSCapabilities, TTSChunk, Usage

OPENAI_PCM_RATE_HZ = 24000  # fixed by the API for response_format "pcm"


class OpenAITTS:
    """Streaming :class:`~voicerail.providers.base.TextToSpeech` on OpenAI's speech API.

    Args:
        model: ``gpt-4o-mini-tts`` by default (``tts-1`` and ``tts-1-hd`` also work).
        voice: voice name (``alloy``, ``ash``, ``coral``, …).
        base_url: API root including the version (``…/v1``).
        api_key: sent as ``Authorization: Bearer``.
        name: provider name in events and routing.
        instructions: how to speak (tone, pace); ``gpt-4o-mini-tts`` only.
        speed: 0.25 to 4.0; None leaves the provider's default (1.0).
        timeout_s: connect timeout and longest wait for each piece of audio, seconds.
        extra_headers: more request headers.
        http_client: an ``httpx.AsyncClient`` to use instead of an own one; it is
            not closed by :meth:`aclose`.
    """

    def __init__(
        self,
        model: str = "gpt-4o-mini-tts",
        voice: str = "alloy",
        *,
        base_url: str = "https://api.openai.com/v1",
        api_key: str | None = None,
        name: str = "openai-tts",
        instructions: str | None = None,
        speed: float | None = None,
        timeout_s: float = 30.0,
        extra_headers: dict[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.model, self.voice, self.name, self.timeout_s = model, voice, name, timeout_s
        self.capabilities = TTSCapabilities(
            sample_rate_hz=OPENAI_PCM_RATE_HZ, streaming=True, voices=(voice,)
        )
        self.instructions, self.speed = instructions, speed
        self._url = base_url.rstrip("/") + "/audio/speech"
        self._headers = bearer_headers(api_key, extra_headers)
        self._client = http_client
        self._owns_client = http_client is None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = new_client(self.timeout_s)
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP connection pool, when this object created it."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    def request_body(self, text: str) -> dict[str, Any]:
        """The JSON body :meth:`synthesize` sends."""
        body: dict[str, Any] = {
            "model": self.model,
            "input": text,
            "voice": self.voice,
            "response_format": "pcm",
        }
        if self.instructions:
            body["instructions"] = self.instructions
        if self.speed is not None:
            body["speed"] = self.speed
        return body

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        """Synthesize ``text``; see :meth:`TextToSpeech.synthesize`.

        Yields:
            s16le mono PCM chunks at 24 kHz as the body arrives (whole samples
            only), then an empty chunk carrying ``text`` and ``usage``.

        Raises:
            ProviderError: an HTTP error status (``status`` set); a body cut short
                or without audio (transient).
            ProviderTimeout: no connection, or no audio for ``timeout_s``.
        """
        aligner = SampleAligner()
        try:
            async with self._http().stream(
                "POST", self._url, json=self.request_body(text), headers=self._headers
            ) as response:
                if response.status_code != 200:
                    body = (await response.aread()).decode(errors="replace")
                    raise status_error(self.name, response.status_code, body)
                async for data in response.aiter_bytes():
                    pcm = aligner.receive(data)
                    if pcm:
                        yield TTSChunk(pcm, OPENAI_PCM_RATE_HZ)
        except httpx.HTTPError as exc:
            raise transport_error(self.name, exc, self.timeout_s) from exc
        if aligner.num_bytes == 0:
            raise ProviderError("response had no audio", provider=self.name)
        usage = Usage(
            self.name,
            self.model,
            audio_s=aligner.num_bytes / 2 / OPENAI_PCM_RATE_HZ,
            characters=len(text),
        )
        yield TTSChunk(b"", OPENAI_PCM_RATE_HZ, text, usage)
