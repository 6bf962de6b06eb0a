"""The server's handoff desk: settings from flags; the caller leaving before the human answers."""

from __future__ import annotations

import pytest

from voicerail.errors import ConfigError
from voicerail.events.model import EventKind
from voicerail.events.store import CallRecord, SQLiteEventStore
from voicerail.handoff.twilio_transfer import Fallback, TransferOutcome
from voicerail.server.handoff import HandoffDesk, parse_fallbacks, settings_from
from voicerail.session.runtime import Runtime
from voicerail.testing.clock import FakeClock
from voicerail.testing.fake_servers.crm import run_fake_crm as serve_app
from voicerail.testing.fake_servers.twilio_rest import FakeTwilioREST, build_twilio_rest_app

CALLER = "CA" + "c" * 32


def test_fallbacks_and_settings_from_flags() -> None:
    """`busy=callback,...` parses; warm mode needs the account, the token and a caller ID."""
    assert parse_fallbacks("busy=callback, no_answer=voicemail") == {
        TransferOutcome.BUSY: Fallback.CALLBACK,
        TransferOutcome.NO_ANSWER: Fallback.VOICEMAIL,
    }
    with pytest.raises(ConfigError, match="got 'busy=pizza'"):
        parse_fallbacks("busy=pizza")
    assert (
        settings_from(number=None, mode="warm", from_number=None, account_sid=None, auth_token=None)
        is None
    )
    with pytest.raises(ConfigError) as caught:
        settings_from(
            number="+15559990000",
            mode="warm",
            from_number="+15550001111",
            account_sid=None,
            auth_token="t",
        )
    assert caught.value.source == "$TWILIO_ACCOUNT_SID"
    cold = settings_from(
        number="+15559990000", mode="cold", from_number=None, account_sid=None, auth_token=None
    )
    assert cold is not None and cold.mode == "cold"


async def test_caller_leaving_the_conference_cancels_the_ringing_human(tmp_path) -> None:
    """participant-leave for the caller before an answer: the human's leg is cancelled and
    the transfer is recorded as caller_hung_up."""
    fake = FakeTwilioREST(human="ring")
    fake.add_live_call(CALLER)
    events = SQLiteEventStore(tmp_path / "events.sqlite3")
    events.save_call(CallRecord("vr_1", "clinic", 1.0, 2.0, "handoff", call_sid=CALLER))

    class NoAgent:
        name = "none"

    clock = FakeClock(wall_offset_s=1_800_000_000.0)
    runtime = Runtime(agent=NoAgent(), stt=None, tts=None, events=events, clock=clock)
    async with serve_app(build_twilio_rest_app(fake)) as url:
        settings = settings_from(
            number="+15559990000",
            mode="warm",
            from_number="+15550001111",
            account_sid=fake.account_sid,
            auth_token=fake.auth_token,
        )
        assert settings is not None
        from dataclasses import replace

        desk = HandoffDesk(runtime, replace(settings, api_base_url=url))
        twiml = await desk.begin(CALLER, "vr_1", "http://127.0.0.1:9")
        await desk.drain()
        await fake.drain()
        clock.advance(4.0)
        transfer = await desk.transfer(CALLER)
        assert transfer is not None
        human_sid = transfer.human_sid or ""
        assert f"/twilio/conference-status/{CALLER}" in twiml
        assert fake.calls[human_sid].status == "ringing"
        left = {"StatusCallbackEvent": "participant-leave", "CallSid": CALLER}
        assert await desk.on_conference(CALLER, left)
        assert not await desk.on_conference("CA-unknown", left)
        await fake.drain()
    transfer = await desk.transfer(CALLER)
    assert transfer is not None and transfer.outcome == TransferOutcome.CALLER_HUNG_UP
    assert fake.calls[human_sid].status == "canceled"
    (event,) = [e for e in events.events("vr_1") if e.kind is EventKind.CALL_TRANSFERRED]
    assert event.outcome == "caller_hung_up" and event.latency_s == 4.0
    events.close()


def test_the_agent_file_names_the_fallbacks_and_the_flag_overrides(tmp_path) -> None:
    """``handoff_rules.fallback`` in the agent file; ``--handoff-fallbacks`` wins per outcome;
    a bad pair is refused naming the file and the field."""
    from voicerail.server.handoff import fallbacks_from_agent_file

    agent = tmp_path / "clinic.yaml"
    agent.write_text(
        "name: Clinic\nhandoff_rules:\n  fallback: {busy: callback, no_answer: voicemail}\n"
    )
    from_file = fallbacks_from_agent_file(agent)
    assert from_file == {
        TransferOutcome.BUSY: Fallback.CALLBACK,
        TransferOutcome.NO_ANSWER: Fallback.VOICEMAIL,
    }
    settings = settings_from(
        number="+15559990000",
        mode="warm",
        from_number="+15550001111",
        account_sid="AC1",
        auth_token="t",
        fallbacks="busy=agent",
        agent_fallbacks=from_file,
    )
    assert settings is not None and settings.fallbacks == {
        TransferOutcome.BUSY: Fallback.AGENT,
        TransferOutcome.NO_ANSWER: Fallback.VOICEMAIL,
    }
    agent.write_text("name: Clinic\nhandoff_rules:\n  fallback: {busy: pizza}\n")
    with pytest.raises(ConfigError) as caught:
        fallbacks_from_agent_file(agent)
    assert caught.value.field == "handoff_rules.fallback" and "busy: pizza" in str(caught.value)
    assert fallbacks_from_agent_file(tmp_path / "missing.yaml") == {}
