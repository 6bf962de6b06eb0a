"""``voicerail serve`` with its operations options, end to end.

A real server (embedded models) with ``--api-key`` and ``--database-url`` on a
real PostgreSQL: a simulated Twilio call lands in PostgreSQL, the REST API and
the metrics refuse requests without the key, ``voicerail calls`` and
``voicerail ops`` read the same store; a credential that is not set stops the
server before it loads anything, naming the credential.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from voicerail import cli
from voicerail.sim.api_client import fetch_call
from voicerail.sim.caller import CallerTurn, SimulatedTwilioCall
from voicerail.testing.callers import synthesize_caller_wav
from voicerail.testing.server import serve_process

pytestmark = pytest.mark.slow

KEY = "e2e-operations-key"


def _voicerail(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "voicerail.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_a_call_lands_in_postgres_behind_the_api_key(
    postgres_url: str, tmp_path: Path
) -> None:
    wav = synthesize_caller_wav("What are your opening hours?", tmp_path / "hours.wav")
    args = ["--agent", "examples/clinic.yaml", "--api-key", KEY, "--database-url", postgres_url]
    with serve_process(args, data_dir=tmp_path / "data") as base_url:
        # The media stream is Twilio's (signed when a token is set), not behind the key.
        media = base_url.replace("http://", "ws://") + "/twilio/media"
        result = await SimulatedTwilioCall(media).run([CallerTurn.from_wav(wav)])
        call = await fetch_call(base_url, result.call_sid, api_key=KEY)
        assert call is not None, "the call never finished in the store"

        async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as client:
            for path in ("/api/calls", f"/api/calls/{call['call_id']}", "/metrics"):
                refused = await client.get(path)
                assert refused.status_code == 401, (path, refused.status_code)
                wrong = await client.get(path, headers={"X-API-Key": "not-the-key"})
                assert wrong.status_code == 401, (path, wrong.status_code)
            metrics = await client.get("/metrics", headers={"X-API-Key": KEY})
            assert metrics.status_code == 200
            assert "voicerail_" in metrics.text
            healthz = await client.get("/healthz")
            assert healthz.status_code == 200

    kinds = [e["kind"] for e in call["events"]]
    assert kinds[0] == "CallStarted" and kinds[-1] == "CallEnded", kinds
    # The server has stopped: the rows are in PostgreSQL, not in the data dir.
    assert not (tmp_path / "data" / "events.sqlite3").exists()
    listed = _voicerail("calls", "list", "--json", "--database-url", postgres_url)
    assert listed.returncode == 0, listed.stderr
    assert call["call_id"] in [c["call_id"] for c in json.loads(listed.stdout)]
    failures = _voicerail(
        "ops", "failures", "--window", "1h", "--json", "--database-url", postgres_url
    )
    assert failures.returncode == 0, failures.stderr
    assert json.loads(failures.stdout)["now"]["calls"] >= 1


def test_serve_stops_before_loading_when_a_credential_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VOICERAIL_E2E_CRM_TOKEN", raising=False)
    registry = tmp_path / "credentials.yaml"
    registry.write_text(
        "credentials:\n  crm:\n    env: VOICERAIL_E2E_CRM_TOKEN\n    kind: crm_token\n"
    )
    status = cli.main(["serve", "--credentials", str(registry), "--data-dir", str(tmp_path / "d")])
    assert status == 2
    err = capsys.readouterr().err
    assert "'crm'" in err and "VOICERAIL_E2E_CRM_TOKEN" in err and "not set" in err
    assert not (tmp_path / "d" / "events.sqlite3").exists()
