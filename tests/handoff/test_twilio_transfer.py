"""Warm and cold transfer against a fake Twilio REST API that posts status callbacks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from voicerail.errors import ErrorClass, ProviderError
from voicerail.handoff.twilio_transfer import (
    Fallback,
    TransferOutcome,
    TwilioREST,
    WarmTransfer,
    classify,
    cold_transfer,
    hold_twiml,
    human_twiml,
)
from voicerail.testing.clock import FakeClock
from voicerail.testing.fake_servers.crm import run_fake_crm as serve_app
from voicerail.testing.fake_servers.twilio_rest import FakeTwilioREST, build_twilio_rest_app

CALLER = "CA" + "c" * 32
WHISPER = "Incoming transfer: Ada Lovelace, a known customer. Reason: the caller asked."


@pytest.mark.parametrize(
    ("form", "outcome"),
    [
        ({"CallStatus": "ringing"}, None),
        ({"CallStatus": "in-progress", "AnsweredBy": "human"}, TransferOutcome.ANSWERED),
        ({"CallStatus": "in-progress"}, TransferOutcome.ANSWERED),
        (
            {"CallStatus": "in-progress", "AnsweredBy": "machine_end_beep"},
            TransferOutcome.VOICEMAIL,
        ),
        ({"CallStatus": "busy", "SipResponseCode": "486"}, TransferOutcome.BUSY),
        ({"CallStatus": "busy", "SipResponseCode": "603"}, TransferOutcome.DECLINED),
        ({"CallStatus": "no-answer"}, TransferOutcome.NO_ANSWER),
        ({"CallStatus": "canceled"}, TransferOutcome.CALLER_HUNG_UP),
        ({"CallStatus": "failed"}, TransferOutcome.FAILED),
    ],
)
def test_status_callbacks_classify(form: dict[str, str], outcome: TransferOutcome | None) -> None:
    """Twilio's CallStatus, AnsweredBy and SIP code map to typed outcomes."""
    assert classify(form) == outcome


def test_twiml_holds_the_caller_and_whispers_to_the_human_only() -> None:
    """The caller's conference waits with music; the human's TwiML says the summary first."""
    hold = hold_twiml("handoff-CA1", "https://example.com/hold.mp3?a=1&b=2")
    assert 'startConferenceOnEnter="false"' in hold and "a=1&amp;b=2" in hold
    human = human_twiml("handoff-CA1", "Ada & co <vip>")
    assert human.index("<Say>Ada &amp; co &lt;vip&gt;</Say>") < human.index("<Conference")
    assert 'startConferenceOnEnter="true"' in human


@asynccontextmanager
async def transfer_setup(
    human: str, **kwargs
) -> AsyncIterator[tuple[FakeTwilioREST, WarmTransfer]]:
    fake = FakeTwilioREST(human=human)
    fake.add_live_call(CALLER)
    holder: list[WarmTransfer] = []

    async def status(request: Request) -> Response:
        await holder[0].on_status({k: str(v) for k, v in (await request.form()).items()})
        return Response(status_code=204)

    receiver = Starlette(routes=[Route("/status", status, methods=["POST"])])
    async with (
        serve_app(build_twilio_rest_app(fake)) as twilio_url,
        serve_app(receiver) as our_url,
        httpx.AsyncClient() as client,
    ):
        rest = TwilioREST(client, fake.account_sid, fake.auth_token, base_url=twilio_url)
        transfer = WarmTransfer(
            rest,
            caller_sid=CALLER,
            human_number="+15559990000",
            from_number="+15550001111",
            whisper=WHISPER,
            status_callback=our_url + "/status",
            hold_music_url="https://example.com/hold.mp3",
            stream_url="wss://voice.example.com/twilio/media",
            **kwargs,
        )
        holder.append(transfer)
        yield fake, transfer


async def test_warm_transfer_answered_the_human_heard_the_summary() -> None:
    """Caller on hold in the conference; the human's leg said the summary, then joined."""
    clock = FakeClock()
    async with transfer_setup("answer", clock=clock) as (fake, transfer):
        await transfer.start()
        clock.advance(7.5)
        await fake.drain()
    assert transfer.outcome is TransferOutcome.ANSWERED and transfer.fallback is None
    assert transfer.outcome_after_s == 7.5
    human = fake.calls[transfer.human_sid or ""]
    assert human.said == [WHISPER]
    assert human.form["MachineDetection"] == "Enable"
    assert human.form["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    caller = fake.calls[CALLER]
    assert len(caller.twiml) == 1 and f"handoff-{CALLER}</Conference>" in caller.twiml[0]
    assert caller.said == []  # the caller never hears the summary


@pytest.mark.parametrize(
    ("human", "outcome", "fallback", "heard"),
    [
        ("busy", TransferOutcome.BUSY, Fallback.CALLBACK, "call you back"),
        ("decline", TransferOutcome.DECLINED, Fallback.AGENT, "Sorry"),
        ("no_answer", TransferOutcome.NO_ANSWER, Fallback.VOICEMAIL, "leave a message"),
        ("voicemail", TransferOutcome.VOICEMAIL, Fallback.AGENT, "Sorry"),
    ],
)
async def test_each_unanswered_outcome_applies_its_fallback(
    human: str, outcome: TransferOutcome, fallback: Fallback, heard: str
) -> None:
    """Busy, declined, no answer and voicemail each get the fallback the agent file names."""
    fallbacks = {
        TransferOutcome.BUSY: Fallback.CALLBACK,
        TransferOutcome.NO_ANSWER: Fallback.VOICEMAIL,
    }
    async with transfer_setup(human, fallbacks=fallbacks) as (fake, transfer):
        await transfer.start()
        await fake.drain()
    assert (transfer.outcome, transfer.fallback) == (outcome, fallback)
    caller = fake.calls[CALLER]
    assert len(caller.twiml) == 2 and heard in caller.said[-1]
    if fallback is Fallback.AGENT:
        assert "<Connect><Stream" in caller.twiml[-1]
    if outcome is TransferOutcome.VOICEMAIL:
        assert fake.calls[transfer.human_sid or ""].status == "completed"


async def test_caller_hanging_up_first_cancels_the_ringing_human() -> None:
    """The human's phone stops ringing when the caller has gone (agents-js #2008)."""
    async with transfer_setup("ring") as (fake, transfer):
        await transfer.start()
        await fake.drain()
        assert fake.calls[transfer.human_sid or ""].status == "ringing"
        await transfer.on_caller_hung_up()
        await fake.drain()
    assert transfer.outcome is TransferOutcome.CALLER_HUNG_UP
    assert fake.calls[transfer.human_sid or ""].status == "canceled"
    assert fake.callbacks[-1]["CallStatus"] == "canceled"


async def test_cold_transfer_and_twilio_errors() -> None:
    """Cold: <Dial> on the caller's call. An unknown call is Twilio's 404 20404, permanent."""
    fake = FakeTwilioREST()
    fake.add_live_call(CALLER)
    async with serve_app(build_twilio_rest_app(fake)) as url, httpx.AsyncClient() as client:
        rest = TwilioREST(client, fake.account_sid, fake.auth_token, base_url=url)
        await cold_transfer(rest, CALLER, "+15559990000", "Transferring you now.")
        with pytest.raises(ProviderError) as caught:
            await rest.update_call("CA" + "0" * 32, status="completed")
        bad = TwilioREST(client, fake.account_sid, "wrong", base_url=url)
        with pytest.raises(ProviderError) as refused:
            await bad.update_call(CALLER, status="completed")
    assert fake.calls[CALLER].twiml[-1].endswith("<Dial>+15559990000</Dial></Response>")
    assert caught.value.status == 404 and "20404" in str(caught.value)
    assert caught.value.error_class is ErrorClass.PERMANENT
    assert refused.value.status == 401


async def test_a_finished_call_cannot_be_redirected() -> None:
    """Twilio's 21220: once the caller's call ended, a fallback cannot be applied to it."""
    fake = FakeTwilioREST()
    fake.add_live_call(CALLER).status = "completed"
    async with serve_app(build_twilio_rest_app(fake)) as url, httpx.AsyncClient() as client:
        rest = TwilioREST(client, fake.account_sid, fake.auth_token, base_url=url)
        with pytest.raises(ProviderError) as caught:
            await rest.update_call(CALLER, twiml="<Response/>")
    assert caught.value.status == 400 and "21220" in str(caught.value)
