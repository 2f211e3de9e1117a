"""The accounts example (examples/accounts/app.py), through Flask's test client."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from flask_serversession import ServerSession, SessionInfo

ROOT = Path(__file__).resolve().parent.parent
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)
WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/126.0.0.0 Safari/537.36 Edg/126.0.0.0"
)


@pytest.fixture(scope="module")
def accounts() -> ModuleType:
    """examples/accounts/app.py, imported from its path (importing creates no app)."""
    spec = importlib.util.spec_from_file_location(
        "accounts_example_app", ROOT / "examples" / "accounts" / "app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Flask finds the templates next to the module's file
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def app(accounts: ModuleType, tmp_path: Path) -> Flask:
    created: Flask = accounts.create_app(
        {"TESTING": True, "SESSION_STORE": f"sqlite:///{tmp_path / 'sessions.db'}"}
    )
    return created


def sessions_of(app: Flask, user: str) -> list[SessionInfo]:
    """The user's live sessions, as the example's management API sees them."""
    return ServerSession.manager(app).sessions_of(user)


def client(app: Flask, user_agent: str = FIREFOX) -> FlaskClient:
    browser = app.test_client()
    browser.environ_base["HTTP_USER_AGENT"] = user_agent
    return browser


def token_of(response: TestResponse) -> str:
    """The CSRF token in a page's forms."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', response.text)
    assert found is not None, response.text
    return found.group(1)


def login(browser: FlaskClient, user: str = "alice", password: str = "wonderland") -> None:
    token = token_of(browser.get("/login"))
    response = browser.post(
        "/login", data={"username": user, "password": password, "csrf_token": token}
    )
    assert response.status_code == 302 and response.location == "/", response.text


def devices_page(browser: FlaskClient) -> tuple[str, list[tuple[str, str]]]:
    """The devices page's CSRF token and its rows as (handle, "yes"/"no" for this device)."""
    response = browser.get("/devices")
    assert response.status_code == 200, response.location
    rows = re.findall(
        r'data-this="(yes|no)".*?name="handle" value="([^"]+)"', response.text, re.DOTALL
    )
    return token_of(response), [(handle, this) for this, handle in rows]


def logged_in(browser: FlaskClient) -> bool:
    response = browser.get("/")
    if response.status_code == 302:
        assert response.location.startswith("/login")
        return False
    assert response.status_code == 200
    return True


# -- logging in and out ---------------------------------------------------------------------------


def test_pages_need_a_login(app: Flask) -> None:
    browser = client(app)
    for path in ("/", "/devices"):
        response = browser.get(path)
        assert response.status_code == 302 and response.location == "/login"
    page = browser.get("/login")
    assert page.status_code == 200 and "Log in" in page.text
    assert page.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "wrong"), ("alice", ""), ("nobody", "wonderland"), ("bob", "wonderland")],
)
def test_a_wrong_password_is_refused(app: Flask, user: str, password: str) -> None:
    browser = client(app)
    token = token_of(browser.get("/login"))
    response = browser.post(
        "/login", data={"username": user, "password": password, "csrf_token": token}
    )
    assert response.status_code == 401
    assert "Wrong user name or password." in response.text
    assert not logged_in(browser)
    assert sessions_of(app, user) == []


def test_login_shows_the_session_and_regenerates_the_id(app: Flask) -> None:
    browser = client(app)
    token_of(browser.get("/login"))
    anonymous = browser.get_cookie("session")
    assert anonymous is not None  # the login form's CSRF token lives in a session
    login(browser)
    cookie = browser.get_cookie("session")
    assert cookie is not None and cookie.value != anonymous.value
    assert "alice" not in cookie.value and len(cookie.value) < 100
    assert cookie.http_only and cookie.same_site == "Lax"
    page = browser.get("/")
    assert "Hello, Alice" in page.text and "Welcome, Alice." in page.text
    assert "<code>visits</code>" in page.text
    assert browser.get("/login").location == "/"  # already logged in


def test_the_store_comes_from_the_environment(
    accounts: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "from-env.db"
    monkeypatch.setenv("FLASK_SESSION_STORE", f"sqlite:///{path}")
    monkeypatch.setenv("FLASK_SECRET_KEY", "a key from the environment")
    app: Flask = accounts.create_app({"TESTING": True})
    assert app.secret_key == "a key from the environment"
    assert app.config["SESSION_RECORD_CLIENT"] is True
    login(client(app))
    assert path.exists()
    assert len(sessions_of(app, "alice")) == 1


def test_logout_ends_the_session(app: Flask) -> None:
    browser = client(app)
    login(browser)
    old = browser.get_cookie("session")
    assert old is not None
    response = browser.post("/logout", data={"csrf_token": token_of(browser.get("/"))})
    assert response.status_code == 302 and response.location == "/login"
    assert "You are logged out." in browser.get("/login").text
    assert not logged_in(browser)
    assert sessions_of(app, "alice") == []
    replay = client(app)
    replay.set_cookie("session", old.value)
    assert not logged_in(replay)


# -- CSRF -----------------------------------------------------------------------------------------


def test_posts_without_the_csrf_token_are_refused(app: Flask) -> None:
    browser = client(app)
    token_of(browser.get("/login"))
    credentials = {"username": "alice", "password": "wonderland"}
    assert browser.post("/login", data=credentials).status_code == 400
    assert browser.post("/login", data={**credentials, "csrf_token": "x"}).status_code == 400
    assert browser.post("/login", data={**credentials, "csrf_token": "é"}).status_code == 400
    assert not logged_in(browser)

    other = client(app, IPHONE)
    login(browser)
    login(other)
    token, rows = devices_page(browser)
    handle = next(handle for handle, this in rows if this == "no")
    assert browser.post("/devices/end", data={"handle": handle}).status_code == 400
    assert browser.post("/devices/end-others").status_code == 400
    assert browser.post("/devices/end-others", data={"csrf_token": "guess"}).status_code == 400
    assert browser.post("/logout").status_code == 400
    # A token of another session is no good either.
    _, _ = devices_page(other)
    other_token = token_of(other.get("/"))
    assert other_token != token
    assert browser.post("/logout", data={"csrf_token": other_token}).status_code == 400
    assert logged_in(browser) and logged_in(other)
    assert len(sessions_of(app, "alice")) == 2


def test_the_csrf_token_changes_at_login(app: Flask) -> None:
    browser = client(app)
    before = token_of(browser.get("/login"))
    login(browser)
    assert token_of(browser.get("/")) != before


# -- devices --------------------------------------------------------------------------------------


def test_devices_lists_the_users_sessions(app: Flask) -> None:
    laptop, phone, bobs = client(app, FIREFOX), client(app, IPHONE), client(app, WINDOWS)
    login(laptop)
    login(phone)
    login(bobs, "bob", "builder")
    page = laptop.get("/devices").text
    assert "Firefox on Linux" in page and "Safari on iPhone" in page
    assert "Edge on Windows" not in page  # bob's
    assert page.count('class="badge">this device') == 1
    assert "127.0.0.1" in page and "just now" in page
    _, rows = devices_page(laptop)
    assert len(rows) == 2 and [this for _, this in rows].count("yes") == 1
    _, phone_rows = devices_page(phone)
    assert {handle for handle, _ in rows} == {handle for handle, _ in phone_rows}
    assert dict(rows) != dict(phone_rows)  # each sees itself as "this device"


def test_ending_a_device_logs_it_out_on_its_next_request(app: Flask) -> None:
    laptop, phone = client(app, FIREFOX), client(app, IPHONE)
    login(laptop)
    login(phone)
    token, rows = devices_page(laptop)
    phone_handle = next(handle for handle, this in rows if this == "no")
    response = laptop.post("/devices/end", data={"handle": phone_handle, "csrf_token": token})
    assert response.status_code == 302 and response.location == "/devices"
    assert "That device is logged out" in laptop.get("/devices").text

    # Its very next request (here a POST from the page it still shows) goes to the login form,
    # and the stale cookie is dropped so that it can log in again at once.
    response = phone.post("/devices/end-others", data={"csrf_token": "stale"})
    assert response.status_code == 302 and response.location == "/login?ended=1"
    assert phone.get_cookie("session") is None
    assert "Your session has ended" in phone.get("/login?ended=1").text
    assert logged_in(laptop)
    login(phone)
    assert logged_in(phone)
    assert len(sessions_of(app, "alice")) == 2


def test_a_revoked_session_goes_to_the_login_page_on_a_get(app: Flask) -> None:
    laptop, phone = client(app, FIREFOX), client(app, IPHONE)
    login(laptop)
    login(phone)
    token, rows = devices_page(laptop)
    phone_handle = next(handle for handle, this in rows if this == "no")
    laptop.post("/devices/end", data={"handle": phone_handle, "csrf_token": token})
    response = phone.get("/devices")
    assert response.status_code == 302 and response.location == "/login?ended=1"
    # Straight to the login form with the stale cookie: the same bounce, then a usable form.
    stale = client(app)
    login(stale)
    _, rows = devices_page(laptop)
    stale_handle = next(h for h, this in rows if this == "no")
    laptop.post("/devices/end", data={"handle": stale_handle, "csrf_token": token})
    assert stale.get("/login").location == "/login?ended=1"
    login(stale)


def test_ending_this_device_is_a_logout(app: Flask) -> None:
    browser = client(app)
    login(browser)
    token, [(handle, this)] = devices_page(browser)
    assert this == "yes"
    response = browser.post("/devices/end", data={"handle": handle, "csrf_token": token})
    assert response.status_code == 302 and response.location == "/login"
    assert not logged_in(browser)


@pytest.mark.parametrize("whose", ["bob's", "made up", "empty", "not a handle"])
def test_ending_a_device_that_is_not_yours_is_refused(app: Flask, whose: str) -> None:
    alice, bob = client(app), client(app, WINDOWS)
    login(alice)
    login(bob, "bob", "builder")
    [bobs_session] = sessions_of(app, "bob")
    handle = {
        "bob's": bobs_session.handle,
        "made up": "A" * 43,
        "empty": "",
        "not a handle": "../../etc/passwd",
    }[whose]
    token, _ = devices_page(alice)
    response = alice.post("/devices/end", data={"handle": handle, "csrf_token": token})
    assert response.status_code == 404
    assert logged_in(bob) and logged_in(alice)
    assert len(sessions_of(app, "bob")) == 1


def test_log_out_everywhere_else(app: Flask) -> None:
    laptop, phone, tablet = client(app, FIREFOX), client(app, IPHONE), client(app, WINDOWS)
    bob = client(app)
    for browser in (laptop, phone, tablet):
        login(browser)
    login(bob, "bob", "builder")
    token, rows = devices_page(laptop)
    assert len(rows) == 3
    response = laptop.post("/devices/end-others", data={"csrf_token": token})
    assert response.status_code == 302 and response.location == "/devices"
    page = laptop.get("/devices").text
    assert "Logged out everywhere else (2 other devices)." in page
    assert not logged_in(phone) and not logged_in(tablet)
    assert logged_in(laptop) and logged_in(bob)
    [left] = sessions_of(app, "alice")
    _, [(handle, this)] = devices_page(laptop)
    assert left.handle == handle and this == "yes"


def test_describe_device(accounts: ModuleType) -> None:
    describe = accounts.describe_device
    assert describe(FIREFOX) == "Firefox on Linux"
    assert describe(IPHONE) == "Safari on iPhone"
    assert describe(WINDOWS) == "Edge on Windows"
    assert describe(None) == "Unknown device"
    assert describe("curl/8.5.0") == "curl/8.5.0"


def test_on_a_store_without_a_user_index_the_devices_page_says_so(
    accounts: ModuleType, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """On Memcached (no index of a user's sessions) /devices and "log out everywhere else"
    explain that the store cannot list devices, instead of a 500; logging in and out work."""
    from store_urls import fresh_store_url

    app: Flask = accounts.create_app(
        {"TESTING": True, "SESSION_STORE": fresh_store_url(request, "memcached", tmp_path)}
    )
    request.addfinalizer(ServerSession.manager(app).store.close)
    browser = client(app)
    login(browser)
    response = browser.get("/devices")
    assert response.status_code == 200
    assert "cannot list the devices" in response.text
    assert 'name="handle"' not in response.text
    token = token_of(browser.get("/"))
    ended = browser.post("/devices/end-others", data={"csrf_token": token})
    assert ended.status_code == 302 and ended.location == "/devices"
    assert "cannot list the devices" in browser.get("/devices").text
    assert logged_in(browser)
    response = browser.post("/logout", data={"csrf_token": token_of(browser.get("/"))})
    assert response.status_code == 302 and not logged_in(browser)
