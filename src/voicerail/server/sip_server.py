"""voicerail as a SIP user agent server over UDP (``voicerail serve --sip HOST:PORT``).

One UDP socket carries the signaling of every call; each answered call gets its
own RTP socket and runs :class:`~voicerail.session.driver.CallSession` over a
:class:`~voicerail.wire.sip_transport.SipTransport`.

Rules:

1. One bad datagram never hurts another call: a request that does not parse is
   answered 400 with the parse error as reason phrase (RFC 3261 §21.4.1) and
   changes no dialog; a malformed response or RTP packet is dropped (RTP that
   does not parse ends only that call, through the driver).
2. Admission is the webhooks' (``session/load.py``): a new INVITE reserves a slot
   under its Call-ID; beyond capacity it gets 486 Busy Here, while draining or
   overloaded 503 with Retry-After (§21.5.4), and is recorded as ``CallRefused``.
3. An INVITE is answered 100, 180, then after ``ring_s`` 200 with the SDP answer
   (PCMU/8000 and telephone-event/8000); the 200 is retransmitted T1, 2·T1, …
   capped at T2 until the ACK, and the call is hung up when 64·T1 pass without
   one (§13.3.1.4). A CANCEL while ringing gets 200 and the INVITE 487 (§9.2).
4. BYE from the caller ends the call (200); the agent ending the call sends BYE,
   or REFER to the handoff number when the call ended in a handoff (RFC 3515),
   then BYE. A re-INVITE is answered 200 with a new SDP version: hold (sendonly
   or inactive) stops our RTP, a new address or port redirects it; one without
   an offer gets ours and its ACK's answer is applied (§14.2). A re-INVITE
   before our 200 was acknowledged gets 491 (§14.1).
5. Agent audio is paced here, one 20 ms RTP packet per tick of the runtime's
   clock; a late tick skips ahead instead of bursting.
6. Every wait is on the runtime's clock and has a deadline.

Not done: registering with a registrar (REGISTER, digest auth), TCP/TLS and
SRTP, PRACK (RFC 3262), and NOTIFY progress of a REFER (the BYE follows its
202 or a deadline). A held caller who sends no RTP for the stream limits'
``media_silence_s`` is ended as a silent stream. RTP is taken from any source
address (no latching to the SDP's); NAT traversal (ICE, rport in responses) is
not done.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from voicerail.errors import ProtocolError
from voicerail.server.sip_call import (
    Address,
    SipCall,
    SipMedia,
    SipSettings,
    discard,
    local_host,
    no_close,
    with_tag,
)
from voicerail.session.driver import CallSession
from voicerail.session.runtime import Runtime
from voicerail.wire import rtp, sip
from voicerail.wire.sip_transport import ANSWERED, HUNG_UP, PLAYED, SipTransport

log = logging.getLogger(__name__)

T1_S = 0.5
T2_S = 4.0
FRAME_S = 0.02
_ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, REFER, NOTIFY, INFO"

Refuse = Callable[[str | None, str | None], None]


class SipEndpoint(asyncio.DatagramProtocol):
    """The SIP user agent server (see the module rules).

    Args:
        runtime: the server's shared parts (admission, clock, agent).
        settings: where to bind and how to answer.
        refuse: records a call refused by admission (Call-ID, reason).
        active: the server's live sessions by id (``server/app.py``), so that the
            drain ends SIP calls too; a private dict when None.
    """

    def __init__(
        self,
        runtime: Runtime,
        settings: SipSettings,
        refuse: Refuse | None = None,
        active: dict[int, CallSession] | None = None,
    ) -> None:
        self.rt = runtime
        self._active: dict[int, CallSession] = active if active is not None else {}
        self.settings = settings
        self._refuse = refuse
        self._calls: dict[str, SipCall] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._socket: asyncio.DatagramTransport | None = None
        self.address: Address = (settings.host, settings.port)

    @property
    def calls(self) -> int:
        """Dialogs in progress."""
        return len(self._calls)

    async def start(self) -> None:
        """Bind the signaling socket.

        Raises:
            OSError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=(self.settings.host, self.settings.port)
        )
        self._socket = transport
        self.address = transport.get_extra_info("sockname")[:2]
        log.info("sip endpoint listening on udp %s:%d", *self.address)

    async def aclose(self, deadline_s: float = 5.0) -> None:
        """End every call as a shutdown (each sends its BYE), wait up to
        ``deadline_s`` of the clock for them, cancel the rest, close the sockets."""
        for call in list(self._calls.values()):
            if call.session is not None:
                call.session.shut_down()
            else:
                call.cancelled = True  # still ringing or waiting for its ACK
        if self._tasks:
            waiting = asyncio.gather(*self._tasks, return_exceptions=True)
            try:
                await self.rt.clock.wait_for(asyncio.shield(waiting), deadline_s)
            except TimeoutError:
                for task in list(self._tasks):
                    task.cancel()
                await waiting
        if self._socket is not None:
            self._socket.close()

    # -- signaling in ------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            message = sip.parse(data)
        except sip.MalformedMessage as exc:
            if exc.is_request and "via" in exc.headers:
                reason = exc.message.replace("\r", " ").replace("\n", " ")[:120]
                self._send(sip.response_to(exc.headers, 400, f"Bad Request ({reason})"), addr)
            log.info("sip: malformed datagram from %s:%d: %s", addr[0], addr[1], exc.message)
            return
        try:
            if message.is_request:
                self._on_request(message, addr)
            else:
                self._on_response(message)
        except ProtocolError as exc:
            if message.is_request and message.method != "ACK":
                self._send(
                    sip.response_to(message.headers, 400, f"Bad Request ({exc.message[:120]})"),
                    addr,
                )
        except Exception:  # task boundary: one request fails, the endpoint goes on
            log.exception("sip: %s from %s:%d failed", message.method or "response", *addr)
            if message.is_request and message.method != "ACK":
                self._send(sip.response_to(message.headers, 500, "Server Internal Error"), addr)

    def _on_request(self, request: sip.SipMessage, addr: Address) -> None:
        call = self._calls.get(request.call_id)
        method = request.method
        if method == "INVITE":
            if call is None:
                self._on_invite(request, addr)
            elif request.cseq == call.invite.cseq:
                # A retransmission: the same answer, or the last 1xx (§17.2.1).
                last = call.final or call.provisional
                if last is not None:
                    self._send(last, addr)
            else:
                self._on_reinvite(call, request, addr)
        elif method == "ACK":
            if call is None:
                return
            if request.cseq[0] == call.invite.cseq[0]:
                if call.final is not None and call.final.status == 200:
                    call.answered.set()
            elif call.answer_in_ack and request.body:
                call.answer_in_ack = False
                self._apply_remote_sdp(call, rtp.parse_offer(request.body))
        elif method == "CANCEL":
            self._on_cancel(call, request, addr)
        elif method == "BYE":
            if call is None:
                self._respond(request, addr, 481, "Call/Transaction Does Not Exist")
                return
            self._respond(request, addr, 200, "OK", tag=call.local_tag)
            call.hung_up_by_caller = True
            call.feed(HUNG_UP)
        elif method in ("OPTIONS", "NOTIFY", "INFO"):
            response = sip.response_to(
                request.headers, 200, "OK", to_tag=call.local_tag if call else None
            )
            response.add("allow", _ALLOW)
            self._send(response, addr)
        else:
            response = sip.response_to(request.headers, 405, "Method Not Allowed")
            response.add("allow", _ALLOW)
            self._send(response, addr)

    def _on_invite(self, invite: sip.SipMessage, addr: Address) -> None:
        try:
            offer = rtp.parse_offer(invite.body)
        except ProtocolError as exc:
            self._respond(invite, addr, 400, f"Bad Request ({exc.message[:120]})")
            return
        if rtp.PCMU not in offer.payload_types:
            self._respond(invite, addr, 488, "Not Acceptable Here")
            return
        decision = self.rt.load.admit(reservation=invite.call_id)
        if not decision.admit:
            if self._refuse is not None:
                self._refuse(invite.call_id, decision.reason)
            if decision.reason is None or decision.reason.startswith("full"):
                self._respond(invite, addr, 486, "Busy Here")
            else:
                response = sip.response_to(invite.headers, 503, "Service Unavailable")
                response.add("retry-after", "5")
                self._send(response, addr)
            return
        call = SipCall(invite, addr, f"{random.getrandbits(48):012x}")
        call.local_host = local_host(self.address[0], addr[0])
        call.event_payload_type = offer.event_payload_type
        self._calls[invite.call_id] = call
        self._respond(invite, addr, 100, "Trying")
        task = asyncio.create_task(self._run_call(call, offer), name=f"sip-{invite.call_id[:16]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_reinvite(self, call: SipCall, request: sip.SipMessage, addr: Address) -> None:
        if call.media is None or call.final is None:  # our own INVITE answer is pending
            self._respond(request, addr, 491, "Request Pending", tag=call.local_tag)  # §14.1
            return
        if not request.body:
            # An offerless re-INVITE (§14.2): the 200 carries our offer, the ACK the answer.
            event_pt = call.event_payload_type
            pts = (rtp.PCMU,) if event_pt is None else (rtp.PCMU, event_pt)
            offer = rtp.AudioOffer(call.local_host, 0, pts, event_pt, "sendrecv")
            call.answer_in_ack = True
        else:
            offer = rtp.parse_offer(request.body)  # ProtocolError: 400, the dialog goes on
            self._apply_remote_sdp(call, offer)
        call.sdp_version += 1
        local = call.media.get_extra_info("sockname")
        body = rtp.answer_sdp(
            offer, call.local_host, local[1], id(call) & 0xFFFFFFF, call.sdp_version
        )
        if body is None:
            self._respond(request, addr, 488, "Not Acceptable Here", tag=call.local_tag)
            return
        self._send(self._ok_with_sdp(call, request, body), addr)

    @staticmethod
    def _apply_remote_sdp(call: SipCall, offer: rtp.AudioOffer) -> None:
        """Hold stops our RTP; otherwise it goes to the (new) address (rule 4)."""
        call.on_hold = offer.on_hold
        if not offer.on_hold:
            call.media_peer = (offer.address, offer.port)

    def _on_cancel(self, call: SipCall | None, cancel: sip.SipMessage, addr: Address) -> None:
        if call is None:
            self._respond(cancel, addr, 481, "Call/Transaction Does Not Exist")
            return
        self._respond(cancel, addr, 200, "OK", tag=call.local_tag)
        if call.final is None:  # still ringing: the INVITE ends with 487 (§9.2)
            call.cancelled = True
            call.final = sip.response_to(
                call.invite.headers, 487, "Request Terminated", to_tag=call.local_tag
            )
            self._send(call.final, call.peer)

    def _on_response(self, response: sip.SipMessage) -> None:
        call = self._calls.get(response.call_id)
        if call is None or response.status < 200:
            return
        number, _ = response.cseq
        future = call.pending.pop(number, None)
        if future is not None and not future.done():
            future.set_result(response.status)

    # -- one call ----------------------------------------------------------------

    async def _run_call(self, call: SipCall, offer: rtp.AudioOffer) -> None:
        clock = self.rt.clock
        loop = asyncio.get_running_loop()
        pacer: asyncio.Task[None] | None = None
        try:
            media, _ = await loop.create_datagram_endpoint(
                lambda: SipMedia(call), local_addr=(self.address[0], 0)
            )
            call.media = media
            call.media_peer = (offer.address, offer.port)
            call.on_hold = offer.on_hold
            call.provisional = sip.response_to(
                call.invite.headers, 180, "Ringing", to_tag=call.local_tag
            )
            self._send(call.provisional, call.peer)
            await clock.sleep(self.settings.ring_s)
            if call.cancelled:
                return
            local_port = media.get_extra_info("sockname")[1]
            body = rtp.answer_sdp(offer, call.local_host, local_port, id(call) & 0xFFFFFFF, 1)
            assert body is not None  # PCMU was checked at the INVITE
            call.final = self._ok_with_sdp(call, call.invite, body)
            if not await self._deliver_ok(call):
                log.info(
                    "sip call %s: no ACK for the 200 within %.0f s", call.invite.call_id, 64 * T1_S
                )
                await self._hang_up(call)
                return
            caller = sip.uri_of(call.invite.header("from")).split(":", 1)[-1].split("@", 1)[0]
            call.transport = SipTransport(
                call.invite.call_id, caller, event_payload_type=offer.event_payload_type
            )
            call.feed(ANSWERED)  # first item: the driver reads CallAnswered at once
            pacer = asyncio.create_task(
                self._pace(call), name=f"sip-pace-{call.invite.call_id[:16]}"
            )
            session = CallSession(
                self.rt, discard, no_close, self.settings.limits, transport=call.transport
            )
            call.session = session
            self._active[id(session)] = session  # seen by /healthz and the SIGTERM drain
            try:
                record = await session.run(call.incoming())
            finally:
                self._active.pop(id(session), None)
            if not call.hung_up_by_caller:
                if record.data.get("handoff") and self.settings.handoff_number:
                    await self._refer(call, self.settings.handoff_number)
                await self._hang_up(call)
        except Exception:  # task boundary: this call only
            log.exception("sip call %s failed", call.invite.call_id)
        finally:
            if pacer is not None:
                pacer.cancel()
            if call.media is not None:
                call.media.close()
            self._calls.pop(call.invite.call_id, None)

    async def _deliver_ok(self, call: SipCall) -> bool:
        """Send the 200 until its ACK, T1 doubling to T2, for 64·T1 (rule 3)."""
        clock = self.rt.clock
        interval_s, waited_s = T1_S, 0.0
        while waited_s < 64 * T1_S:
            assert call.final is not None
            self._send(call.final, call.peer)
            try:
                await clock.wait_for(call.answered.wait(), interval_s)
                return True
            except TimeoutError:
                waited_s += interval_s
                interval_s = min(2 * interval_s, T2_S)
        return False

    async def _pace(self, call: SipCall) -> None:
        """One RTP packet per 20 ms of the clock (rule 5)."""
        clock = self.rt.clock
        assert call.transport is not None and call.media is not None
        next_s = clock.monotonic()
        while True:
            next_s += FRAME_S
            now = clock.monotonic()
            if next_s < now - 0.1:
                next_s = now  # the loop stalled: skip ahead, never burst
            await clock.sleep(next_s - now)
            if not call.transport.sending:
                continue
            packet, marked = call.transport.next_packet()
            if packet is not None and not call.on_hold and call.media_peer is not None:
                call.media.sendto(packet, call.media_peer)
            if marked:
                call.feed(PLAYED)

    async def _request(self, call: SipCall, method: str, extra: dict[str, str]) -> int | None:
        """Send an in-dialog request; its final status, or None after 32 s (§17.1.2.2)."""
        call.local_cseq += 1
        request = sip.SipMessage(method=method, uri=call.remote_target)
        host, port = call.local_host, self.address[1]
        request.add(
            "via", f"SIP/2.0/UDP {host}:{port};branch=z9hG4bK{random.getrandbits(64):x};rport"
        )
        request.add("max-forwards", "70")
        request.add("from", with_tag(call.invite.header("to"), call.local_tag))
        request.add("to", call.invite.header("from"))
        request.add("call-id", call.invite.call_id)
        request.add("cseq", f"{call.local_cseq} {method}")
        request.add("contact", f"<sip:agent@{host}:{port}>")
        for name, value in extra.items():
            request.add(name, value)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        call.pending[call.local_cseq] = future
        interval_s, waited_s = T1_S, 0.0
        while waited_s < 64 * T1_S:
            self._send(request, call.peer)
            try:
                return await self.rt.clock.wait_for(asyncio.shield(future), interval_s)
            except TimeoutError:
                waited_s += interval_s
                interval_s = min(2 * interval_s, T2_S)
        call.pending.pop(call.local_cseq, None)
        return None

    async def _refer(self, call: SipCall, number: str) -> None:
        # The caller's domain (its From URI's host): where a trunk routes the number.
        peer_host = sip.uri_of(call.invite.header("from")).split("@", 1)[-1]
        status = await self._request(call, "REFER", {"refer-to": f"<sip:{number}@{peer_host}>"})
        log.info(
            "sip call %s: refer to the handoff number answered %s", call.invite.call_id, status
        )

    async def _hang_up(self, call: SipCall) -> None:
        await self._request(call, "BYE", {})

    # -- signaling out -----------------------------------------------------------

    def _ok_with_sdp(self, call: SipCall, request: sip.SipMessage, body: bytes) -> sip.SipMessage:
        response = sip.response_to(request.headers, 200, "OK", to_tag=call.local_tag)
        host, port = call.local_host, self.address[1]
        response.add("contact", f"<sip:agent@{host}:{port}>")
        response.add("allow", _ALLOW)
        response.add("content-type", "application/sdp")
        response.body = body
        return response

    def _respond(
        self,
        request: sip.SipMessage,
        addr: Address,
        status: int,
        reason: str,
        tag: str | None = None,
    ) -> None:
        self._send(sip.response_to(request.headers, status, reason, to_tag=tag), addr)

    def _send(self, message: sip.SipMessage, addr: Address) -> None:
        if self._socket is not None:
            self._socket.sendto(message.serialize(), addr)
