"""One SIP call's state for ``server/sip_server.py``: the endpoint's settings, the
dialog (:class:`SipCall`: its INVITE, tags, RTP socket, inbound queue, transport
and session) and small helpers. Split from the endpoint to keep both short.

Rules:

1. The inbound queue holds RTP datagrams (``bytes``) and the endpoint's notes to
   :class:`~voicerail.wire.sip_transport.SipTransport` (``str``); RTP beyond
   ``MAX_QUEUED`` is dropped (a flood costs that call its audio, never memory),
   notes never are. ``None`` ends the call's input.
"""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from voicerail.session.driver import CallSession
from voicerail.wire import sip
from voicerail.wire.sip_transport import SipTransport
from voicerail.wire.stream_limits import StreamLimits

MAX_QUEUED = 500  # inbound RTP datagrams per call (10 s); beyond, they are dropped

Address = tuple[str, int]


@dataclass(frozen=True)
class SipSettings:
    """Where and how the SIP endpoint answers.

    Attributes:
        host: the address to bind (signaling and RTP) and to put in SDP and Contact.
        port: the signaling UDP port (5060 by convention; 0 picks one).
        ring_s: seconds between 180 Ringing and 200 OK (a CANCEL may come then).
        handoff_number: the number a handoff is transferred to with REFER.
        limits: the media stream's deadlines (``wire/stream_limits.py``).
    """

    host: str = "127.0.0.1"
    port: int = 5060
    ring_s: float = 0.2
    handoff_number: str | None = None
    limits: StreamLimits = field(default_factory=StreamLimits)


class SipMedia(asyncio.DatagramProtocol):
    """A call's RTP socket: every datagram goes to the call's inbound queue."""

    def __init__(self, call: SipCall) -> None:
        self.call = call

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.call.feed(data)


class SipCall:
    """One dialog: its INVITE, tags, media socket, transport and session."""

    def __init__(self, invite: sip.SipMessage, peer: Address, local_tag: str) -> None:
        self.invite = invite
        self.peer = peer
        self.local_tag = local_tag
        self.remote_tag = sip.header_param(invite.header("from"), "tag") or ""
        self.remote_target = sip.uri_of(invite.header("contact") or invite.header("from"))
        self.queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self.rtp_queued = 0
        self.transport: SipTransport | None = None
        self.session: CallSession | None = None
        self.media: asyncio.DatagramTransport | None = None
        self.media_peer: Address | None = None
        self.on_hold = False
        self.answered = asyncio.Event()  # the ACK of our 200 arrived
        self.cancelled = False
        self.hung_up_by_caller = False
        self.final: sip.SipMessage | None = None  # the INVITE's final response
        self.provisional: sip.SipMessage | None = None  # the last 1xx, while ringing
        self.event_payload_type: int | None = None  # telephone-event's, as agreed
        self.answer_in_ack = False  # our 200 to an offerless re-INVITE carried an offer
        self.sdp_version = 1
        self.local_host = "127.0.0.1"  # our address as the caller reaches it (SDP, Contact)
        self.local_cseq = random.randint(1, 10_000)
        self.pending: dict[int, asyncio.Future[int]] = {}  # our requests by CSeq

    def feed(self, item: str | bytes | None) -> None:
        """Queue an RTP datagram or a note; RTP beyond ``MAX_QUEUED`` is dropped
        (a flood costs that call its audio, never memory; notes are never dropped)."""
        if isinstance(item, bytes):
            if self.rtp_queued >= MAX_QUEUED:
                return
            self.rtp_queued += 1
        self.queue.put_nowait(item)

    async def incoming(self) -> AsyncIterator[str | bytes]:
        while (item := await self.queue.get()) is not None:
            if isinstance(item, bytes):
                self.rtp_queued -= 1
            yield item


def local_host(bound: str, peer: str) -> str:
    """The address to advertise: the bound one, or for a wildcard bind the local
    address the kernel routes to ``peer`` from (SDP ``c=0.0.0.0`` would mean hold)."""
    if bound not in ("0.0.0.0", ""):
        return bound
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((peer, 9))  # no packet is sent: connect() on UDP only routes
        return str(probe.getsockname()[0])


def with_tag(value: str, tag: str) -> str:
    return value if sip.header_param(value, "tag") else f"{value};tag={tag}"


async def discard(frame: str | bytes) -> None:
    """The session's socket writer: SIP media goes out through the pacer instead."""


async def no_close(code: int, reason: str) -> None:
    """The session's closer: the endpoint sends BYE or REFER after the session ends."""
