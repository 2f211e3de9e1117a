"""One exception tree, and one typed list of the reasons ``session_rejected`` gives."""

from __future__ import annotations

import pytest
from flask import Flask, session

from flask_serversession import ServerSession
from flask_serversession.errors import (
    NotServerSideSession,
    ServerSessionError,
    SessionIdCollision,
)
from flask_serversession.ids import CookieSigner, new_session_id
from flask_serversession.migrate import Unmigratable, flask_cookie_session
from flask_serversession.session import current_session
from flask_serversession.signals import REJECTION_REASONS, rejection_reason
from flask_serversession.stores import Record
from flask_serversession.stores.memory import MemoryStore


def test_every_error_is_a_server_session_error() -> None:
    for error in (Unmigratable, NotServerSideSession, SessionIdCollision):
        assert issubclass(error, ServerSessionError)
    # Still what they were, for code that caught them before.
    assert issubclass(NotServerSideSession, RuntimeError)
    assert issubclass(SessionIdCollision, RuntimeError)
    assert issubclass(Unmigratable, Exception)


def test_reasons_are_listed() -> None:
    assert "expired" in REJECTION_REASONS
    assert len(set(REJECTION_REASONS)) == len(REJECTION_REASONS) == 7
    with pytest.raises(ValueError, match="not a RejectionReason"):
        rejection_reason("no-such-reason")


@pytest.mark.parametrize(
    "cookie",
    ["x" * 5000, "no-dot", CookieSigner(["other"]).sign(new_session_id()), "a.b"],
)
def test_the_signer_reasons_are_listed(cookie: str) -> None:
    _, reason = CookieSigner(["key"]).unsign(cookie)
    assert reason is not None
    assert rejection_reason(reason) == reason


def test_the_cookie_session_reasons_are_listed() -> None:
    for cookie in ("garbage", "eyJhIjoxfQ.Zz.bad"):
        values, reason = flask_cookie_session(cookie, ("key",), 60.0)
        assert values is None and reason in REJECTION_REASONS


def test_current_session_outside_our_sessions_raises_our_error() -> None:
    app = Flask(__name__)
    app.secret_key = "test"
    with app.test_request_context("/"), pytest.raises(NotServerSideSession):
        current_session()


class _FullStore(MemoryStore):
    """Every key is taken: what a broken random number generator would look like."""

    def create(self, key: str, record: Record) -> bool:
        return False


def test_a_broken_rng_raises_our_error() -> None:
    app = Flask(__name__)
    app.secret_key = "test"
    ServerSession(app, store=_FullStore())

    @app.post("/")
    def view() -> str:
        session["a"] = 1
        return ""

    app.testing = True
    with pytest.raises(SessionIdCollision, match="unique ID"):
        app.test_client().post("/")
