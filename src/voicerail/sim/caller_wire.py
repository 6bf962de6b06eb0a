"""What the simulated caller says on the wire, per provider: the provider's side
of each media stream (:class:`CallerWire`), so one caller (``sim/caller.py``)
behaves as Twilio, Telnyx, Plivo or Vonage would.

Each wire builds the provider's frames (the opening, a 20 ms inbound frame, a
DTMF key, a mark's echo, what follows a clear, the hang-up) and parses the
server's frames into :data:`AgentMessage` values. Sources: the same provider pages
as ``wire/twilio.py``, ``wire/telnyx.py``, ``wire/plivo.py`` and ``wire/vonage.py``.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

import voicerail.wire.twilio as twilio
from voicerail.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from voicerail.errors import ProtocolError

FRAME_S = 0.02


def _dumps(obj: object) -> str:
    """Compact JSON, as providers send it (and as ``sim/fake_server.py`` reads it)."""
    return json.dumps(obj, separators=(",", ":"))


@dataclass(frozen=True)
class AgentAudio:
    """Agent audio to play: μ-law, 8 kHz, mono."""

    ulaw: bytes


@dataclass(frozen=True)
class AgentMark:
    """A mark (checkpoint, notify) to echo once the audio before it has played."""

    name: str


@dataclass(frozen=True)
class AgentClear:
    """Drop the agent audio not played yet."""


AgentMessage = AgentAudio | AgentMark | AgentClear


class CallerWire(Protocol):
    """The provider's side of one media stream, as frames."""

    name: str
    #: After a clear, the provider echoes the marks still pending (Twilio, Telnyx).
    echoes_marks_on_clear: bool

    def opening(self) -> list[str | bytes]:
        """The frames that open the stream (``connected``, ``start``, …)."""
        ...

    def media(self, ulaw: bytes, n: int) -> str | bytes:
        """The next inbound frame, 20 ms of μ-law, sent at tick ``n`` (1 first) of the
        caller's frame clock (its timestamp); chunks are numbered by the wire."""
        ...

    def dtmf(self, digit: str) -> str:
        """A key press."""
        ...

    def mark_played(self, name: str) -> str:
        """The echo of a mark whose audio has played."""
        ...

    def cleared(self) -> list[str]:
        """What the provider sends after a clear besides mark echoes."""
        ...

    def hangup(self) -> str | None:
        """The frame that ends the stream (None: the socket just closes)."""
        ...

    def parse(self, data: str | bytes) -> AgentMessage | None:
        """One frame from the server (None: nothing to do).

        Raises:
            ProtocolError: the frame is not valid for this provider or stream.
        """
        ...


@dataclass
class TwilioCallerWire:
    """Twilio Media Streams (``wire/twilio.py``)."""

    call_sid: str
    stream_sid: str
    custom_parameters: dict[str, str] = field(default_factory=dict)
    name: str = "twilio"
    echoes_marks_on_clear: bool = True
    _seq: int = 0
    _chunk: int = 0

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def opening(self) -> list[str | bytes]:
        start = twilio.Start(
            sequence_number=self._next_seq(),
            stream_sid=self.stream_sid,
            account_sid="AC" + "0" * 32,
            call_sid=self.call_sid,
            tracks=("inbound",),
            custom_parameters=dict(self.custom_parameters),
            media_format=twilio.MediaFormat("audio/x-mulaw", 8000, 1),
        )
        connected = twilio.Connected(protocol="Call", version="1.0.0")
        return [twilio.serialize_inbound(connected), twilio.serialize_inbound(start)]

    def media(self, ulaw: bytes, n: int) -> str:
        # A template (only the payload changes): the text serialize_inbound makes,
        # at a fraction of the cost for hundreds of callers.
        payload = base64.b64encode(ulaw).decode("ascii")
        self._chunk += 1
        return (
            f'{{"event":"media","sequenceNumber":"{self._next_seq()}","media":{{"track":'
            f'"inbound","chunk":"{self._chunk}","timestamp":"{int(n * FRAME_S * 1000)}",'
            f'"payload":"{payload}"}},"streamSid":"{self.stream_sid}"}}'
        )

    def dtmf(self, digit: str) -> str:
        message = twilio.DTMF(
            sequence_number=self._next_seq(),
            stream_sid=self.stream_sid,
            track="inbound_track",
            digit=digit,
        )
        return twilio.serialize_inbound(message)

    def mark_played(self, name: str) -> str:
        message = twilio.Mark(
            sequence_number=self._next_seq(), stream_sid=self.stream_sid, name=name
        )
        return twilio.serialize_inbound(message)

    def cleared(self) -> list[str]:
        return []

    def hangup(self) -> str:
        stop = twilio.Stop(
            sequence_number=self._next_seq(),
            stream_sid=self.stream_sid,
            account_sid="AC" + "0" * 32,
            call_sid=self.call_sid,
        )
        return twilio.serialize_inbound(stop)

    def parse(self, data: str | bytes) -> AgentMessage | None:
        message = twilio.parse_outbound(data)
        if message.stream_sid != self.stream_sid:
            raise ProtocolError(f"{message.event} for stream {message.stream_sid!r}, not ours")
        if isinstance(message, twilio.OutboundMedia):
            return AgentAudio(message.payload)
        if isinstance(message, twilio.OutboundMark):
            return AgentMark(message.name)
        return AgentClear()


def _json_object(data: str | bytes, provider: str) -> dict[str, Any]:
    if isinstance(data, bytes):
        raise ProtocolError(f"binary frame of {len(data)} bytes; {provider} expects text")
    try:
        obj = json.loads(data)
    except ValueError:
        raise ProtocolError("frame is not valid json") from None
    if not isinstance(obj, dict):
        raise ProtocolError("frame is not a json object")
    return obj


def _b64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ProtocolError("payload is not a string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise ProtocolError("payload is not valid base64") from None


@dataclass
class TelnyxCallerWire:
    """Telnyx media streaming (``wire/telnyx.py``)."""

    call_sid: str
    stream_sid: str
    custom_parameters: dict[str, str] = field(default_factory=dict)
    name: str = "telnyx"
    echoes_marks_on_clear: bool = True
    _seq: int = 0

    def _frame(self, event: str, **body: Any) -> str:
        self._seq += 1
        return _dumps(
            {
                "event": event,
                "sequence_number": str(self._seq),
                "stream_id": self.stream_sid,
                **body,
            }
        )

    def opening(self) -> list[str | bytes]:
        start = {
            "call_control_id": self.call_sid,
            "call_session_id": self.call_sid,
            "from": self.custom_parameters.get("from", ""),
            "to": self.custom_parameters.get("to", ""),
            "custom_parameters": self.custom_parameters,
            "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
        }
        return [
            _dumps({"event": "connected", "version": "1.0.0"}),
            self._frame("start", start=start),
        ]

    def media(self, ulaw: bytes, n: int) -> str:
        media = {
            "track": "inbound",
            "chunk": str(n),
            "timestamp": str(int(n * FRAME_S * 1000)),
            "payload": base64.b64encode(ulaw).decode("ascii"),
        }
        return self._frame("media", media=media)

    def dtmf(self, digit: str) -> str:
        return self._frame("dtmf", dtmf={"digit": digit})

    def mark_played(self, name: str) -> str:
        return self._frame("mark", mark={"name": name})

    def cleared(self) -> list[str]:
        return []

    def hangup(self) -> str:
        return self._frame("stop", stop={"call_control_id": self.call_sid})

    def parse(self, data: str | bytes) -> AgentMessage | None:
        obj = _json_object(data, "telnyx")
        event = obj.get("event")
        if event == "media":
            return AgentAudio(_b64((obj.get("media") or {}).get("payload")))
        if event == "mark":
            name = (obj.get("mark") or {}).get("name")
            if not isinstance(name, str) or not name:
                raise ProtocolError("mark without a name")
            return AgentMark(name)
        if event == "clear":
            return AgentClear()
        raise ProtocolError(f"unknown event {event!r}")


@dataclass
class PlivoCallerWire:
    """Plivo Audio Streams (``wire/plivo.py``)."""

    call_sid: str
    stream_sid: str
    extra_headers: str = ""
    #: Simulator parameters (``sim_*``): Plivo allows only [A-Za-z0-9] in header
    #: values, so each travels hex-encoded as ``name=hex`` in ``extra_headers``.
    sim_parameters: dict[str, str] = field(default_factory=dict)
    name: str = "plivo"
    echoes_marks_on_clear: bool = False
    _seq: int = 0

    def _frame(self, event: str, **body: Any) -> str:
        self._seq += 1
        return _dumps(
            {"event": event, "sequenceNumber": self._seq, "streamId": self.stream_sid, **body}
        )

    def opening(self) -> list[str | bytes]:
        start = {
            "callId": self.call_sid,
            "streamId": self.stream_sid,
            "accountId": "MA" + "0" * 18,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
        }
        headers = [self.extra_headers] if self.extra_headers else []
        headers += [f"{k}={v.encode().hex()}" for k, v in self.sim_parameters.items()]
        return [self._frame("start", start=start, extra_headers=";".join(headers))]

    def media(self, ulaw: bytes, n: int) -> str:
        media = {
            "track": "inbound",
            "timestamp": str(int(n * FRAME_S * 1000)),
            "chunk": n,
            "payload": base64.b64encode(ulaw).decode("ascii"),
        }
        return self._frame("media", media=media)

    def dtmf(self, digit: str) -> str:
        return self._frame("dtmf", dtmf={"track": "inbound", "digit": digit})

    def mark_played(self, name: str) -> str:
        return self._frame("playedStream", name=name)

    def cleared(self) -> list[str]:
        return [self._frame("clearedAudio")]

    def hangup(self) -> None:
        return None  # Plivo closes the socket; no inbound stop

    def parse(self, data: str | bytes) -> AgentMessage | None:
        obj = _json_object(data, "plivo")
        event = obj.get("event")
        if event != "playAudio" and obj.get("streamId") != self.stream_sid:
            raise ProtocolError(f"{event} for stream {obj.get('streamId')!r}, not ours")
        if event == "playAudio":
            media = obj.get("media") or {}
            if media.get("contentType") != "audio/x-mulaw":
                raise ProtocolError(f"playAudio content type {media.get('contentType')!r}")
            return AgentAudio(_b64(media.get("payload")))
        if event == "checkpoint":
            name = obj.get("name")
            if not isinstance(name, str) or not name:
                raise ProtocolError("checkpoint without a name")
            return AgentMark(name)
        if event == "clearAudio":
            return AgentClear()
        raise ProtocolError(f"unknown event {event!r}")


@dataclass
class VonageCallerWire:
    """Vonage Voice API WebSocket (``wire/vonage.py``), L16 at 8 or 16 kHz."""

    headers: dict[str, str]
    sample_rate_hz: int = 8000
    name: str = "vonage"
    echoes_marks_on_clear: bool = False

    def opening(self) -> list[str | bytes]:
        content_type = f"audio/l16;rate={self.sample_rate_hz}"
        return [
            _dumps({"event": "websocket:connected", "content-type": content_type, **self.headers})
        ]

    def media(self, ulaw: bytes, n: int) -> bytes:
        pcm = ulaw_to_pcm16(ulaw)
        if self.sample_rate_hz == 16000:  # sample doubling is enough for a simulator
            pcm = np.repeat(np.frombuffer(pcm, dtype="<i2"), 2).tobytes()
        return pcm

    def dtmf(self, digit: str) -> str:
        return _dumps({"event": "websocket:dtmf", "digit": digit, "duration": 260})

    def mark_played(self, name: str) -> str:
        return _dumps({"event": "websocket:notify", "payload": {"mark": name}})

    def cleared(self) -> list[str]:
        return [_dumps({"event": "websocket:cleared"})]

    def hangup(self) -> None:
        return None  # the socket closes

    def parse(self, data: str | bytes) -> AgentMessage | None:
        if isinstance(data, bytes):
            if len(data) % 2:
                raise ProtocolError(f"audio frame of {len(data)} bytes")
            if self.sample_rate_hz == 16000:
                data = np.frombuffer(data, dtype="<i2")[::2].tobytes()
            return AgentAudio(pcm16_to_ulaw(data))
        obj = _json_object(data, "vonage")
        action = obj.get("action")
        if action == "notify":
            name = (obj.get("payload") or {}).get("mark")
            if not isinstance(name, str) or not name:
                raise ProtocolError("notify without payload.mark")
            return AgentMark(name)
        if action == "clear":
            return AgentClear()
        raise ProtocolError(f"unknown action {action!r}")
