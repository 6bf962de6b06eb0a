"""The dashboard in headless Chromium (Debian's chromium + chromedriver, via selenium):
sign-in, the four answers, call list filters, and the waterfall of one call."""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

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
from voicerail.testing.call_generator import events_for, plan_calls, store_calls
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
PLANS = list(plan_calls(31, 150, start_s=NOW - 14 * DAY_S, end_s=NOW))
KEY = "browser-test-key"


@pytest.fixture(scope="module")
def store_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser") / "events.sqlite3"


@pytest.fixture(scope="module")
def base_url(store_path) -> Iterator[str]:
    """A real uvicorn server on loopback over a seeded store, with an API key."""
    store = SQLiteEventStore(store_path)
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
    with serve_in_thread(app) as url:
        yield url
    store.close()


@pytest.fixture(scope="module")
def browser():
    with headless_chromium(window_size="1280,1800") as driver:
        yield driver


def submit_and_wait(browser, button: str) -> None:
    """Click the first element ``button`` selects and wait for the next page."""
    click_and_wait(browser, css(browser, button)[0])


def sign_in(browser, base_url: str) -> None:
    browser.get(f"{base_url}/login")
    browser.delete_all_cookies()
    browser.get(f"{base_url}/dashboard")
    assert browser.current_url.startswith(f"{base_url}/login")
    css(browser, "input[name=secret]")[0].send_keys(KEY)
    submit_and_wait(browser, "button[type=submit]")


def test_sign_in_and_the_four_answers_load(browser, base_url, tmp_path):
    sign_in(browser, base_url)
    assert browser.current_url == f"{base_url}/dashboard"
    browser.get(f"{base_url}/dashboard?window=7d")
    for section in ("failures", "cost", "last-failed", "halve", "health"):
        assert css(browser, f"section#{section}"), section
    assert len(css(browser, "svg.failure-bars g.bar-row")) >= 3
    assert css(browser, "table.causes tbody tr")
    browser.save_screenshot(str(tmp_path / "dashboard.png"))


def test_filters_narrow_the_call_list(browser, base_url):
    from selenium.webdriver.support.ui import Select

    sign_in(browser, base_url)
    browser.get(f"{base_url}/dashboard/calls")
    everything = len(css(browser, "table.calls tbody tr"))
    Select(css(browser, "#filter-outcome")[0]).select_by_value("failed")
    Select(css(browser, "#filter-since")[0]).select_by_value("")
    submit_and_wait(browser, "#apply-filters")
    assert "outcome=failed" in browser.current_url
    outcomes = [e.get_attribute("data-outcome") for e in css(browser, "span.outcome")]
    expected = sum(p.outcome == "failed" for p in PLANS)
    assert outcomes == ["failed"] * expected and expected < everything
    Select(css(browser, "#filter-outcome")[0]).select_by_value("")
    Select(css(browser, "#filter-provider")[0]).select_by_value("piper")
    submit_and_wait(browser, "#apply-filters")
    ids = {e.text for e in css(browser, "a.call-link")}
    assert ids == {p.call_id for p in PLANS if any(a.provider == "piper" for a in p.attempts)}


def test_the_waterfall_renders_stages_failovers_and_the_first_failure(browser, base_url, tmp_path):
    sign_in(browser, base_url)
    recovered = next(p for p in PLANS if p.scenario == "tts_recovered")
    browser.get(f"{base_url}/dashboard/calls/{recovered.call_id}")
    bars = css(browser, "svg.waterfall rect.wf-bar")
    _, events = events_for(recovered)
    assert len(bars) == sum(e.latency_s is not None and e.stage is not None for e in events)
    assert all(bar.size["width"] >= 1 for bar in bars)  # laid out by the browser
    stages = {g.get_attribute("data-stage") for g in css(browser, "svg.waterfall g.wf-row")}
    assert {"stt", "llm", "tts", "dialog"} <= stages
    assert len(css(browser, "svg.waterfall g.wf-failover")) == 1
    xs = [bar.location["x"] for bar in bars]
    assert xs != sorted(xs, reverse=True) and max(xs) > min(xs)  # spread on the time axis
    assert "caller: I'd like to book a visit" in css(browser, "#transcript")[0].text
    browser.save_screenshot(str(tmp_path / "call.png"))
    failed = next(p for p in PLANS if p.scenario == "tts_failed")
    browser.get(f"{base_url}/dashboard/calls/{failed.call_id}")
    assert len(css(browser, "tr.first-failure")) == 1
    assert "first failing stage" in css(browser, "main")[0].text


def test_the_overview_and_the_api_read_the_rollups(browser, base_url, store_path):
    """Issue 16: a marker added to the day rollups (not to the events) shows on the
    page and in ``/api/ops``; removing it restores the figure the events give."""
    from voicerail.events.rollups import bucket_of

    def calls_on_page() -> int:
        browser.get(f"{base_url}/dashboard?window=7d")
        text = css(browser, "section#failures")[0].text
        return int(re.search(r"of (\d+) calls failed", text).group(1))

    def api_answer() -> dict:
        return browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/api/ops/failures?window=7d').then(r => r.json()).then(done);"
        )["now"]

    def calls_in_api() -> int:
        return api_answer()["calls"]

    sign_in(browser, base_url)
    window = api_answer()  # whole minutes, ending with the current one
    expected = sum(window["start_s"] <= p.started_at < window["end_s"] for p in PLANS)
    assert calls_on_page() == calls_in_api() == expected
    day = bucket_of(NOW - 3 * DAY_S, 86400)
    db = sqlite3.connect(store_path)
    try:
        with db:
            db.execute(
                "INSERT INTO rollup_calls VALUES (86400, ?, 'rollup-marker', 'failed', 1000)",
                (day,),
            )
        assert calls_on_page() == calls_in_api() == expected + 1000
        with db:
            db.execute("DELETE FROM rollup_calls WHERE agent = 'rollup-marker'")
        assert calls_on_page() == expected
    finally:
        db.close()
