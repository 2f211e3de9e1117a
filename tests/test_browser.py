"""A real browser on the accounts example: two devices, one ends the other, cookie attributes.

Playwright drives Debian's chromium (``apt-get install chromium``; never ``playwright install``)
against ``examples/accounts/app.py`` run as a subprocess on 127.0.0.1 with a temp SQLite store.
Without playwright or chromium the test is skipped with the reason; under ``CI=true`` it fails.
It also takes the screenshot of the devices page the docs show: docs/_static/devices.png is
written when it is missing or with ``UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

#: A real chromium through playwright: `make test` runs it, `make check` does not.
pytestmark = pytest.mark.slow

if importlib.util.find_spec("playwright") is not None:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "accounts" / "app.py"
SCREENSHOT = ROOT / "docs" / "_static" / "devices.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# Two "devices" for the devices page (and the screenshot): the user agent is all that tells
# them apart, so each context presents a common one.
LAPTOP = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
PHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
TABLET = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0"
)


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI must not skip the browser test: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def accounts_url(tmp_path: Path) -> Iterator[str]:
    """The accounts example served on 127.0.0.1, with its sessions in a temp SQLite file."""
    port = _free_port()
    env = dict(
        os.environ,
        HOST="127.0.0.1",
        PORT=str(port),
        FLASK_SESSION_STORE=f"sqlite:///{tmp_path / 'sessions.db'}",
        FLASK_SECRET_KEY=secrets.token_urlsafe(32),
    )
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, str(APP)], env=env, cwd=tmp_path, stdout=log, stderr=log
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(base + "/login", timeout=2) as response:
                        response.read()
                    break
                except OSError:
                    assert server.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, "the accounts example did not start"
                    time.sleep(0.1)
            yield base
        finally:
            server.terminate()  # by PID
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)


@pytest.fixture
def browser() -> Iterator[Browser]:
    """Debian's chromium, headless, through Playwright."""
    if importlib.util.find_spec("playwright") is None:
        _unavailable("playwright is not installed (pip install playwright; no browser download)")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} is missing (Debian package chromium; apt-get install chromium)")
    playwright = sync_playwright().start()
    try:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()
    finally:
        playwright.stop()


def device(browser: Browser, base: str, user_agent: str) -> tuple[BrowserContext, Page]:
    context = browser.new_context(
        base_url=base, user_agent=user_agent, viewport={"width": 960, "height": 450}
    )
    context.set_default_timeout(10_000)
    return context, context.new_page()


def log_in(page: Page, user: str = "alice", password: str = "wonderland") -> None:
    page.goto("/login")
    page.fill("#username", user)
    page.fill("#password", password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Hello, Alice")).to_be_visible()


def expect_login_page(page: Page) -> None:
    expect(page).to_have_url("/login?ended=1")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    expect(page.get_by_text("Your session has ended")).to_be_visible()


def screenshot_path(tmp_path: Path) -> Path:
    """docs/_static/devices.png when it is missing or UPDATE_SCREENSHOTS=1, so that a test
    run does not rewrite a file under version control; a temp file otherwise."""
    if SCREENSHOT.exists() and os.environ.get("UPDATE_SCREENSHOTS") != "1":
        return tmp_path / SCREENSHOT.name
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT


def test_devices_in_a_real_browser(browser: Browser, accounts_url: str, tmp_path: Path) -> None:
    laptop, a = device(browser, accounts_url, LAPTOP)
    phone, b = device(browser, accounts_url, PHONE)
    tablet, c = device(browser, accounts_url, TABLET)
    try:
        # Logging in twice as alice: two devices, each marked from its own side.
        log_in(a)
        log_in(b)
        a.get_by_role("link", name="Your devices", exact=True).click()
        rows = a.locator("tr.device")
        expect(rows).to_have_count(2)
        expect(a.locator('tr.device[data-this="yes"]')).to_contain_text("Firefox on Linux")
        expect(a.locator('tr.device[data-this="yes"]')).to_contain_text("this device")
        expect(a.locator('tr.device[data-this="no"]')).to_contain_text("Safari on iPhone")
        expect(rows.nth(0)).to_contain_text("127.0.0.1")
        a.screenshot(path=str(screenshot_path(tmp_path)), full_page=True)

        # The cookie the browser holds: HttpOnly, SameSite=Lax, a signed ID and nothing else.
        [cookie] = [cookie for cookie in laptop.cookies() if cookie.get("name") == "session"]
        value = cookie.get("value", "")
        assert cookie.get("httpOnly") is True
        assert cookie.get("sameSite") == "Lax"
        assert "alice" not in value.lower() and "Alice" not in value and len(value) < 100
        assert "session=" not in a.evaluate("document.cookie")

        # A ends B with B's button; B's next click lands on the login page; A stays.
        a.locator('tr.device[data-this="no"]').get_by_role("button", name="End").click()
        expect(a.get_by_text("That device is logged out")).to_be_visible()
        expect(rows).to_have_count(1)
        b.get_by_role("link", name="Your devices", exact=True).click()
        expect_login_page(b)
        a.reload()
        expect(a.locator('tr.device[data-this="yes"]')).to_have_count(1)

        # B logs in again straight away, C too; "log out everywhere else" ends both.
        log_in(b)
        log_in(c)
        a.reload()
        expect(rows).to_have_count(3)
        a.get_by_role("button", name="Log out everywhere else").click()
        expect(a.get_by_text("Logged out everywhere else (2 other devices).")).to_be_visible()
        expect(rows).to_have_count(1)
        b.reload()
        expect_login_page(b)
        c.get_by_role("link", name="Your devices", exact=True).click()
        expect_login_page(c)
        a.get_by_role("link", name="Your session", exact=True).click()
        expect(a.get_by_role("heading", name="Hello, Alice")).to_be_visible()

        # And logging out is the end of A's session as well.
        a.get_by_role("button", name="Log out").click()
        expect(a).to_have_url("/login")
        expect(a.get_by_text("You are logged out.")).to_be_visible()
    finally:
        for context in (laptop, phone, tablet):
            context.close()
