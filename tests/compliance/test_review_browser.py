"""The review page in headless Chromium (Debian's chromium + chromedriver, via selenium):
a reviewer signs in, opens the QA sample and labels a call; the label is an event and
both the read and the label are in a verifying audit log."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from voicerail.compliance.audit import AuditLog
from voicerail.compliance.policy import SamplingPolicy
from voicerail.compliance.review_http import ReviewPage, review_routes
from voicerail.events.model import EventKind
from voicerail.events.store import SQLiteEventStore
from voicerail.ops.credentials import DAY_S
from voicerail.server.app import ServerSettings, create_app
from voicerail.server.auth import AccessSettings
from voicerail.server.operations import OperationsSettings
from voicerail.session.runtime import Runtime
from voicerail.testing.browser import (
    CHROMEDRIVER,
    CHROMIUM,
    click_and_wait,
    css,
    headless_chromium,
    serve_in_thread,
)
from voicerail.testing.call_generator import plan_calls, store_calls
from voicerail.testing.clock import FakeClock
from voicerail.testing.doubles import QuietAgent, SilentSTT, SilentTTS

# CI installs selenium, chromium and chromium-driver (`make setup`): there, never skip.
if not os.environ.get("CI"):
    pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="Debian's chromium and chromium-driver are not installed (make setup installs them)",
)

NOW = 1_800_000_000.0
PLANS = list(plan_calls(11, 60, start_s=NOW - 6 * DAY_S, end_s=NOW))
KEY = "review-browser-key"


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple[str, SQLiteEventStore, Path]]:
    """A real uvicorn server with the dashboard, its login and the review page, as
    ``voicerail serve`` wires them."""
    folder = tmp_path_factory.mktemp("review")
    store = SQLiteEventStore(folder / "events.sqlite3")
    store_calls(store, PLANS)
    runtime = Runtime(
        agent=QuietAgent(),
        stt=SilentSTT(),
        tts=SilentTTS(),
        events=store,
        clock=FakeClock(wall_offset_s=NOW),
    )
    operations = OperationsSettings(access=AccessSettings(api_key=KEY), credentials=[])
    app = create_app(runtime, ServerSettings(operations=operations))
    audit_path = folder / "audit.sqlite3"
    page = ReviewPage(lambda: runtime.events, lambda: NOW, audit_path, SamplingPolicy())
    app.router.routes.extend(review_routes(page))
    with serve_in_thread(app) as base_url:
        yield base_url, store, audit_path
    store.close()


@pytest.fixture(scope="module")
def browser():
    with headless_chromium(window_size="1400,1800") as driver:
        yield driver


def test_a_reviewer_labels_a_sampled_call(browser, served, tmp_path):
    from selenium.webdriver.support.ui import Select

    base_url, store, audit_path = served
    browser.get(f"{base_url}/login")
    browser.delete_all_cookies()
    browser.get(f"{base_url}/dashboard/review")
    assert browser.current_url.startswith(f"{base_url}/login")  # behind the login
    css(browser, "input[name=secret]")[0].send_keys(KEY)
    click_and_wait(browser, css(browser, "button[type=submit]")[0])
    assert browser.current_url == f"{base_url}/dashboard/review"
    rows = css(browser, "table#review tr[id^=review-]")
    failed = {p.call_id for p in PLANS if p.outcome == "failed"}
    shown = {r.get_attribute("id").removeprefix("review-") for r in rows}
    assert failed and failed <= shown

    row = rows[0]
    call_id = row.get_attribute("id").removeprefix("review-")
    Select(row.find_element("css selector", "select[name=label]")).select_by_value("misheard")
    row.find_element("css selector", "input[name=reviewer]").send_keys("alice")
    click_and_wait(browser, row.find_element("css selector", "button[type=submit]"))
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
