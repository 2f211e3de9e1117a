"""The app the behaviour tests drive: one view per kind of session access."""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, session
from flask.testing import FlaskClient

from ..errors import ServerSessionError
from ..extension import ServerSession
from ..interface import ServerSessionInterface
from ..session import ServerSideSession
from ..stores import Store


def make_app(store: Store, **options: Any) -> Flask:
    """A Flask app on ``store`` with views that each do one kind of thing to the session.

    ``/none`` never touches it; ``/get/<k>`` reads; ``/set/<k>/<v>`` assigns without reading;
    ``/rw/<k>/<v>`` reads then assigns; ``/append/<k>/<v>`` appends to a list in place;
    ``/pop/<k>``; ``/regenerate``; ``/destroy``; ``/permanent``; ``/dump`` returns every value.
    """
    app = Flask(__name__)
    app.testing = True  # errors at save reach the test instead of becoming a 500
    app.secret_key = "conformance-secret"
    options.setdefault("cleanup_interval", 0)
    extension = ServerSession(app, store=store, **options)

    @app.get("/none")
    def none() -> str:
        return "none"

    @app.get("/get/<k>")
    def get(k: str) -> str:
        return repr(session.get(k))

    @app.get("/set/<k>/<v>")
    def set_(k: str, v: str) -> str:
        session[k] = v
        return "set"

    @app.get("/rw/<k>/<v>")
    def rw(k: str, v: str) -> str:
        old = session.get(k)
        session[k] = v
        return repr(old)

    @app.get("/append/<k>/<v>")
    def append(k: str, v: str) -> str:
        session[k].append(v)
        return "appended"

    @app.get("/pop/<k>")
    def pop(k: str) -> str:
        return repr(session.pop(k, None))

    @app.get("/regenerate")
    def regenerate() -> str:
        assert isinstance(session, ServerSideSession)
        session.regenerate()
        return "regenerated"

    @app.get("/destroy")
    def destroy() -> str:
        assert isinstance(session, ServerSideSession)
        session.destroy()
        return "destroyed"

    @app.get("/permanent")
    def permanent() -> str:
        session.permanent = True
        return "permanent"

    @app.get("/dump")
    def dump() -> dict[str, str]:
        return {key: repr(value) for key, value in session.items()}

    @app.get("/login/<user>")
    def login(user: str) -> str:
        assert isinstance(session, ServerSideSession)
        session.login(user)
        return "logged in"

    @app.get("/logout")
    def logout() -> str:
        assert isinstance(session, ServerSideSession)
        session.logout()
        return "logged out"

    @app.get("/whoami")
    def whoami() -> dict[str, Any]:
        assert isinstance(session, ServerSideSession)
        auth = session.authenticated_at
        return {
            "user": session.user_id,
            "handle": session.handle,
            "auth": None if auth is None else auth.timestamp(),
        }

    @app.get("/logout-others")
    def logout_others() -> str:
        assert isinstance(session, ServerSideSession) and session.user_id is not None
        ended = extension.revoke_user(session.user_id, keep=session.handle)
        return str(ended)

    return app


def _interface(app: Flask) -> ServerSessionInterface:
    interface = app.session_interface
    assert isinstance(interface, ServerSessionInterface)
    return interface


def _cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("session")
    return None if cookie is None else cookie.value


def _in_parallel(app: Flask, cookie: str, *paths: str) -> list[Any]:
    """GET each of ``paths`` with the session ``cookie``, each from its own client and thread,
    all at once; the status codes (or the library error a request raised) in the order the
    requests ended."""
    outcomes: list[Any] = []

    def request(path: str) -> None:
        client = app.test_client()
        client.set_cookie("session", cookie)
        try:
            outcomes.append(client.get(path).status_code)
        except ServerSessionError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=request, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes
