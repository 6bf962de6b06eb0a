"""Deepgram live streaming speech-to-text over WebSocket.

Protocol (https://developers.deepgram.com/reference/speech-to-text-api/listen-streaming,
read 2026-11): connect to ``wss://api.deepgram.com/v1/listen`` with query
parameters (``model``, ``encoding=linear16``, ``sample_rate``, ``channels``,
``interim_results``) and ``Authorization: Token <key>``; send audio as binary
frames; send ``{"type": "CloseStream"}`` to finish. The server sends ``Results``
messages (``channel.alternatives[0].transcript`` and ``confidence``,
``is_final``, ``start``, ``duration``) and a ``Metadata`` message
(``request_id``, ``model_info``/``model_uuid``) before closing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any
from urllib.parse import urlencode

from voicerail.errors import ProviderError
from voicerail.providers._ws import open_socket
from voicerail.providers.base import STTCapabilities, Transcript, Usage


class DeepgramSTT:
    """Streaming :class:`~voicerail.providers.base.SpeechToText` on Deepgram.

    Args:
        model: Deepgram model (``nova-3``).
        api_key: sent as ``Authorization: Token``.
        base_url: ``wss://api.deepgram.com`` (a fake server in tests).
        name: provider name in events and routing.
    """

    capabilities = STTCapabilities(
        sample_rates_hz=(8000, 16000, 24000, 48000), streaming=True, partials=True
    )

    def __init__(
        self,
        model: str = "nova-3",
        *,
        api_key: str,
        base_url: str = "wss://api.deepgram.com",
        name: str = "deepgram",
    ) -> None:
        self.model, self.name = model, name
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        if sample_rate_hz not in self.capabilities.sample_rates_hz:
            raise ValueError(f"{self.name}: {sample_rate_hz} Hz is not supported")
        query = urlencode(
            {
                "model": self.model,
                "encoding": "linear16",
                "sample_rate": sample_rate_hz,
                "channels": 1,
                "interim_results": "true",
                "language": language,
            }
        )
        headers = {"Authorization": f"Token {self._api_key}"}
        finals: list[Transcript] = []
        version: str | None = None
        num_bytes = 0
        async with open_socket(f"{self._base_url}/v1/listen?{query}", self.name, headers) as ws:

            async def send() -> None:
                nonlocal num_bytes
                async for chunk in audio:
                    num_bytes += len(chunk)
                    await ws.send(chunk)
                await ws.send(json.dumps({"type": "CloseStream"}))

            sender = asyncio.create_task(send())
            try:
                async for raw in ws:
                    message = json.loads(raw)
                    if message.get("type") == "Metadata":
                        info = message.get("model_info") or {}
                        first: dict[str, Any] = (
                            next(iter(info.values()), {}) if isinstance(info, dict) else {}
                        )
                        version = first.get("version") or message.get("model_uuid")
                    elif message.get("type") == "Results":
                        alt = message["channel"]["alternatives"][0]
                        start = float(message.get("start", 0.0))
                        transcript = Transcript(
                            alt.get("transcript", ""),
                            is_final=bool(message.get("is_final")),
                            confidence=alt.get("confidence"),
                            start_s=start,
                            end_s=start + float(message.get("duration", 0.0)),
                        )
                        if transcript.is_final:
                            finals.append(transcript)
                        else:
                            yield transcript
                    elif message.get("type") == "Error" or "err_code" in message:
                        raise ProviderError(
                            f"stream error: {message.get('description') or message}",
                            provider=self.name,
                        )
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sender
        if ws.close_code not in (None, 1000):
            raise ProviderError(f"closed with code {ws.close_code}", provider=self.name)
        words = [t.text for t in finals if t.text]
        confidences = [t.confidence for t in finals if t.confidence is not None]
        yield Transcript(
            " ".join(words),
            is_final=True,
            confidence=sum(confidences) / len(confidences) if confidences else None,
            start_s=finals[0].start_s if finals else 0.0,
            end_s=finals[-1].end_s if finals else 0.0,
            usage=Usage(self.name, self.model, version, audio_s=num_bytes / 2 / sample_rate_hz),
        )
