"""Issue 13's done criterion, end to end: a real ``voicerail serve`` (embedded speech models)
with HubSpot as its CRM and warm handoffs through Twilio's REST API, both local fakes that
speak the providers' protocols. A simulated caller speaks synthesized audio; the CRM
recognizes them by phone number and the agent books under the CRM's name, through the
outbox, exactly once at the CRM; then the caller asks for a person, and the human's leg
hears the summary before joining the caller's conference."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from twilio.request_validator import RequestValidator

from voicerail.sim.api_client import fetch_call, summarize
from voicerail.sim.caller import CallerTurn, SimulatedTwilioCall
from voicerail.testing.callers import synthesize_caller_wav
from voicerail.testing.fake_servers.crm import FakeHubSpot, build_hubspot_app, run_fake_crm
from voicerail.testing.fake_servers.twilio_rest import FakeTwilioREST, build_twilio_rest_app
from voicerail.testing.server import free_port, serve_process

pytestmark = pytest.mark.slow

CLINIC = Path(__file__).parents[2] / "examples" / "clinic.yaml"
PHONE = "+15551230000"
HUMAN = "+15559990000"
# Worded for the embedded recognizer: the name comes from the CRM, never from speech.
SCRIPT = [
    "I would like to book an appointment for next Tuesday at three in the afternoon.",
    "Yes, please book it.",
    "I would like to speak to someone at the front desk, please.",
]


def agent_file(tmp_path: Path) -> Path:
    """The clinic agent, allowed to see the caller's name and to fill its name slot."""
    spec = yaml.safe_load(CLINIC.read_text())
    spec["context"] = {
        "must": ["firstname", "lastname"],
        "fill": {"name": ["firstname", "lastname"]},
    }
    path = tmp_path / "clinic_crm.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def providers_file(tmp_path: Path) -> Path:
    """The embedded models with deadlines for a loaded test machine: this test is about
    the CRM and the handoff, not latency (a timed-out decode would be a turn not heard)."""
    path = tmp_path / "providers.yaml"
    path.write_text(
        "providers:\n  stt: [faster-whisper]\n  tts: [piper]\n"
        "routing:\n  stt: {ttfb_timeout_s: 15}\n  tts: {ttfb_timeout_s: 10}\n"
    )
    return path


async def wait_until(check: Any, timeout_s: float = 15.0) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def connect_action(base_url: str, call_sid: str, auth_token: str) -> str:
    """What Twilio requests when the handed-off call's stream ends (signed as Twilio does)."""
    url = f"{base_url}/twilio/connect-action"
    form = {"CallSid": call_sid, "From": PHONE}
    signature = RequestValidator(auth_token).compute_signature(url, form)
    async with httpx.AsyncClient(timeout=10.0) as client:
        answer = await client.post(url, data=form, headers={"X-Twilio-Signature": signature})
    answer.raise_for_status()
    return answer.text


async def test_a_recognized_caller_books_once_and_is_handed_off_warm(tmp_path, caller_audio):
    """Recognized by phone, booked under the CRM's name with one write at the CRM, and
    handed to a human who hears the summary (name, booking, request) before joining."""
    hubspot = FakeHubSpot(
        contacts=[
            {
                "id": "501",
                "properties": {"firstname": "Maria", "lastname": "Lopez", "phone": PHONE},
            }
        ]
    )
    twilio = FakeTwilioREST(human="answer")
    turns = [
        CallerTurn.from_wav(synthesize_caller_wav(text, caller_audio / f"crm-{n}.wav"))
        for n, text in enumerate(SCRIPT)
    ]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    async with (
        run_fake_crm(build_hubspot_app(hubspot)) as hubspot_url,
        run_fake_crm(build_twilio_rest_app(twilio)) as twilio_url,
    ):
        env = {
            **os.environ,
            "VOICERAIL_CRM": "hubspot",
            "VOICERAIL_HUBSPOT_URL": hubspot_url,
            "VOICERAIL_HUBSPOT_TOKEN": hubspot.access_token,
            "TWILIO_ACCOUNT_SID": twilio.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.auth_token,
            "VOICERAIL_TWILIO_API_URL": twilio_url,
        }
        args = [
            "--agent",
            str(agent_file(tmp_path)),
            "--providers",
            str(providers_file(tmp_path)),
            "--public-url",
            base_url,
            "--handoff-number",
            HUMAN,
            "--handoff-mode",
            "warm",
            "--handoff-from",
            "+15550001111",
        ]
        with serve_process(args, data_dir=tmp_path / "server", port=port, env=env):
            caller = SimulatedTwilioCall(
                base_url.replace("http://", "ws://") + "/twilio/media",
                custom_parameters={"from": PHONE},
            )
            result = await caller.run(turns)
            server = await fetch_call(base_url, result.call_sid)
            assert server is not None
            summary = summarize(result, server)
            assert server["outcome"] == "handoff", summary
            # Recognized: the first turn's reply confirms under the CRM's name.
            decided = [e["data"] for e in server["events"] if e["kind"] == "DialogDecided"]
            first = next(d for d in decided if "crm_known_caller" in d)
            assert first["crm_known_caller"] is True and first["crm_filled"] == ["name"]
            # (The stored text is redacted by the compliance screen: "for [redacted:name]".)
            confirm = summary["turns"][0]["agent_text"]
            assert "Shall I book it?" in confirm and " for " in confirm, summary
            booking_id = server["data"]["booking_id"]
            # Booked through the outbox: one meeting record at the CRM, created once.
            key = f"meetings/booking:{booking_id}"
            assert await wait_until(lambda: key in hubspot.records), hubspot.records
            assert hubspot.creates[key] == 1 and hubspot.duplicates == 0
            assert hubspot.records[key]["name"] == "Maria Lopez"
            # The handoff: Twilio asks what next; the caller waits in a conference.
            twilio.add_live_call(result.call_sid)
            twiml = await connect_action(base_url, result.call_sid, twilio.auth_token)
            assert f"handoff-{result.call_sid}</Conference>" in twiml
            humans = lambda: [c for c in twilio.calls.values() if c.to == HUMAN]  # noqa: E731
            assert await wait_until(lambda: len(humans()) == 1)
            (human,) = humans()
            whisper = human.said[0]
            assert whisper.startswith("Incoming transfer: Maria Lopez, a known customer."), whisper
            assert booking_id in whisper, whisper
            assert f"handoff-{result.call_sid}</Conference>" in human.twiml[0]
            # The answered callback reached the server (signed), which recorded the SLA.
            async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as client:

                async def transferred() -> list[dict[str, Any]]:
                    body = (await client.get(f"/api/calls/{server['call_id']}")).json()
                    return [e for e in body["events"] if e["kind"] == "CallTransferred"]

                for _ in range(100):
                    if events := await transferred():
                        break
                    await asyncio.sleep(0.1)
                sla = (await client.get("/api/ops/handoffs")).json()
            assert [e["outcome"] for e in events] == ["answered"], events
            assert events[0]["latency_s"] > 0
            assert twilio.callback_failures == 0
            assert sla["transfers"] == 1 and sla["outcomes"][0]["outcome"] == "answered"
