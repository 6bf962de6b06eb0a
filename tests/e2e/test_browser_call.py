"""End to end from a browser: headless Chromium opens ``/call`` on a real
``voicerail serve --browser-calls`` (embedded models), its fake microphone plays
the whole caller script from one WAV, and the clinic agent books an appointment;
the page shows the live transcript."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from voicerail.sim.api_client import fetch_call
from voicerail.testing.callers import caller_script_wav
from voicerail.testing.server import serve_process

if not os.environ.get("CI"):
    pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
        reason="Debian's chromium and chromium-driver are not installed (make setup installs them)",
    ),
]

# The fake microphone cannot wait for the agent: each line is followed by a pause
# longer than the agent's reply (the greeting, about 15 s, first), and the file
# ends in a long silence, so that the loop Chromium plays never reaches the start
# again before the agent hangs up. The server reprompts only after 30 s of
# silence (and hangs up after 60 s), so that a reprompt never races the next line.
SCRIPT = [
    "I would like to book an appointment.",
    "Next Tuesday at three in the afternoon.",
    "My name is Maria Lopez.",
    "Yes, please book it.",
    "No, that's all. Thank you, goodbye.",
]
GREETING_S = 22.0
REPLY_S = 12.0
TAIL_S = 60.0


@pytest.fixture(scope="module")
def browser_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(base URL, data dir) of a clinic agent server with the call page on."""
    data_dir = tmp_path_factory.mktemp("browser-calls")
    args = [
        "--agent",
        "examples/clinic.yaml",
        "--browser-calls",
        "--reprompt-after",
        "30",
        "--hangup-after",
        "60",
    ]
    with serve_process(args, data_dir=data_dir) as base_url:
        yield base_url, data_dir


@contextmanager
def open_chromium(wav: Path) -> Iterator[Any]:
    """Headless Chromium whose microphone plays ``wav`` (looping)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM or ""
    profile = tempfile.mkdtemp(prefix="voicerail-chromium-")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--autoplay-policy=no-user-gesture-required",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Any]:
    wav = caller_script_wav(
        SCRIPT, tmp_path / "caller.wav", lead_s=GREETING_S, pause_s=REPLY_S, tail_s=TAIL_S
    )
    with open_chromium(wav) as driver:
        yield driver


def state(driver: Any) -> str:
    return str(driver.execute_script("return document.getElementById('status').dataset.state"))


def transcript_lines(driver: Any) -> list[list[str]]:
    return list(
        driver.execute_script(
            "return [...document.querySelectorAll('#transcript li')]"
            ".map(li => [li.className, li.textContent])"
        )
    )


def test_a_booking_call_from_the_browser_page(browser_server, chromium):
    """The page's call books the appointment; both sides' turns show in its transcript."""
    from selenium.webdriver.support.ui import WebDriverWait

    base_url, data_dir = browser_server
    chromium.get(f"{base_url}/call")
    chromium.find_element("css selector", "#call").click()

    WebDriverWait(chromium, 30).until(lambda d: state(d) in ("in-call", "ended", "failed"))
    call_ref = chromium.execute_script("return document.getElementById('status').dataset.callRef")
    assert call_ref, chromium.find_element("css selector", "#status").text
    WebDriverWait(chromium, 300, poll_frequency=1).until(lambda d: state(d) in ("ended", "failed"))
    status = chromium.find_element("css selector", "#status").text
    lines = transcript_lines(chromium)

    server = asyncio.run(fetch_call(base_url, call_ref))
    assert server is not None, "the server never finished recording the call"
    transcript = "\n".join(f"{role}: {text}" for role, text in lines)
    heard = [  # what the server made of each caller turn, for a failure's message
        (e["kind"], e["data"].get("num_words"), e["data"].get("confidence"))
        for e in server["events"]
        if e["kind"] in ("TranscriptFinal", "BargeIn", "UserTurnEnded")
    ]
    transcript += f"\n{heard}"
    assert server["outcome"] == "completed", f"{status}\n{transcript}"
    assert server["data"]["transport"] == "browser"
    assert status == "call ended"  # closed by the agent with 1000, not for a fault
    assert "booking_id" in server["data"], f"{status}\n{transcript}"
    booking_id = server["data"]["booking_id"]
    with sqlite3.connect(data_dir / "bookings.sqlite3") as db:
        rows = db.execute("SELECT * FROM bookings").fetchall()
    assert any(booking_id in map(str, row) for row in rows)
    kinds = [e["kind"] for e in server["events"]]
    assert "MarkPlayed" in kinds and "BookingWritten" in kinds  # the page played the marks
    roles = [role for role, _ in lines]
    assert roles.count("caller") >= 4 and roles.count("agent") >= 5, transcript
    assert any("tuesday" in text.lower() for role, text in lines if role == "caller"), transcript
    # The page measured what its caller heard: one latency per reply after speech.
    latencies = chromium.execute_script("return window.voicerailCall.latencies")
    assert len(latencies) >= 4 and all(s > 0 for s in latencies), latencies


def test_a_barge_in_clears_the_pages_queue_and_its_hang_up_ends_the_call(browser_server, tmp_path):
    """The caller talks over the greeting: the server clears, the page drops its
    queue and says so without a protocol error, the turn is answered, and the
    page's Hang up button ends the call."""
    from selenium.webdriver.support.ui import WebDriverWait

    base_url, _ = browser_server
    wav = caller_script_wav(SCRIPT[:1], tmp_path / "barge.wav", lead_s=5.0, pause_s=60.0, tail_s=0)
    with open_chromium(wav) as driver:
        driver.get(f"{base_url}/call")
        driver.find_element("css selector", "#call").click()
        WebDriverWait(driver, 30).until(lambda d: state(d) in ("in-call", "ended", "failed"))
        call_ref = driver.execute_script("return document.getElementById('status').dataset.callRef")
        # The greeting, then the answer to the caller's line (after the barge-in).
        WebDriverWait(driver, 120, poll_frequency=0.5).until(
            lambda d: (
                [role for role, _ in transcript_lines(d)][-2:] == ["caller", "agent"]
                or state(d) != "in-call"
            )
        )
        lines = transcript_lines(driver)
        driver.find_element("css selector", "#hangup").click()
        WebDriverWait(driver, 30).until(lambda d: state(d) == "ended")
    server = asyncio.run(fetch_call(base_url, call_ref))
    assert server is not None, "the server never finished recording the call"
    kinds = [e["kind"] for e in server["events"]]
    assert "BargeIn" in kinds, (kinds, lines)
    assert "ProtocolErrorReceived" not in kinds, server["events"]
    assert [role for role, _ in lines] == ["agent", "caller", "agent"], lines
    assert server["outcome"] == "abandoned" and server["data"]["transport"] == "browser"
