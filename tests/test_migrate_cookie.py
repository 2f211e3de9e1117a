"""Moving from Flask's signed-cookie session: the cookie's values become a server-side
session on first use, a page load's parallel requests end in one session, and a tampered or
expired cookie is refused.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from itsdangerous import TimestampSigner
from migrate_apps import USERS, add_views, check_parallel_first_requests, our_app
from rejections import rejections


def _cookie_app() -> Flask:
    app = add_views(Flask(__name__))  # Flask's own signed-cookie session
    return app


def _upgraded_app(**config: Any) -> Flask:
    return our_app(
        {
            "SESSION_STORE": "memory://",
            "SESSION_MIGRATE_COOKIE_SESSIONS": True,
            "PERMANENT_SESSION_LIFETIME": timedelta(minutes=10),
            **config,
        }
    )


def test_cookie_session_becomes_server_side() -> None:
    old = _cookie_app()
    client = old.test_client()
    client.get("/login/dora")
    cookie = client.get_cookie("session")
    assert cookie is not None
    app = _upgraded_app()
    new = app.test_client()
    new.set_cookie("session", cookie.value)
    assert new.get("/none").headers.get("Set-Cookie") is None
    assert new.get("/whoami").text == "dora|[1, 2, 'dora']"
    ours = new.get_cookie("session")
    assert ours is not None and ours.value != cookie.value and len(ours.value) == 87
    assert app.extensions["serversession"].manager.count() == 1
    assert new.get("/whoami").text == "dora|[1, 2, 'dora']"


@pytest.mark.parametrize(
    "permanent", [True, False, None], ids=["permanent", "browser-session", "made-permanent"]
)
def test_cookie_session_parallel_first_requests_end_in_one_session(permanent: bool | None) -> None:
    """A page load's requests all carry the same Flask cookie session: the first to save
    creates the server-side session under the ID its forwarding record names, and the others
    join it with just their own changes (through a real threaded server). made-permanent: the
    cookie says nothing, SESSION_PERMANENT makes the new session permanent, and every request
    of the page sends the lasting cookie."""
    old = _cookie_app()
    cookies = {}
    for name in USERS:
        client = old.test_client()
        client.get(f"/login/{name}")
        if permanent is not None:
            with client.session_transaction() as cookie_session:
                cookie_session.permanent = permanent
        cookie = client.get_cookie("session")
        assert cookie is not None
        cookies[name] = cookie.value
    app = _upgraded_app(SESSION_PERMANENT=permanent is None)
    check_parallel_first_requests(app, cookies)
    assert app.extensions["serversession"].manager.count() == len(USERS)


def test_cookie_session_tampered_is_refused() -> None:
    client = _cookie_app().test_client()
    client.get("/login/mallory")
    cookie = client.get_cookie("session")
    assert cookie is not None
    payload, rest = cookie.value.split(".", 1)
    forged = payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB") + "." + rest
    app = _upgraded_app()
    reasons = rejections(app)
    new = app.test_client()
    new.set_cookie("session", forged)
    assert new.get("/whoami").text == "None|None"
    assert reasons == ["bad-signature"]
    assert app.extensions["serversession"].manager.count() == 0


def test_cookie_session_expired_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    client = _cookie_app().test_client()
    with monkeypatch.context() as patch:  # signed an hour ago; the lifetime is 10 minutes
        real = TimestampSigner.get_timestamp
        patch.setattr(TimestampSigner, "get_timestamp", lambda self: real(self) - 3600)
        client.get("/login/olga")
    cookie = client.get_cookie("session")
    assert cookie is not None
    app = _upgraded_app()
    reasons = rejections(app)
    new = app.test_client()
    new.set_cookie("session", cookie.value)
    assert new.get("/whoami").text == "None|None"
    assert reasons == ["expired"]


def test_session_permanent_makes_new_sessions_permanent() -> None:
    for permanent in (True, False):
        app = our_app({"SESSION_STORE": "memory://", "SESSION_PERMANENT": permanent})
        client = app.test_client()
        client.get("/login/pat")
        cookie = client.get_cookie("session")
        assert cookie is not None and (cookie.expires is not None) is permanent
