"""End to end over SIP: ``voicerail serve --sip`` answered by real SIP clients from
Debian. baresip dials the agent with a WAV as its microphone and books an
appointment; SIPp places concurrent calls that admission answers or refuses
(486/503), and sends malformed requests that get 400 beside a call that goes on."""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from voicerail.demo import DEMO_SCRIPT
from voicerail.sim.audio import load_pcm8k
from voicerail.testing.callers import recorded_prompt, synthesize_caller_wav
from voicerail.testing.server import serve_process

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("baresip") is None or shutil.which("sipp") is None,
        reason="needs Debian's baresip and sip-tester (make deps)",
    ),
]

SCENARIOS = Path(__file__).parent / "sipp"
MAX_CALLS = 3
# Seconds of silence before each caller turn: the greeting is ~11 s, a reply under 6 s.
GAPS_S = (13.0, 8.0, 8.0, 8.0, 8.0, 8.0)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def sip_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    """(base URL, SIP port, data dir) of a clinic server answering SIP too."""
    data_dir = tmp_path_factory.mktemp("sip-server")
    port = _free_udp_port()
    args = ["--agent", "examples/clinic.yaml", "--sip", f"127.0.0.1:{port}"]
    with serve_process([*args, "--max-calls", str(MAX_CALLS)], data_dir=data_dir) as base_url:
        yield base_url, port, data_dir


def _sip_calls(base_url: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{base_url}/api/calls", params={"limit": 200}, timeout=10).json()
    rows = body if isinstance(body, list) else body["calls"]
    return [r for r in rows if (r.get("data") or {}).get("transport") == "sip"]


def _caller_wav(work_dir: Path) -> Path:
    """The demo caller's turns in one 8 kHz WAV, each after a silence (GAPS_S)
    and padded to whole 20 ms frames."""
    parts = []
    for index, ((kind, content), gap_s) in enumerate(zip(DEMO_SCRIPT, GAPS_S, strict=True)):
        if kind == "recorded":
            path = recorded_prompt(content)
        else:
            path = synthesize_caller_wav(content, work_dir / f"turn-{index}.wav")
        pcm = load_pcm8k(path)
        # Each turn starts on a 20 ms frame, as the simulated callers send it: the
        # embedded Whisper hears a turn shifted by a few ms differently.
        pcm += b"\0" * (-len(pcm) % 320)
        parts += [b"\0\0" * int(8000 * gap_s), pcm]
    parts.append(b"\0\0" * 8000 * 20)  # the agent hangs up during this
    out = work_dir / "caller.wav"
    with wave.open(str(out), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"".join(parts))
    return out


def _baresip_config(directory: Path, wav: Path) -> None:
    """baresip with aufile as its microphone, no sound card, auto answer off."""
    port = _free_udp_port()
    (directory / "config").write_text(
        f"sip_listen 127.0.0.1:{port}\n"
        f"audio_source aufile,{wav}\n"
        "audio_player aubridge,nowhere\n"
        "audio_alert aubridge,nowhere\n"
        "module_path /usr/lib/baresip/modules\n"
        "module aufile.so\nmodule aubridge.so\nmodule g711.so\n"
        "module_app account.so\nmodule_app menu.so\n"
    )
    (directory / "accounts").write_text(
        f"<sip:caller@127.0.0.1:{port}>;regint=0;answermode=manual;audio_codecs=PCMU\n"
    )


def _wait_for_end(base_url: str, known: set[str], deadline_s: float) -> dict[str, Any]:
    """The first new SIP call once it has an outcome (polling the REST API)."""
    while time.monotonic() < deadline_s:
        for row in _sip_calls(base_url):
            if row["call_id"] not in known and row.get("outcome"):
                return row
        time.sleep(1.0)
    raise AssertionError("the sip call never ended")


def _ended_calls(base_url: str, known: set[str]) -> list[dict[str, Any]]:
    """The new SIP calls, once every one of them has an outcome (rows are written
    at the start of a call and again at its end)."""
    deadline_s = time.monotonic() + 30
    while True:
        rows = [r for r in _sip_calls(base_url) if r["call_id"] not in known]
        if all(r.get("outcome") for r in rows) or time.monotonic() > deadline_s:
            return rows
        time.sleep(0.5)


def test_baresip_books_an_appointment(sip_server, tmp_path):
    """baresip dials sip:agent@…; its WAV microphone books; the agent hangs up with BYE."""
    base_url, port, data_dir = sip_server
    _baresip_config(tmp_path, _caller_wav(tmp_path))
    known = {row["call_id"] for row in _sip_calls(base_url)}
    log = (tmp_path / "baresip.log").open("wb")
    baresip = subprocess.Popen(
        ["baresip", "-f", str(tmp_path), "-e", f"/dial sip:agent@127.0.0.1:{port}", "-t", "150"],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    try:
        row = _wait_for_end(base_url, known, time.monotonic() + 150)
    finally:
        baresip.terminate()
        baresip.wait(timeout=10)
        log.close()
    call = httpx.get(f"{base_url}/api/calls/{row['call_id']}", timeout=10).json()
    kinds = [e["kind"] for e in call["events"]]
    assert call["outcome"] == "completed", kinds
    assert "BookingWritten" in kinds and "MarkPlayed" in kinds
    booking_id = call["data"]["booking_id"]
    with sqlite3.connect(data_dir / "bookings.sqlite3") as db:
        rows = db.execute("SELECT * FROM bookings").fetchall()
    assert any(booking_id in map(str, r) for r in rows)
    # The agent ended the call: baresip was told with a BYE.
    assert "Connection reset by peer" in (tmp_path / "baresip.log").read_text(errors="replace")


def _sipp(scenario: str, port: int, *extra: str, timeout_s: float = 90) -> subprocess.Popen[bytes]:
    argv = ["sipp", "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1"]
    argv += ["-p", str(_free_udp_port()), "-mp", str(_free_udp_port())]
    argv += ["-nostdin", "-timeout", f"{int(timeout_s)}s", *extra, f"127.0.0.1:{port}"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sipp_load_is_answered_or_refused_cleanly(sip_server):
    """Twice the capacity at once: every call ends its scenario (200 then BYE, or 486/503)."""
    base_url, port, _ = sip_server
    known = {row["call_id"] for row in _sip_calls(base_url)}
    calls = 2 * MAX_CALLS
    sipp = _sipp("load.xml", port, "-m", str(calls), "-l", str(calls), "-r", "50", "-d", "2000")
    _, stderr = sipp.communicate(timeout=120)
    assert sipp.returncode == 0, stderr.decode(errors="replace")
    answered = _ended_calls(base_url, known)
    assert 1 <= len(answered) <= MAX_CALLS
    assert all(r["outcome"] == "abandoned" for r in answered)  # the caller hung up


def test_sipp_malformed_requests_get_400_beside_a_call_that_goes_on(sip_server):
    """Malformed requests are answered 400 (and a stray BYE 481) while a parallel call
    is answered, held for 4 s and hung up normally."""
    base_url, port, _ = sip_server
    known = {row["call_id"] for row in _sip_calls(base_url)}
    call = _sipp("load.xml", port, "-m", "1", "-d", "4000")
    time.sleep(1.0)
    bad = _sipp("malformed.xml", port, "-m", "3", "-l", "3", "-r", "10")
    _, bad_err = bad.communicate(timeout=60)
    _, call_err = call.communicate(timeout=60)
    assert bad.returncode == 0, bad_err.decode(errors="replace")
    assert call.returncode == 0, call_err.decode(errors="replace")
    [parallel] = _ended_calls(base_url, known)
    assert parallel["outcome"] == "abandoned" and parallel["error"] is None
