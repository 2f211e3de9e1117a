"""Logout with Flask-Login's ``remember=True``: correct whichever of ``logout_user()`` and
``session.logout()`` comes first (issue 14, item 6).

``logout_user()`` sets ``session["_remember"] = "clear"``; Flask-Login's ``after_request`` reads
it to expire the remember cookie. Values written in a request before ``destroy()`` stay readable
until the end of that request, so the flag survives the session's end either way.
"""

from __future__ import annotations

import flask_login  # type: ignore[import-untyped]
import pytest
from flask import Flask

from flask_serversession import ServerSession, current_session

UTCNOW = "ignore:datetime.datetime.utcnow:DeprecationWarning"


class User(flask_login.UserMixin):  # type: ignore[misc]
    def __init__(self, user_id: str) -> None:
        self.id = user_id


def make_app(order: str) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test", TESTING=True)
    ServerSession(app, store="memory://")
    manager = flask_login.LoginManager(app)
    manager.user_loader(User)

    @app.post("/login")
    def login() -> str:
        flask_login.login_user(User("alice"), remember=True)
        current_session().login("alice")
        return "in"

    @app.get("/me")
    def me() -> str:
        user = flask_login.current_user
        return str(user.id) if user.is_authenticated else "anonymous"

    @app.post("/logout")
    def logout() -> str:
        if order == "logout_user first":
            flask_login.logout_user()
            current_session().logout()
        else:
            current_session().logout()
            flask_login.logout_user()
        return "out"

    return app


@pytest.mark.filterwarnings(UTCNOW)
@pytest.mark.parametrize("order", ["logout_user first", "session.logout first"])
def test_logout_clears_remember_cookie_in_either_order(order: str) -> None:
    client = make_app(order).test_client()
    client.post("/login")
    assert client.get_cookie("remember_token") is not None
    assert client.get("/me").text == "alice"
    response = client.post("/logout")
    assert client.get_cookie("remember_token") is None, "remember cookie not cleared"
    assert client.get_cookie("session") is None
    assert "_remember" not in response.headers.get("Set-Cookie", "")
    assert client.get("/me").text == "anonymous"


def test_values_written_before_destroy_are_read_but_not_saved() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="test", TESTING=True)
    ServerSession(app, store="memory://")
    seen: list[object] = []

    @app.post("/set")
    def set_() -> str:
        current_session()["a"] = 1
        return ""

    @app.post("/end")
    def end() -> str:
        session = current_session()
        session["flag"] = "clear"
        session.destroy()
        seen.append(session.get("flag"))
        seen.append(session.get("a"))
        return ""

    client = app.test_client()
    client.post("/set")
    client.post("/end")
    assert seen == ["clear", None]  # written this request: kept; loaded before: gone
    assert client.get_cookie("session") is None  # and nothing saved into a fresh session
