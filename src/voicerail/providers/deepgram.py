"""Deepgram live streaming speech-to-text over WebSocket.

Wire protocol (https://developers.deepgram.com/reference/speech-to-text/listen-streaming,
https://developers.deepgram.com/docs/close-stream and
https://developers.deepgram.com/docs/stt-troubleshooting-websocket-data-and-net-errors,
read 2026-11):

* Connect to ``wss://api.deepgram.com/v1/listen`` with the options as query
  parameters (``model``, ``encoding=linear16``, ``sample_rate``, ``channels=1``,
  ``interim_results=true``, ``language``, ``endpointing``) and the header
  ``Authorization: Token <key>``. A refused upgrade is an HTTP 4xx/5xx whose
  ``dg-error`` header says why.
* Send audio as binary frames (never an empty one: it closes the stream), then
  the text frame ``{"type": "CloseStream"}``: Deepgram finishes the audio it holds,
  sends the last results and a ``Metadata`` summary, and closes with 1000.
* ``Results`` messages carry ``channel.alternatives[0].transcript`` and
  ``confidence``, ``start`` and ``duration`` in seconds of stream audio,
  ``is_final`` (this segment's text will not change) and ``speech_final``
  (Deepgram's endpointer saw the end of speech), and ``metadata.model_info``.
  Interim results cover only the audio after the last final segment.
* Errors mid-stream are close frames: 1008 for audio it cannot decode
  (DATA-0000), 1011 for its own failures or no audio (NET-0000, NET-0001).

Deepgram's final segments are committed parts of one utterance here: they are
reported as partial transcripts of the utterance so far, and joined into the one
final transcript that ends the stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from voicerail.errors import ProviderError, ProviderTimeout
from voicerail.providers._ws import open_socket, receive_json
from voicerail.providers.base import STTCapabilities, Transcript, Usage

_CLOSE_STREAM = json.dumps({"type": "CloseStream"})


class DeepgramResults:
    """Assemble one utterance from Deepgram's messages, without I/O.

    Args:
        provider: configured provider name, for errors.
    """

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.finals: list[Transcript] = []
        self.model_version: str | None = None
        self._last_partial = ""

    def receive_message(self, message: dict[str, Any]) -> Transcript | None:
        """Take one decoded message; return a partial transcript when the text moved on.

        Raises:
            ProviderError: an ``Error`` message (transient), or ``Results`` without
                alternatives.
        """
        kind = message.get("type")
        if kind == "Metadata":
            self._receive_metadata(message)
        elif kind == "Error":
            detail = message.get("description") or message.get("message") or "unknown"
            raise ProviderError(f"error message: {str(detail)[:200]}", provider=self.provider)
        elif kind == "Results":
            return self._receive_results(message)
        return None  # SpeechStarted, UtteranceEnd and later additions

    def final(self, usage: Usage) -> Transcript:
        """The whole utterance: every final segment joined, with ``usage``."""
        spoken = [t for t in self.finals if t.text]
        confidences = [t.confidence for t in spoken if t.confidence is not None]
        return Transcript(
            " ".join(t.text for t in spoken),
            is_final=True,
            confidence=sum(confidences) / len(confidences) if confidences else None,
            start_s=spoken[0].start_s if spoken else 0.0,
            end_s=spoken[-1].end_s if spoken else 0.0,
            usage=usage,
        )

    def _receive_results(self, message: dict[str, Any]) -> Transcript | None:
        alternatives = (message.get("channel") or {}).get("alternatives") or []
        if not alternatives:
            raise ProviderError("results message without alternatives", provider=self.provider)
        best = alternatives[0]
        metadata = message.get("metadata") or {}
        info = metadata.get("model_info") or {}
        self.model_version = info.get("version") or self.model_version or metadata.get("model_uuid")
        start_s = float(message.get("start") or 0.0)
        segment = Transcript(
            str(best.get("transcript") or "").strip(),
            is_final=True,
            confidence=best.get("confidence"),
            start_s=start_s,
            end_s=start_s + float(message.get("duration") or 0.0),
        )
        if message.get("is_final"):
            self.finals.append(segment)
            pending = ""
        else:
            pending = segment.text
        text = " ".join(t.text for t in self.finals if t.text)
        text = f"{text} {pending}".strip() if pending else text
        if not text or text == self._last_partial:
            return None
        self._last_partial = text
        return Transcript(text, is_final=False, confidence=segment.confidence, end_s=segment.end_s)

    def _receive_metadata(self, message: dict[str, Any]) -> None:
        # The summary keys model_info by model uuid: {"<uuid>": {"name", "version", "arch"}}.
        # Without a version (self-hosted builds may omit it) the uuid still pins the model.
        infos = message.get("model_info") or {}
        for uuid, info in infos.items() if isinstance(infos, dict) else ():
            if isinstance(info, dict) and info.get("version"):
                self.model_version = str(info["version"])
                return
            if self.model_version is None and uuid:
                self.model_version = str(uuid)
        models = message.get("models") or []
        if self.model_version is None and isinstance(models, list) and models:
            self.model_version = str(models[0])


class _AudioPump:
    """Send the caller's audio, then ``CloseStream``; runs as its own task."""

    def __init__(self, audio: AsyncIterable[bytes], timeout_s: float) -> None:
        self.audio = audio
        self.timeout_s = timeout_s
        self.num_bytes = 0
        self.sent_all = False  # every chunk and CloseStream went out
        self.done = False
        self.error: Exception | None = None
        self.scope: asyncio.Timeout | None = None  # the receiver's current wait

    async def run(self, socket: ClientConnection) -> None:
        try:
            async for chunk in self.audio:
                if chunk:  # an empty binary frame would end Deepgram's stream
                    self.num_bytes += len(chunk)
                    await socket.send(chunk)
            await socket.send(_CLOSE_STREAM)
            self.sent_all = True
        except ConnectionClosed:
            pass  # the receiving side reports how the socket closed
        except Exception as exc:
            # Task boundary: the caller's audio failed. Hand the error to the
            # receiving side, which re-raises it after this socket closes.
            self.error = exc
            await socket.close()
        finally:
            self._finish()
            aclose = getattr(self.audio, "aclose", None)
            if aclose is not None:
                await aclose()

    def _finish(self) -> None:
        self.done = True
        # From now on each message must come within timeout_s: move the wait
        # already in progress, if it has no deadline yet, to that rule.
        if self.scope is not None and self.scope.when() is None:
            self.scope.reschedule(asyncio.get_running_loop().time() + self.timeout_s)


class DeepgramSTT:
    """Streaming :class:`~voicerail.providers.base.SpeechToText` on Deepgram.

    One WebSocket per utterance. While audio is still being sent there is no
    deadline on Deepgram's messages (the caller's endpointing ends the audio);
    after ``CloseStream`` each message must come within ``timeout_s``.

    Args:
        model: Deepgram model (``nova-3``).
        api_key: sent as ``Authorization: Token``.
        base_url: ``wss://api.deepgram.com``, or a fake server's ``ws://`` URL.
        name: provider name in events and routing.
        endpointing_ms: Deepgram's own end-of-speech silence, sent as
            ``endpointing``; None leaves Deepgram's default.
        timeout_s: longest wait for each message once the audio has ended, seconds.
        open_timeout_s: longest wait for the connection, seconds.
    """

    capabilities = STTCapabilities(
        sample_rates_hz=(8000, 16000, 24000, 44100, 48000), streaming=True, partials=True
    )

    def __init__(
        self,
        model: str = "nova-3",
        *,
        api_key: str,
        base_url: str = "wss://api.deepgram.com",
        name: str = "deepgram",
        endpointing_ms: int | None = None,
        timeout_s: float = 5.0,
        open_timeout_s: float = 5.0,
    ) -> None:
        self.model, self.name = model, name
        self.endpointing_ms = endpointing_ms
        self.timeout_s, self.open_timeout_s = timeout_s, open_timeout_s
        self._api_key = api_key
        self._base_url = base_url.rstrip("/")

    def url(self, sample_rate_hz: int, language: str) -> str:
        """The ``/v1/listen`` URL with the query for one utterance."""
        query: dict[str, str | int] = {
            "model": self.model,
            "encoding": "linear16",
            "sample_rate": sample_rate_hz,
            "channels": 1,
            "interim_results": "true",
            "language": language,
        }
        if self.endpointing_ms is not None:
            query["endpointing"] = self.endpointing_ms
        return f"{self._base_url}/v1/listen?{urlencode(query)}"

    async def transcribe(
        self, audio: AsyncIterable[bytes], *, sample_rate_hz: int, language: str = "en"
    ) -> AsyncIterator[Transcript]:
        """Transcribe one utterance; see :meth:`SpeechToText.transcribe`.

        Yields:
            Partial transcripts of the utterance so far, then one final transcript
            with ``usage`` (``audio_s`` counts the audio sent, ``model_version`` is
            Deepgram's ``model_info.version``).

        Raises:
            ValueError: ``sample_rate_hz`` is not supported.
            ProviderError: handshake refused (HTTP status, e.g. 401 permanent);
                connection closed abnormally (close code, e.g. 1011 transient);
                closed normally before the audio was all sent (transient).
            ProviderTimeout: no connection within ``open_timeout_s``, or no
                message for ``timeout_s`` after the audio ended.
            Exception: whatever ``audio`` raised, unchanged.
        """
        if sample_rate_hz not in self.capabilities.sample_rates_hz:
            raise ValueError(
                f"{self.name}: {sample_rate_hz} Hz is not supported, "
                f"use one of {self.capabilities.sample_rates_hz}"
            )
        results = DeepgramResults(self.name)
        pump = _AudioPump(audio, self.timeout_s)
        async with open_socket(
            self.url(sample_rate_hz, language),
            provider=self.name,
            headers={"Authorization": f"Token {self._api_key}"},
            open_timeout_s=self.open_timeout_s,
            error_header="dg-error",
        ) as socket:
            sender = asyncio.create_task(pump.run(socket))
            try:
                while (message := await self._receive(socket, pump)) is not None:
                    partial = results.receive_message(message)
                    if partial is not None:
                        yield partial
            except ProviderError:
                if pump.error is None:
                    raise  # else the socket failed because the audio did: report that
            finally:
                sender.cancel()
                await asyncio.wait({sender})
        if pump.error is not None:
            raise pump.error
        if not pump.sent_all:
            raise ProviderError("connection closed before the audio ended", provider=self.name)
        usage = Usage(
            self.name,
            self.model,
            model_version=results.model_version,
            audio_s=pump.num_bytes / 2 / sample_rate_hz,
        )
        yield results.final(usage)

    async def _receive(self, socket: ClientConnection, pump: _AudioPump) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        when = loop.time() + self.timeout_s if pump.done else None
        try:
            async with asyncio.timeout_at(when) as scope:
                pump.scope = scope
                return await receive_json(socket, provider=self.name, timeout_s=None)
        except TimeoutError:
            raise ProviderTimeout(
                f"no message within {self.timeout_s} s after the audio ended",
                provider=self.name,
                deadline_s=self.timeout_s,
            ) from None
        finally:
            pump.scope = None
