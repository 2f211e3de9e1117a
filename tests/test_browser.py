"""A real browser on the accounts example: two devices, one ends the other, cookie attributes.

Playwright drives Debian's chromium (``apt-get install chromium``; never ``playwright install``)
against ``examples/accounts/app.py`` run as a subprocess on 127.0.0.1 with a temp SQLite store.
Without playwright or chromium the test is skipped with the reason; under ``CI=true`` it fails.
It also takes the screenshot of the devices page the docs show: docs/_static/devices.png is
written when it is missing or with ``UPDATE_SCREENSHOTS=1``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from http_server import serve

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


@contextmanager
def example_server(app: Path, tmp_path: Path, ready: str, **env: str) -> Iterator[str]:
    """An example app run as ``python app.py`` on 127.0.0.1 (a new port), its sessions in a temp
    SQLite file, a random secret key, ``env`` on top; its base URL once ``ready`` answers."""
    port = _free_port()
    env = dict(
        os.environ,
        HOST="127.0.0.1",
        PORT=str(port),
        FLASK_SESSION_STORE=f"sqlite:///{tmp_path / 'sessions.db'}",
        FLASK_SECRET_KEY=secrets.token_urlsafe(32),
        **env,
    )
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, str(app)], env=env, cwd=tmp_path, stdout=log, stderr=log
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 20
            while True:
                try:
                    with urllib.request.urlopen(base + ready, timeout=2) as response:
                        response.read()
                    break
                except OSError:
                    assert server.poll() is None, log_path.read_text()
                    assert time.monotonic() < deadline, f"{app} did not start"
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
def accounts_url(tmp_path: Path) -> Iterator[str]:
    """The accounts example served on 127.0.0.1, with its sessions in a temp SQLite file."""
    with example_server(APP, tmp_path, "/login") as base:
        yield base


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


# -- the API example: a page holding its session token in memory ---------------------------------

API_APP = ROOT / "examples" / "api" / "app.py"
API_PAGE = ROOT / "examples" / "api" / "static" / "index.html"


@dataclass
class ApiSites:
    #: The API example, which also serves the page (same origin).
    api: str
    #: The same page served from another origin the API allows (CORS), and from one it does not.
    allowed: str
    refused: str


@pytest.fixture
def api_sites(tmp_path: Path) -> Iterator[ApiSites]:
    """The API example run as ``python app.py``, and two other origins serving its page with
    the API's URL filled in; the API allows the first of them (``FLASK_API_ALLOWED_ORIGINS``)."""
    api_url: list[str] = []
    elsewhere = Flask("elsewhere")

    @elsewhere.get("/")
    def page() -> str:
        return API_PAGE.read_text().replace('const API = "";', f'const API = "{api_url[0]}";')

    with serve(elsewhere) as allowed, serve(elsewhere) as refused:
        origins = json.dumps([allowed])
        with example_server(API_APP, tmp_path, "/", FLASK_API_ALLOWED_ORIGINS=origins) as api:
            api_url.append(api)
            yield ApiSites(api, allowed, refused)


def api_page(browser: Browser, url: str, user_agent: str) -> tuple[BrowserContext, Page]:
    context = browser.new_context(user_agent=user_agent)
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto(url)
    return context, page


def api_log_in(page: Page, user: str = "alice", password: str = "wonderland") -> None:
    page.fill("#user", user)
    page.fill("#password", password)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#status")).to_have_text(f"Logged in as {user.title()}.")


def click(page: Page, name: str) -> None:
    page.get_by_role("button", name=name, exact=True).click()


def test_api_tokens_in_a_real_browser(browser: Browser, api_sites: ApiSites) -> None:
    laptop, a = api_page(browser, api_sites.api + "/", LAPTOP)
    phone, b = api_page(browser, api_sites.api + "/", PHONE)
    try:
        status = a.locator("#status")
        click(a, "Who am I?")
        expect(status).to_have_text(re.compile(r"^401: Log in first"))

        # Logging in: the page takes the token from X-Session-Token, keeps it in a variable
        # and sends it as Authorization: Bearer; the browser holds no cookie and stores nothing.
        api_log_in(a)
        token = a.evaluate("token")
        assert isinstance(token, str) and len(token) == 87 and "alice" not in token.lower()
        click(a, "Who am I?")
        expect(status).to_have_text("You are Alice (call 1).")
        assert laptop.cookies() == [] and a.evaluate("document.cookie") == ""
        assert a.evaluate("localStorage.length + sessionStorage.length") == 0

        # My devices: the two logins of alice, this one marked.
        api_log_in(b)
        click(a, "My devices")
        expect(a.locator("#devices li")).to_have_count(2)
        expect(a.locator('#devices li[data-this="yes"]')).to_contain_text("Firefox")
        expect(a.locator('#devices li[data-this="no"]')).to_contain_text("iPhone")

        # Log out everywhere from the phone: the laptop's very next call is refused, and the
        # page forgets the token the API says is over.
        click(b, "Log out everywhere")
        expect(b.locator("#status")).to_have_text("Logged out everywhere (2 session(s) ended).")
        assert b.evaluate("token") is None
        click(a, "Who am I?")
        expect(status).to_have_text(re.compile(r"^401: Log in first"))
        assert a.evaluate("token") is None
        api_log_in(a)
        click(a, "Log out")
        expect(status).to_have_text("Logged out.")
        assert a.evaluate("token") is None
    finally:
        laptop.close()
        phone.close()


def test_api_tokens_from_another_origin(browser: Browser, api_sites: ApiSites) -> None:
    """A page on an origin the API allows reads the token (the session extension exposes
    X-Session-Token to CORS); one on another origin cannot call the API at all."""
    allowed, a = api_page(browser, api_sites.allowed + "/", LAPTOP)
    refused, b = api_page(browser, api_sites.refused + "/", PHONE)
    try:
        api_log_in(a, "bob", "builder")
        click(a, "Who am I?")
        expect(a.locator("#status")).to_have_text("You are Bob (call 1).")
        click(a, "Log out")
        expect(a.locator("#status")).to_have_text("Logged out.")
        assert a.evaluate("token") is None

        b.fill("#password", "wonderland")
        b.get_by_role("button", name="Log in").click()
        expect(b.locator("#status")).to_have_text(re.compile(r"^Could not reach the API"))
        assert b.evaluate("token") is None
    finally:
        allowed.close()
        refused.close()
