"""ElevenLabs streaming text-to-speech over the WebSocket ``stream-input`` API.

Wire protocol (https://elevenlabs.io/docs/api-reference/text-to-speech/v-1-text-to-speech-voice-id-stream-input
and https://elevenlabs.io/docs/api-reference/websockets, read 2026-11):

* Connect to ``wss://api.elevenlabs.io/v1/text-to-speech/{voice_id}/stream-input``
  with query ``model_id`` and ``output_format`` (``pcm_16000`` is raw s16le mono
  at 16 kHz; ``pcm_8000`` to ``pcm_48000`` likewise). The key may be sent as the
  ``xi-api-key`` handshake header; a bad one is then refused with HTTP 401.
* First text frame: ``{"text": " ", "voice_settings": {...}, "xi_api_key": key}``
  opens the input stream. Then text frames, each ending with one space; ``"flush":
  true`` makes the server synthesize what it holds without waiting for more text
  (it replaces the deprecated ``try_trigger_generation``). ``{"text": ""}`` ends
  the input.
* The server answers JSON frames with base64 ``audio`` and its character timing
  (``alignment``, and ``normalizedAlignment`` for the normalized text), then one
  frame with ``"isFinal": true``, then closes. A failure is a frame with
  ``error`` (a code such as ``quota_exceeded``), ``message`` and a close ``code``,
  usually followed by that close.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

from voicerail.errors import ErrorClass, ProviderError
from voicerail.providers._cloud import SampleAligner
from voicerail.providers._ws import classify_close_code, open_socket, receive_json
from voicerail.providers.base import TTSCapabilities, TTSChunk, Usage

DEFAULT_VOICE_SETTINGS: dict[str, Any] = {"stability": 0.5, "similarity_boost": 0.75}

# ``error`` codes meaning the same request would fail again (ElevenLabs error
# messages guide): bad key, no credit, unknown voice or model, bad input.
_PERMANENT_ERRORS = frozenset(
    {
        "invalid_api_key",
        "auth_error",
        "unauthorized",
        "quota_exceeded",
        "voice_not_found",
        "model_not_found",
        "invalid_request",
        "max_character_limit_exceeded",
    }
)


def pcm_rate_hz(output_format: str) -> int:
    """The sample rate of a ``pcm_<rate>`` output format.

    Raises:
        ValueError: the format is not raw PCM (this adapter passes s16le only).
    """
    kind, _, rate = output_format.partition("_")
    if kind != "pcm" or not rate.isdigit():
        raise ValueError(f"output_format must be pcm_<rate>, got {output_format!r}")
    return int(rate)


def error_from_message(message: dict[str, Any], provider: str) -> ProviderError | None:
    """The :class:`ProviderError` a server frame reports, or None for a normal frame."""
    error = message.get("error")
    if not error:
        return None
    code = message.get("code")
    if str(error) in _PERMANENT_ERRORS:
        error_class = ErrorClass.PERMANENT
    elif isinstance(code, int) and code != 1008:
        error_class = classify_close_code(code)
    else:  # 1008 also ends idle or overloaded streams: input_timeout_exceeded, rate limits
        error_class = ErrorClass.TRANSIENT
    detail = str(message.get("message") or "")[:200]
    return ProviderError(
        f"error {error}" + (f": {detail}" if detail else ""),
        provider=provider,
        status=code if isinstance(code, int) else None,
        error_class=error_class,
    )


class ElevenLabsTTS:
    """Streaming :class:`~voicerail.providers.base.TextToSpeech` on ElevenLabs.

    One WebSocket per request: the whole text is sent at once with ``flush``.

    Args:
        voice_id: the ElevenLabs voice.
        model: ``eleven_flash_v2_5`` by default (the lowest latency).
        api_key: sent as the ``xi-api-key`` header and as ``xi_api_key`` in the
            first message.
        base_url: ``wss://api.elevenlabs.io``, or a fake server's ``ws://`` URL.
        output_format: ``pcm_<rate>``; the rate becomes ``capabilities.sample_rate_hz``.
        name: provider name in events and routing.
        voice_settings: sent in the first message; :data:`DEFAULT_VOICE_SETTINGS`
            when None.
        timeout_s: longest wait for each server message, first audio included, seconds.
        open_timeout_s: longest wait for the connection, seconds.

    Raises:
        ValueError: ``output_format`` is not ``pcm_<rate>``.
    """

    def __init__(
        self,
        voice_id: str,
        *,
        model: str = "eleven_flash_v2_5",
        api_key: str,
        base_url: str = "wss://api.elevenlabs.io",
        output_format: str = "pcm_16000",
        name: str = "elevenlabs",
        voice_settings: dict[str, Any] | None = None,
        timeout_s: float = 5.0,
        open_timeout_s: float = 5.0,
    ) -> None:
        self.voice_id, self.model, self.name = voice_id, model, name
        self.output_format = output_format
        self.capabilities = TTSCapabilities(
            sample_rate_hz=pcm_rate_hz(output_format), streaming=True, voices=(voice_id,)
        )
        self.voice_settings = dict(voice_settings or DEFAULT_VOICE_SETTINGS)
        self.timeout_s, self.open_timeout_s = timeout_s, open_timeout_s
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")

    def url(self) -> str:
        """The ``stream-input`` URL with its query."""
        query = urlencode({"model_id": self.model, "output_format": self.output_format})
        voice = quote(self.voice_id, safe="")
        return f"{self._base_url}/v1/text-to-speech/{voice}/stream-input?{query}"

    def messages(self, text: str) -> list[dict[str, Any]]:
        """The three frames one request sends: open, the text with flush, end."""
        return [
            {"text": " ", "voice_settings": self.voice_settings, "xi_api_key": self._api_key},
            {"text": text.strip() + " ", "flush": True},
            {"text": ""},
        ]

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        """Synthesize ``text``; see :meth:`TextToSpeech.synthesize`.

        Yields:
            s16le mono PCM chunks at ``capabilities.sample_rate_hz``, then an empty
            chunk carrying ``text`` and ``usage``.

        Raises:
            ProviderError: handshake refused (HTTP status); an ``error`` frame
                (permanent for a bad key, no credit or unknown voice); connection
                closed before ``isFinal`` or without audio (transient).
            ProviderTimeout: no connection within ``open_timeout_s`` or no frame
                for ``timeout_s``.
        """
        rate_hz = self.capabilities.sample_rate_hz
        aligner = SampleAligner()
        async with open_socket(
            self.url(),
            provider=self.name,
            headers={"xi-api-key": self._api_key},
            open_timeout_s=self.open_timeout_s,
        ) as socket:
            for message in self.messages(text):
                await socket.send(json.dumps(message))
            while True:
                frame = await receive_json(socket, provider=self.name, timeout_s=self.timeout_s)
                if frame is None:
                    raise ProviderError("connection closed before isFinal", provider=self.name)
                error = error_from_message(frame, self.name)
                if error is not None:
                    raise error
                pcm = aligner.receive(self._audio(frame))
                if pcm:
                    yield TTSChunk(pcm, rate_hz)
                if frame.get("isFinal"):
                    break
        if aligner.num_bytes == 0:
            raise ProviderError("stream ended without audio", provider=self.name)
        usage = Usage(
            self.name, self.model, audio_s=aligner.num_bytes / 2 / rate_hz, characters=len(text)
        )
        yield TTSChunk(b"", rate_hz, text, usage)

    def _audio(self, frame: dict[str, Any]) -> bytes:
        encoded = frame.get("audio")
        if not encoded:
            return b""
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, TypeError):
            raise ProviderError(
                f"audio is not base64 ({len(str(encoded))} characters)", provider=self.name
            ) from None
