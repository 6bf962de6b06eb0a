"""A call answered through a real nginx (TLS, WebSocket upgrade, X-Forwarded-*) in
front of ``voicerail serve --workers 2``, with Twilio's signature checked against the
public URL, as Twilio would call it."""

from __future__ import annotations

import asyncio
import ssl
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from twilio.request_validator import RequestValidator

from voicerail.sim.caller import CallerTurn, SimulatedTwilioCall
from voicerail.testing.callers import synthesize_caller_wav
from voicerail.testing.nginx import nginx_process, self_signed_cert
from voicerail.testing.server import free_port, serve_subprocess, worker_pids

pytestmark = pytest.mark.slow
TOKEN = "proxy-test-auth-token"


async def ended_row(client: httpx.AsyncClient, call_sid: str, timeout_s: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = (await client.get("/api/calls", params={"call_sid": call_sid})).json()["calls"]
        if rows and rows[0]["ended_at"] is not None:
            return rows[0]
        await asyncio.sleep(0.1)
    raise AssertionError(f"call {call_sid} did not end in {timeout_s} s")


async def test_a_call_through_nginx_on_two_workers_with_the_signature_of_the_public_url(
    tmp_path: Path, caller_audio: Path, monkeypatch: pytest.MonkeyPatch
):
    """Signed webhook → TwiML naming the public wss URL → media stream upgraded by
    nginx → the agent answers; a signature over any other URL is refused."""
    cert, key = self_signed_cert(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # the caller's default TLS context trusts it
    tls = ssl.create_default_context(cafile=str(cert))
    args = ["--workers", "2", "--forwarded-allow-ips", "127.0.0.1", "--twilio-auth-token", TOKEN]
    with serve_subprocess(args, data_dir=tmp_path / "server") as (base_url, _):
        pids = worker_pids(base_url, 2)
        port = free_port()
        upstream = base_url.removeprefix("http://")
        with nginx_process(
            tmp_path / "nginx", listen_port=port, upstream=upstream, cert=cert, key=key
        ) as nginx_dir:
            public = f"https://localhost:{port}"
            form = {"CallSid": "CAproxy1", "From": "+15550100", "To": "+15550199"}
            signature = RequestValidator(TOKEN).compute_signature(f"{public}/twilio/voice", form)
            async with httpx.AsyncClient(base_url=public, verify=tls, timeout=10.0) as client:
                internal = RequestValidator(TOKEN).compute_signature(
                    f"{base_url}/twilio/voice", form
                )
                refused = await client.post(
                    "/twilio/voice", data=form, headers={"X-Twilio-Signature": internal}
                )
                assert refused.status_code == 403, refused.text
                answer = await client.post(
                    "/twilio/voice", data=form, headers={"X-Twilio-Signature": signature}
                )
                assert answer.status_code == 200, answer.text
                stream = ET.fromstring(answer.text).find("Connect/Stream")
                assert stream is not None, answer.text
                assert stream.get("url") == f"wss://localhost:{port}/twilio/media"
                params = {p.get("name", ""): p.get("value", "") for p in stream}

                wav = synthesize_caller_wav("What are your opening hours?", caller_audio / "h.wav")
                caller = SimulatedTwilioCall(
                    stream.get("url", ""), call_sid=form["CallSid"], custom_parameters=params
                )
                result = await caller.run([CallerTurn.from_wav(wav)])
                assert result.refused is None and not result.protocol_errors
                assert len(result.replies) >= 2, result.replies  # greeting, then the answer

                row = await ended_row(client, form["CallSid"])
                assert row["worker_pid"] in pids, (row, pids)
                assert row["outcome"] != "failed", row
        access = (nginx_dir / "access.log").read_text()
        assert '"GET /twilio/media HTTP/1.1" 101' in access, access
        assert '"POST /twilio/voice HTTP/1.1" 200' in access, access
