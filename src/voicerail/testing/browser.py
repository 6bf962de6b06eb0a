"""Driving the server's pages in headless Chromium, for the browser tests.

Debian's ``chromium`` and ``chromium-driver`` through selenium (the ``dev`` extra;
``make setup`` installs both). The pages are server-rendered, so a page is
complete when its document has loaded: :func:`wait_for_next_page` waits for that,
with a deadline, instead of sleeping.

Selenium is imported inside the functions: importing this module never needs it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from voicerail.testing.server import free_port

CHROMIUM = shutil.which("chromium")
"""Path of Debian's chromium, or None where it is not installed."""
CHROMEDRIVER = shutil.which("chromedriver")
"""Path of Debian's chromium-driver, or None where it is not installed."""

_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


@contextlib.contextmanager
def headless_chromium(window_size: str = "1280,1800") -> Iterator[Any]:
    """Yield a selenium ``webdriver.Chrome`` on a fresh, throw-away profile.

    Args:
        window_size: ``"width,height"`` in CSS pixels.

    Raises:
        selenium.common.exceptions.WebDriverException: chromium or its driver
            would not start.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM or ""
    profile = tempfile.mkdtemp(prefix="voicerail-chromium-")
    for flag in (*_FLAGS, f"--window-size={window_size}", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(0)  # pages are server-rendered: complete when get() returns
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def css(driver: Any, selector: str) -> list[Any]:
    """The elements matching a CSS selector on the current page (maybe none)."""
    return list(driver.find_elements("css selector", selector))


def wait_for_next_page(driver: Any, origin: float, timeout_s: float = 10.0) -> None:
    """Wait until a new document (a different ``performance.timeOrigin``) has loaded.

    Chromium's driver can answer a staleness check on the old page with an
    inspector error instead of "stale", so the new document is detected directly.

    Raises:
        selenium.common.exceptions.TimeoutException: no new page in ``timeout_s``.
    """
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def loaded(driver: Any) -> bool:
        try:
            state = driver.execute_script("return [performance.timeOrigin, document.readyState]")
        except WebDriverException:
            return False
        return bool(state[0] != origin and state[1] == "complete")

    WebDriverWait(driver, timeout_s).until(loaded)


def click_and_wait(driver: Any, element: Any) -> None:
    """Click ``element`` (a submit button or link) and wait for the page it loads.

    Raises:
        selenium.common.exceptions.TimeoutException: no new page in 10 s.
    """
    origin = driver.execute_script("return performance.timeOrigin")
    element.click()
    wait_for_next_page(driver, origin)


@contextlib.contextmanager
def serve_in_thread(app: Any, startup_timeout_s: float = 10.0) -> Iterator[str]:
    """Serve an ASGI ``app`` with uvicorn on a loopback port in a daemon thread.

    Yields the base URL (``http://127.0.0.1:<port>``); stops the server after,
    waiting at most 10 s for its thread.

    Raises:
        RuntimeError: the server had not started in ``startup_timeout_s``.
    """
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        if not server.started:
            raise RuntimeError(f"uvicorn did not start in {startup_timeout_s} s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
