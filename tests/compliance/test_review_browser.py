"""The review page in headless Chromium (Debian's chromium + chromedriver, via selenium):
a reviewer signs in, opens the QA sample and labels a call; the label is an event and
both the read and the label are in a verifying audit log."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from voicerail.compliance.audit import AuditLog
from voicerail.compliance.policy import SamplingPolicy
from voicerail.compliance.review_http import ReviewPage, review_routes
from voicerail.events.model import EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.ops.credentials import DAY_S
from voicerail.providers.base import STTCapabilities, Transcript, TTSCapabilities, TTSChunk
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.auth import AccessSettings
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import Runtime
from voicerail.testing.call_generator import events_for, plan_calls
from voicerail.testing.clock import FakeClock

# CI installs selenium, chromium and chromium-driver (`make setup`): there, never skip.
if not os.environ.get("CI"):
    pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="Debian's chromium and chromium-driver are not installed (make setup installs them)",
)

NOW = 1_800_000_000.0
PLANS = list(plan_calls(11, 60, start_s=NOW - 6 * DAY_S, end_s=NOW))
KEY = "review-browser-key"


class NoSTT:
    name, model, capabilities = "none", "none", STTCapabilities()

    async def transcribe(
        self, audio, *, sample_rate_hz, language="en"
    ) -> AsyncIterator[Transcript]:
        yield Transcript("", is_final=True)


class NoTTS:
    name, model, capabilities = "none", "none", TTSCapabilities(sample_rate_hz=8000)

    async def synthesize(self, text: str) -> AsyncIterator[TTSChunk]:
        yield TTSChunk(b"", 8000, text)


class NoAgent:
    name = "none"

    def new_dialog(self, call_id: str):
        raise AssertionError("no calls in these tests")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, SQLiteEventStore, Path]]:
    """A real uvicorn server with the dashboard, its login and the review page, as
    ``voicerail serve`` wires them."""
    import uvicorn

    folder = tmp_path_factory.mktemp("review")
    store = SQLiteEventStore(folder / "events.sqlite3")
    for plan in PLANS:
        call, events = events_for(plan)
        store.save_call(call)
        for e in events:
            store.append(e)
    runtime = Runtime(
        agent=NoAgent(), stt=NoSTT(), tts=NoTTS(), events=store, clock=FakeClock(wall_offset_s=NOW)
    )
    operations = OperationsSettings(access=AccessSettings(api_key=KEY), credentials=[])
    app = create_app(runtime, ServerSettings(operations=operations))
    audit_path = folder / "audit.sqlite3"
    page = ReviewPage(lambda: runtime.events, lambda: NOW, audit_path, SamplingPolicy())
    app.router.routes.extend(review_routes(page))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", store, audit_path
    server.should_exit = True
    thread.join(timeout=10)
    store.close()


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM or ""
    profile = tempfile.mkdtemp(prefix="voicerail-chromium-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1800",
                 f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(0)  # pages are server-rendered: complete when get() returns
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def css(driver, selector: str):
    return driver.find_elements("css selector", selector)


def submit_and_wait(browser, element) -> None:
    """Click a submit button and wait until a new document has loaded."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    origin = browser.execute_script("return performance.timeOrigin")
    element.click()

    def loaded(driver) -> bool:
        try:
            state = driver.execute_script("return [performance.timeOrigin, document.readyState]")
        except WebDriverException:
            return False
        return state[0] != origin and state[1] == "complete"

    WebDriverWait(browser, 10).until(loaded)


def test_a_reviewer_labels_a_sampled_call(browser, served, tmp_path):
    from selenium.webdriver.support.ui import Select

    base_url, store, audit_path = served
    browser.get(f"{base_url}/login")
    browser.delete_all_cookies()
    browser.get(f"{base_url}/dashboard/review")
    assert browser.current_url.startswith(f"{base_url}/login")  # behind the login
    css(browser, "input[name=secret]")[0].send_keys(KEY)
    submit_and_wait(browser, css(browser, "button[type=submit]")[0])
    assert browser.current_url == f"{base_url}/dashboard/review"
    rows = css(browser, "table#review tr[id^=review-]")
    failed = {p.call_id for p in PLANS if p.outcome == "failed"}
    shown = {r.get_attribute("id").removeprefix("review-") for r in rows}
    assert failed and failed <= shown

    row = rows[0]
    call_id = row.get_attribute("id").removeprefix("review-")
    Select(row.find_element("css selector", "select[name=label]")).select_by_value("misheard")
    row.find_element("css selector", "input[name=reviewer]").send_keys("alice")
    submit_and_wait(browser, row.find_element("css selector", "button[type=submit]"))
    assert css(browser, "p.saved")[0].text == f"Saved the label of {call_id}."
    current = css(browser, f"tr#review-{call_id} td.current")[0].text
    assert current == "misheard (alice)"
    browser.save_screenshot(str(tmp_path / "review.png"))

    labelled = [e for e in store.events(call_id) if e.kind == EventKind.REVIEW_LABELED]
    assert [(e.data["label"], e.data["reviewer"]) for e in labelled] == [("misheard", "alice")]
    log = AuditLog(audit_path)
    try:
        assert log.verify().problems == []
        entries = [(e.action, e.target) for e in log.entries()]
        actors = {e.actor for e in log.entries()}
    finally:
        log.close()
    assert entries == [("review.list", "/dashboard/review"), ("call.labeled", call_id),
                       ("review.list", "/dashboard/review")]  # fmt: skip
    assert actors == {"dashboard:127.0.0.1"}
