"""The handoff desk across workers: transfers in the state store (a real Redis), outcomes
acted on once, the agent fallback's stream, the SLA from the request, and the human's leg
ended when the caller leaves while the summary plays."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from voicerail.events.model import Event, EventKind
from voicerail.events.store import CallRecord, SQLiteEventStore
from voicerail.handoff.twilio_transfer import Fallback, TransferOutcome
from voicerail.server.handoff import HandoffDesk, HandoffSettings
from voicerail.session.runtime import Runtime
from voicerail.state.session import MemoryStateStore, StateStore
from voicerail.testing.clock import FakeClock
from voicerail.testing.fake_servers.crm import run_fake_crm as serve_app
from voicerail.testing.fake_servers.twilio_rest import FakeTwilioREST, build_twilio_rest_app

CALLER = "CA" + "c" * 32
PHONE = "+15551230000"
BASE = "https://voice.example.com"


class NoAgent:
    name = "none"


def events_of_a_handed_off_call(path: Path, clock: FakeClock) -> SQLiteEventStore:
    """A call whose stream carried ``from`` and whose dialog asked for a human at t=0."""
    events = SQLiteEventStore(path)
    events.save_call(CallRecord("vr_1", "clinic", 1.0, 2.0, "handoff", call_sid=CALLER))
    started = Event("vr_1", EventKind.STREAM_STARTED, clock.wall(), clock.monotonic())
    started.pii["custom_parameters"] = {"from": PHONE, "to": "+15550002222"}
    asked = Event("vr_1", EventKind.DIALOG_DECIDED, clock.wall(), clock.monotonic())
    asked.pii["handoff_summary"] = {"reason": "explicit"}
    asked.pii["handoff_whisper"] = "Incoming transfer: Maria Lopez."
    events.append(started)
    events.append(asked)
    events.flush()
    return events


def desk(
    events: SQLiteEventStore, clock: FakeClock, store: StateStore, url: str, fake
) -> HandoffDesk:
    runtime = Runtime(agent=NoAgent(), stt=None, tts=None, events=events, clock=clock)
    runtime.state = store
    settings = HandoffSettings(
        number="+15559990000",
        mode="warm",
        from_number="+15550001111",
        account_sid=fake.account_sid,
        auth_token=fake.auth_token,
        api_base_url=url,
        fallbacks={TransferOutcome.NO_ANSWER: Fallback.AGENT},
    )
    return HandoffDesk(runtime, settings)


def transferred(events: SQLiteEventStore) -> list[Event]:
    events.flush()
    return [e for e in events.events("vr_1") if e.kind is EventKind.CALL_TRANSFERRED]


async def dial_and_report(d: HandoffDesk, fake) -> list[dict[str, str]]:
    """Begin the transfer, let the fake Twilio dial the human, and hand the desk every
    status callback Twilio sent; those callbacks' forms."""
    await d.begin(CALLER, "vr_1", BASE)
    await d.drain()
    await fake.drain()
    forms = list(fake.callbacks)
    for form in forms:
        await d.on_status(CALLER, form)
    return forms


async def test_a_callback_on_another_worker_settles_the_transfer_once(
    tmp_path, redis_url: str
) -> None:
    """Worker A dials the human; the no-answer callback reaches worker B (its own Redis
    client): B sends the caller back to the agent on a stream that carries the caller's
    number; the same callback later reaching A changes nothing."""
    from voicerail.state.redis_store import RedisStateStore

    clock = FakeClock(wall_offset_s=1_800_000_000.0)
    events = events_of_a_handed_off_call(tmp_path / "events.sqlite3", clock)
    fake = FakeTwilioREST(human="no_answer")
    fake.add_live_call(CALLER)
    store_a, store_b = RedisStateStore(redis_url), RedisStateStore(redis_url)
    async with serve_app(build_twilio_rest_app(fake)) as url:
        a, b = (desk(events, clock, s, url, fake) for s in (store_a, store_b))
        await a.begin(CALLER, "vr_1", BASE)
        await a.drain()
        await fake.drain()  # the callbacks went to BASE, which is not reachable
        clock.advance(12.0)
        callbacks = [dict(form) for form in fake.callbacks]
        for form in callbacks:
            assert await b.on_status(CALLER, form)
        for form in callbacks:
            assert await a.on_status(CALLER, form)
        assert not await b.on_status("CA-unknown", callbacks[-1])
    record = await a.transfer(CALLER)
    assert record is not None and record.outcome == "no_answer" and record.fallback == "agent"
    (event,) = transferred(events)
    assert event.outcome == "no_answer" and event.latency_s == 12.0
    back = fake.calls[CALLER].twiml
    assert len(back) == 1 and "Sorry, nobody could take your call" in back[0]
    assert f'<Parameter name="from" value="{PHONE}" />' in back[0]
    assert '<Parameter name="handoff" value="no_answer" />' in back[0]
    assert f'action="{BASE}/twilio/connect-action"' in back[0]
    assert 'url="wss://voice.example.com/twilio/media"' in back[0]
    await store_a.aclose()
    await store_b.aclose()
    events.close()


async def test_the_sla_runs_from_the_agents_request(tmp_path) -> None:
    """The human answers 7 s after the dialog asked for one, 3 s after Twilio's connect
    action: the recorded time to answer is 7 s."""
    clock = FakeClock(wall_offset_s=1_800_000_000.0)
    events = events_of_a_handed_off_call(tmp_path / "events.sqlite3", clock)
    fake = FakeTwilioREST(human="answer")
    fake.add_live_call(CALLER)
    async with serve_app(build_twilio_rest_app(fake)) as url:
        d = desk(events, clock, MemoryStateStore(monotonic=clock.monotonic), url, fake)
        clock.advance(4.0)
        await d.begin(CALLER, "vr_1", BASE)
        await d.drain()
        await fake.drain()
        clock.advance(3.0)
        for form in list(fake.callbacks):
            await d.on_status(CALLER, form)
    (event,) = transferred(events)
    assert (event.outcome, event.latency_s) == ("answered", 7.0)
    events.close()


async def test_the_caller_leaving_while_the_summary_plays_ends_the_human_leg(tmp_path) -> None:
    """Answered but not yet in the conference: the caller's leave completes the human's
    leg. Once the human joined, the caller leaving leaves the human's leg to the
    conference's end."""
    for joined in (False, True):
        clock = FakeClock(wall_offset_s=1_800_000_000.0)
        events = events_of_a_handed_off_call(tmp_path / f"events-{joined}.sqlite3", clock)
        fake = FakeTwilioREST(human="answer")
        fake.add_live_call(CALLER)
        async with serve_app(build_twilio_rest_app(fake)) as url:
            d = desk(events, clock, MemoryStateStore(monotonic=clock.monotonic), url, fake)
            await dial_and_report(d, fake)
            record = await d.transfer(CALLER)
            assert record is not None and record.human_sid is not None
            if joined:
                join = {"StatusCallbackEvent": "participant-join", "CallSid": record.human_sid}
                await d.on_conference(CALLER, join)
            leave = {"StatusCallbackEvent": "participant-leave", "CallSid": CALLER}
            await d.on_conference(CALLER, leave)
            await fake.drain()
        expected = "in-progress" if joined else "completed"
        assert fake.calls[record.human_sid].status == expected
        assert [e.outcome for e in transferred(events)] == ["answered"]
        events.close()


async def test_a_second_transfer_ignores_the_first_transfers_late_callbacks(tmp_path) -> None:
    """Back with the agent, the caller asks again: the first human leg's late 'completed'
    callback does not settle the second transfer."""
    clock = FakeClock(wall_offset_s=1_800_000_000.0)
    events = events_of_a_handed_off_call(tmp_path / "events.sqlite3", clock)
    fake = FakeTwilioREST(human="no_answer")
    fake.add_live_call(CALLER)
    async with serve_app(build_twilio_rest_app(fake)) as url:
        d = desk(events, clock, MemoryStateStore(monotonic=clock.monotonic), url, fake)
        first = await dial_and_report(d, fake)
        fake.human = "ring"
        await d.begin(CALLER, "vr_1", BASE)
        await d.drain()
        await fake.drain()
        late = {**first[-1], "CallStatus": "completed"}
        await d.on_status(CALLER, late)
    record = await d.transfer(CALLER)
    assert record is not None and record.outcome is None
    assert record.earlier_legs == (first[-1]["CallSid"],)
    assert [e.outcome for e in transferred(events)] == ["no_answer"]
    events.close()


async def test_the_agent_fallback_reopens_the_calls_state(tmp_path) -> None:
    """Back to the agent: the call's state is no longer handed off, so the new stream of
    the same CallSid can carry the call on; a failed transfer with a voicemail fallback
    leaves it as it was."""
    from voicerail.state.session import SessionState

    for fallback, reopened in ((Fallback.AGENT, True), (Fallback.VOICEMAIL, False)):
        clock = FakeClock(wall_offset_s=1_800_000_000.0)
        events = events_of_a_handed_off_call(tmp_path / f"events-{fallback}.sqlite3", clock)
        store = MemoryStateStore(monotonic=clock.monotonic)
        handed_off = SessionState(
            "vr_1",
            version=1,
            call_sid=CALLER,
            dialog={"node": "more", "ended": True, "slots": {"name": {"str": "Maria Lopez"}}},
            outcome="handoff",
        )
        await store.save(handed_off)
        fake = FakeTwilioREST(human="no_answer")
        fake.add_live_call(CALLER)
        async with serve_app(build_twilio_rest_app(fake)) as url:
            d = desk(events, clock, store, url, fake)
            d.settings = replace(d.settings, fallbacks={TransferOutcome.NO_ANSWER: fallback})
            await dial_and_report(d, fake)
        state = await store.load_by_call_sid(CALLER)
        assert state is not None and state.call_id == "vr_1"
        if reopened:
            assert (state.version, state.outcome, state.dialog["ended"]) == (2, None, False)
            assert state.dialog["slots"] == handed_off.dialog["slots"]
        else:
            assert state == handed_off
        events.close()


async def test_a_human_who_cannot_be_dialled_is_a_failed_transfer(tmp_path) -> None:
    """Twilio refuses the human's call (bad credentials, 20003): the transfer settles as
    failed, once, and is recorded for the SLA."""
    clock = FakeClock(wall_offset_s=1_800_000_000.0)
    events = events_of_a_handed_off_call(tmp_path / "events.sqlite3", clock)
    fake = FakeTwilioREST()
    fake.add_live_call(CALLER)
    async with serve_app(build_twilio_rest_app(fake)) as url:
        d = desk(events, clock, MemoryStateStore(monotonic=clock.monotonic), url, fake)
        d.rest = type(d.rest)(None, fake.account_sid, "wrong-token", url)
        await d.begin(CALLER, "vr_1", BASE)
        await d.drain()
    record = await d.transfer(CALLER)
    assert record is not None and (record.outcome, record.fallback) == ("failed", "agent")
    assert [e.outcome for e in transferred(events)] == ["failed"]
    assert not [c for c in fake.calls.values() if c.to is not None]
    events.close()


@pytest.mark.parametrize(
    ("human", "outcome", "fallback", "caller_hears"),
    [
        ("busy", "busy", Fallback.CALLBACK, "We will call you back shortly"),
        ("decline", "declined", Fallback.AGENT, "<Connect action="),
        ("no_answer", "no_answer", Fallback.VOICEMAIL, "<Record"),
        ("voicemail", "voicemail", Fallback.AGENT, "<Stream url="),
    ],
)
async def test_each_unanswered_outcome_gets_its_fallback(
    tmp_path, human: str, outcome: str, fallback: Fallback, caller_hears: str
) -> None:
    """The desk applies the fallback named for the outcome; a human's voicemail that picked
    up is hung up so it never records the conference."""
    clock = FakeClock(wall_offset_s=1_800_000_000.0)
    events = events_of_a_handed_off_call(tmp_path / "events.sqlite3", clock)
    fake = FakeTwilioREST(human=human)
    fake.add_live_call(CALLER)
    async with serve_app(build_twilio_rest_app(fake)) as url:
        d = desk(events, clock, MemoryStateStore(monotonic=clock.monotonic), url, fake)
        d.settings = replace(d.settings, fallbacks={TransferOutcome(outcome): fallback})
        await dial_and_report(d, fake)
        await fake.drain()
    record = await d.transfer(CALLER)
    assert record is not None and (record.outcome, record.fallback) == (outcome, str(fallback))
    assert caller_hears in fake.calls[CALLER].twiml[-1]
    if human == "voicemail":
        assert fake.calls[record.human_sid or ""].status == "completed"
    assert [e.outcome for e in transferred(events)] == [outcome]
    events.close()
