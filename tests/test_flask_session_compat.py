"""What an app moving from Flask-Session 0.8 meets when it changes only its import (issue 18).

Flask-Session's own suite drives an app through a handful of views: store a value, read it back,
change it, delete it, with ``Vary: Cookie`` on the responses that used the session and a cookie
from the first write on. :func:`test_flask_session_behaviour` walks the same story, in our own
words, through ``from flask_serversession import Session`` and ``SESSION_TYPE`` on every store
Flask-Session and we share. The start-up checks a migrating app hits first are above it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.pool import NullPool

from flask_serversession import ConfigurationError, ServerSession, Session

# -- start-up: SECRET_KEY ------------------------------------------------------------------------


def _keyless(**config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(config)

    @app.post("/set")
    def set_value() -> str:
        session["value"] = "42"
        return "value set"

    return app


def test_the_flask_session_entry_needs_a_secret_key_at_start_up() -> None:
    """Flask-Session ran without SECRET_KEY; we sign every cookie with it. Before issue 18 the
    app started, read empty sessions and failed on its first write (a 500)."""
    app = _keyless(SESSION_STORE="memory://")
    with pytest.raises(ConfigurationError) as info:
        Session(app)
    message = str(info.value)
    assert message.startswith("SECRET_KEY is not set: ") and "\n" not in message
    assert "signs the session ID" in message and "Flask-Session did not" in message
    assert "serversession" not in app.extensions
    assert isinstance(app.session_interface, SecureCookieSessionInterface)  # left as it was


def test_session_type_needs_a_secret_key_at_start_up(tmp_path: Path) -> None:
    """The native entry with Flask-Session's SESSION_TYPE is a migration too."""
    db = SQLAlchemy(engine_options={"poolclass": NullPool})
    uri = f"sqlite:///{tmp_path / 'app.db'}"
    app = _keyless(SQLALCHEMY_DATABASE_URI=uri, SESSION_TYPE="sqlalchemy")
    app.config["SESSION_SQLALCHEMY"] = db
    db.init_app(app)
    with pytest.raises(ConfigurationError, match="^SECRET_KEY is not set: "):
        ServerSession(app)


def test_the_flask_session_entry_starts_once_the_key_is_set() -> None:
    app = _keyless(SESSION_STORE="memory://")
    app.secret_key = "a key"
    Session(app)
    client = app.test_client()
    assert client.post("/set").text == "value set"
    assert client.get_cookie("session") is not None


def test_the_native_entry_still_lets_the_key_come_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``ServerSession`` reads SECRET_KEY per request, as Flask does, and says so: it starts
    without one, but logs a warning that sessions cannot be saved until it is set."""
    app = _keyless(SESSION_STORE="memory://")
    with caplog.at_level(logging.WARNING, logger="flask_serversession"):
        ServerSession(app)
    assert "SECRET_KEY is not set yet" in caplog.text
    app.secret_key = "set after init_app"
    client = app.test_client()
    assert client.post("/set").text == "value set"
    assert client.get_cookie("session") is not None
