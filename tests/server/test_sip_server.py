"""The SIP endpoint in process, over loopback UDP, with a small scripted user agent
client and fake speech providers: answer, RTP both ways, DTMF, BYE from the agent,
CANCEL while ringing, a re-INVITE to hold, admission, and a malformed request that
leaves a call in progress alone. Every wait has a deadline; nothing asserts timing."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from voicerail.dialog.base import AgentReply
from voicerail.events.store import SQLiteEventStore
from voicerail.server.sip_server import SipEndpoint, SipSettings
from voicerail.session.load import AdmissionConfig, LoadMonitor
from voicerail.session.runtime import AudioConfig, Runtime
from voicerail.testing.doubles import HearingSTT, ToneTTS
from voicerail.wire import rtp, sip

DEADLINE_S = 20.0


@dataclass
class KeyDialog:
    handoff: bool = False

    async def start(self) -> AgentReply:
        return AgentReply("Hello.")

    async def on_user_turn(self, text: str, confidence: float | None) -> AgentReply:
        return AgentReply("Yes.")

    async def on_dtmf(self, digits: str) -> AgentReply:
        return AgentReply("Goodbye.", end_call=True, handoff=self.handoff)

    async def on_silence(self, count: int, final: bool = False) -> AgentReply:
        return AgentReply("Still there?")

    def on_agent_heard(self, heard_text: str, full_text: str) -> None:
        pass


@dataclass
class KeyAgent:
    name: str = "keys"
    handoff: bool = False
    dialogs: list[KeyDialog] = field(default_factory=list)

    def new_dialog(self, call_id: str) -> KeyDialog:
        self.dialogs.append(KeyDialog(self.handoff))
        return self.dialogs[-1]


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


class Uac:
    """A scripted SIP caller: one signaling and one RTP socket on loopback."""

    def __init__(self, server: tuple[str, int], call_id: str) -> None:
        self.server, self.call_id = server, call_id
        self.sig = Inbox()
        self.media = Inbox()
        self.to_tag = ""

    async def open(self) -> Uac:
        loop = asyncio.get_running_loop()
        self.sig_t, _ = await loop.create_datagram_endpoint(
            lambda: self.sig, local_addr=("127.0.0.1", 0)
        )
        self.media_t, _ = await loop.create_datagram_endpoint(
            lambda: self.media, local_addr=("127.0.0.1", 0)
        )
        self.port = self.sig_t.get_extra_info("sockname")[1]
        self.media_port = self.media_t.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        self.sig_t.close()
        self.media_t.close()

    def request(self, method: str, cseq: int, body: bytes = b"") -> None:
        to = "<sip:agent@127.0.0.1>" + (f";tag={self.to_tag}" if self.to_tag else "")
        lines = [
            f"{method} sip:agent@127.0.0.1 SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{method}{cseq}",
            f"From: <sip:caller@127.0.0.1:{self.port}>;tag=uac",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:caller@127.0.0.1:{self.port}>",
            f"Content-Length: {len(body)}",
        ]
        self.sig_t.sendto(("\r\n".join(lines) + "\r\n\r\n").encode() + body, self.server)

    def offer(self, direction: str = "sendrecv") -> bytes:
        return (
            "v=0\r\no=uac 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {self.media_port} RTP/AVP 0 101\r\n"
            f"a=rtpmap:101 telephone-event/8000\r\na={direction}\r\n"
        ).encode()

    async def receive(self) -> sip.SipMessage:
        data = await asyncio.wait_for(self.sig.queue.get(), DEADLINE_S)
        return sip.parse(data)

    async def until_status(self, status: int) -> sip.SipMessage:
        while (message := await self.receive()).status != status:
            pass
        return message

    async def invite(self) -> sip.SipMessage:
        self.request("INVITE", 1, self.offer())
        ok = await self.until_status(200)
        self.to_tag = sip.header_param(ok.header("to"), "tag") or ""
        self.request("ACK", 1)
        return ok


def _runtime(tmp_path: Path, max_calls: int = 10, handoff: bool = False) -> Runtime:
    return Runtime(
        agent=KeyAgent(handoff=handoff),
        stt=HearingSTT("hello"),
        tts=ToneTTS(num_samples=1600),
        events=SQLiteEventStore(tmp_path / "events.sqlite3"),
        audio=AudioConfig(speculative_stt_after_s=None, turn_check_after_s=None),
        load=LoadMonitor(AdmissionConfig(max_calls=max_calls)),
    )


async def _endpoint(
    runtime: Runtime, ring_s: float = 0.0, handoff_number: str | None = None
) -> SipEndpoint:
    settings = SipSettings(host="127.0.0.1", port=0, ring_s=ring_s, handoff_number=handoff_number)
    endpoint = SipEndpoint(runtime, settings)
    await endpoint.start()
    return endpoint


async def test_a_call_is_answered_hears_the_agent_and_a_key_ends_it_with_bye(tmp_path):
    """INVITE → 100/180/200 with PCMU; the greeting arrives as 20 ms PCMU packets; an
    RFC 4733 key makes the agent say goodbye and send BYE."""
    runtime = _runtime(tmp_path)
    endpoint = await _endpoint(runtime)
    uac = await Uac(endpoint.address, "call-a").open()
    try:
        ok = await uac.invite()
        answer = rtp.parse_offer(ok.body)
        assert answer.payload_types == (0, 101) and answer.port > 0
        packet = rtp.parse_rtp(await asyncio.wait_for(uac.media.queue.get(), DEADLINE_S))
        assert packet.payload_type == 0 and len(packet.payload) == 160
        target = (answer.address, answer.port)
        for _ in range(3):  # the end packet is sent three times (RFC 4733 §2.5.1.4)
            event = rtp.RtpPacket(101, 7, 4000, 42, bytes([5, 0x8A, 3, 32])).serialize()
            uac.media_t.sendto(event, target)
        bye = await uac.receive()
        while bye.method != "BYE":
            bye = await uac.receive()
        uac.sig_t.sendto(sip.response_to(bye.headers, 200, "OK").serialize(), endpoint.address)
        for _ in range(100):
            if endpoint.calls == 0:
                break
            await asyncio.sleep(0.05)
        [row] = runtime.events.calls(limit=10)
        assert row.outcome == "completed" and row.data["transport"] == "sip"
    finally:
        uac.close()
        await endpoint.aclose()


async def test_cancel_while_ringing_ends_the_invite_with_487(tmp_path):
    endpoint = await _endpoint(_runtime(tmp_path), ring_s=5.0)
    uac = await Uac(endpoint.address, "call-c").open()
    try:
        uac.request("INVITE", 1, uac.offer())
        await uac.until_status(180)
        uac.request("CANCEL", 1)
        responses = {(await uac.receive()).status for _ in range(2)}
        assert responses == {200, 487}
    finally:
        uac.close()
        await endpoint.aclose()


async def test_a_reinvite_to_hold_is_answered_recvonly_and_bye_ends_the_call(tmp_path):
    endpoint = await _endpoint(_runtime(tmp_path))
    uac = await Uac(endpoint.address, "call-h").open()
    try:
        first = await uac.invite()
        uac.request("INVITE", 2, uac.offer("sendonly"))
        held = await uac.until_status(200)
        assert b"a=recvonly" in held.body
        assert b" 2 IN IP4" in held.body and b" 1 IN IP4" in first.body  # o= version
        uac.request("ACK", 2)
        uac.request("BYE", 3)
        assert (await uac.until_status(200)).cseq == (3, "BYE")
    finally:
        uac.close()
        await endpoint.aclose()


async def test_an_offerless_reinvite_gets_our_offer_and_its_ack_the_answer(tmp_path):
    """RFC 3261 §14.2: the 200 offers PCMU and telephone-event; the ACK's SDP is applied."""
    endpoint = await _endpoint(_runtime(tmp_path))
    uac = await Uac(endpoint.address, "call-o").open()
    try:
        await uac.invite()
        uac.request("INVITE", 2)
        offer = rtp.parse_offer((await uac.until_status(200)).body)
        assert offer.payload_types == (0, 101) and offer.direction == "sendrecv"
        uac.request("ACK", 2, uac.offer("inactive"))
        uac.request("OPTIONS", 3)
        await uac.until_status(200)
        [call] = endpoint._calls.values()
        assert call.on_hold
        uac.request("BYE", 4)
        await uac.until_status(200)
    finally:
        uac.close()
        await endpoint.aclose()


async def test_a_retransmitted_invite_while_ringing_gets_the_180_again(tmp_path):
    endpoint = await _endpoint(_runtime(tmp_path), ring_s=5.0)
    uac = await Uac(endpoint.address, "call-t").open()
    try:
        uac.request("INVITE", 1, uac.offer())
        await uac.until_status(180)
        uac.request("INVITE", 1, uac.offer())
        assert (await uac.receive()).status == 180
        uac.request("CANCEL", 1)
        await uac.until_status(487)
    finally:
        uac.close()
        await endpoint.aclose()


async def test_a_full_server_answers_486(tmp_path):
    endpoint = await _endpoint(_runtime(tmp_path, max_calls=0))
    uac = await Uac(endpoint.address, "call-f").open()
    try:
        uac.request("INVITE", 1, uac.offer())
        assert (await uac.receive()).status == 486
    finally:
        uac.close()
        await endpoint.aclose()


async def test_a_malformed_request_gets_400_and_the_call_in_progress_goes_on(tmp_path):
    endpoint = await _endpoint(_runtime(tmp_path))
    uac = await Uac(endpoint.address, "call-m").open()
    try:
        await uac.invite()
        bad = (
            b"INFO sip:agent SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9\r\nCall-ID: call-m\r\n"
            b"From: <sip:caller@h>;tag=uac\r\nTo: <sip:agent@h>\r\nCSeq: 1 INFO\r\n"
            b"Content-Length: 2x\r\n\r\n"
        )
        uac.sig_t.sendto(bad, endpoint.address)
        response = await uac.receive()
        assert response.status == 400
        assert "content-length '2x' is not a number" in response.reason
        uac.request("OPTIONS", 2)
        assert (await uac.until_status(200)).cseq == (2, "OPTIONS")
        assert endpoint.calls == 1
        uac.request("BYE", 3)
        assert (await uac.until_status(200)).cseq == (3, "BYE")
    finally:
        uac.close()
        await endpoint.aclose()


async def _request_of(uac: Uac, method: str) -> sip.SipMessage:
    while (message := await uac.receive()).method != method:
        pass
    return message


async def test_a_handoff_is_a_refer_to_the_handoff_number_then_bye(tmp_path):
    """RFC 3515: REFER with Refer-To the handoff number, answered 202, then BYE."""
    endpoint = await _endpoint(_runtime(tmp_path, handoff=True), handoff_number="+15550100")
    uac = await Uac(endpoint.address, "call-r").open()
    try:
        answer = rtp.parse_offer((await uac.invite()).body)
        await asyncio.wait_for(uac.media.queue.get(), DEADLINE_S)  # the greeting plays
        event = rtp.RtpPacket(101, 7, 4000, 42, bytes([1, 0x8A, 3, 32])).serialize()
        uac.media_t.sendto(event, (answer.address, answer.port))
        refer = await _request_of(uac, "REFER")
        assert refer.header("refer-to") == f"<sip:+15550100@127.0.0.1:{uac.port}>"
        assert sip.header_param(refer.header("from"), "tag") == uac.to_tag
        reply = sip.response_to(refer.headers, 202, "Accepted").serialize()
        uac.sig_t.sendto(reply, endpoint.address)
        bye = await _request_of(uac, "BYE")
        assert bye.cseq[0] > refer.cseq[0]
    finally:
        uac.close()
        await endpoint.aclose()


async def test_closing_the_endpoint_hangs_up_its_calls_with_bye(tmp_path):
    endpoint = await _endpoint(_runtime(tmp_path))
    uac = await Uac(endpoint.address, "call-s").open()
    try:
        await uac.invite()
        await asyncio.wait_for(uac.media.queue.get(), DEADLINE_S)
        closing = asyncio.create_task(endpoint.aclose())
        bye = await _request_of(uac, "BYE")
        uac.sig_t.sendto(sip.response_to(bye.headers, 200, "OK").serialize(), endpoint.address)
        await asyncio.wait_for(closing, DEADLINE_S)
    finally:
        uac.close()
