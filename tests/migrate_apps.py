"""The apps of the migration tests: the same views under Flask-Session, under Flask's cookie
session and under us, and the check that a page load's parallel first requests end in one
session."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from functools import partial
from typing import Any

import flask_session  # type: ignore[import-untyped]
from flask import Flask, session
from http_server import in_parallel, request, serve

from flask_serversession import Session

USERS = ["alice", "bob", "carol"]


def add_views(app: Flask) -> Flask:
    app.secret_key = "migration-secret"
    app.testing = True

    @app.get("/login/<name>")
    def login(name: str) -> str:
        session["user"] = name
        session["cart"] = [1, 2, name]
        return "ok"

    @app.get("/whoami")
    def whoami() -> str:
        return f"{session.get('user')}|{session.get('cart')}"

    @app.get("/none")
    def none() -> str:
        return "none"

    return app


def flask_session_app(
    config: dict[str, Any], setup: Callable[[Flask], None] | None = None
) -> Flask:
    app = add_views(Flask(__name__))
    app.config.update(config)
    if setup is not None:
        setup(app)
    with warnings.catch_warnings():  # SESSION_USE_SIGNER is deprecated in Flask-Session
        warnings.simplefilter("ignore", DeprecationWarning)
        flask_session.Session(app)
    return app


def our_app(config: dict[str, Any], setup: Callable[[Flask], None] | None = None) -> Flask:
    app = add_views(Flask(__name__))
    app.config.update(config)
    app.config["SESSION_CLEANUP_INTERVAL"] = 0
    if setup is not None:
        setup(app)
    Session(app)  # the only change: the import
    return app


#: Requests a browser sends at once with the old cookie, right after the switch (a page load).
PARALLEL = 6


def check_parallel_first_requests(app: Flask, cookies: dict[str, str]) -> None:
    """Each user's first PARALLEL requests with the old cookie arrive together, each loads the
    session and waits for the others, then writes its own key. All of them find the user, all
    send the same new cookie, and every write lands in that one session: none started a
    session of its own."""
    gate = threading.Barrier(PARALLEL)

    @app.get("/add/<key>")
    def add(key: str) -> str:
        user = session.get("user")  # loads: moves the session, or joins the move
        gate.wait(timeout=10)  # every request has loaded before any writes
        session[key] = user
        return str(user)

    @app.get("/keys")
    def keys() -> str:
        return ",".join(sorted(session))

    with serve(app) as url:
        for name, old in cookies.items():
            sent = [
                partial(request, url, f"/add/k{i}", cookie_header=f"session={old}")
                for i in range(PARALLEL)
            ]
            replies = in_parallel(*sent)
            assert [reply.status for reply in replies] == [200] * PARALLEL
            assert [reply.text for reply in replies] == [name] * PARALLEL
            sent_cookies = [cookie for reply in replies for cookie in reply.set_cookies("session")]
            new = {cookie.value for cookie in sent_cookies}
            assert len(new) == 1, f"{len(new)} sessions for one browser"
            lasting = {cookie.has("expires") for cookie in sent_cookies}
            assert len(lasting) == 1, "the cookies sent for one session differ in lifetime"
            (value,) = new
            stored = request(url, "/keys", cookie_header=f"session={value}").text
            written = [f"k{i}" for i in range(PARALLEL)]
            assert stored == ",".join(sorted(["_permanent", "cart", "user", *written]))
