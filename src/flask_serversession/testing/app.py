"""The app the behaviour tests drive: one view per kind of session access."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask import Flask, session
from flask.testing import FlaskClient
from werkzeug.wrappers import Response

from ..errors import ServerSessionError
from ..extension import ServerSession
from ..interface import ServerSessionInterface
from ..session import ServerSideSession
from ..stores import Store
from .header_client import HeaderClient

#: The transports the behaviour tests run over (``SESSION_TRANSPORT``): a browser's cookie, and
#: an API client's header, driven by a :class:`HeaderClient`.
TRANSPORTS = ("cookie", "header")


def _none() -> str:
    return "none"


def _get(k: str) -> str:
    return repr(session.get(k))


def _set(k: str, v: str) -> str:
    session[k] = v
    return "set"


def _rw(k: str, v: str) -> str:
    old = session.get(k)
    session[k] = v
    return repr(old)


def _append(k: str, v: str) -> str:
    session[k].append(v)
    return "appended"


def _pop(k: str) -> str:
    return repr(session.pop(k, None))


def _server_session() -> ServerSideSession:
    assert isinstance(session, ServerSideSession)
    return session


def _regenerate() -> str:
    _server_session().regenerate()
    return "regenerated"


def _destroy() -> str:
    _server_session().destroy()
    return "destroyed"


def _permanent() -> str:
    session.permanent = True
    return "permanent"


def _dump() -> dict[str, str]:
    return {key: repr(value) for key, value in session.items()}


def _login(user: str) -> str:
    _server_session().login(user)
    return "logged in"


def _logout() -> str:
    _server_session().logout()
    return "logged out"


def _whoami() -> dict[str, Any]:
    current = _server_session()
    auth = current.authenticated_at
    return {
        "user": current.user_id,
        "handle": current.handle,
        "auth": None if auth is None else auth.timestamp(),
    }


def _logout_others() -> str:
    current = _server_session()
    assert current.user_id is not None
    ended = ServerSession.manager().revoke_user(current.user_id, keep=current.handle)
    return str(ended)


#: The views of :func:`make_app`: rule, endpoint, view.
_VIEWS: tuple[tuple[str, str, Callable[..., Any]], ...] = (
    ("/none", "none", _none),
    ("/get/<k>", "get", _get),
    ("/set/<k>/<v>", "set_", _set),
    ("/rw/<k>/<v>", "rw", _rw),
    ("/append/<k>/<v>", "append", _append),
    ("/pop/<k>", "pop", _pop),
    ("/regenerate", "regenerate", _regenerate),
    ("/destroy", "destroy", _destroy),
    ("/permanent", "permanent", _permanent),
    ("/dump", "dump", _dump),
    ("/login/<user>", "login", _login),
    ("/logout", "logout", _logout),
    ("/whoami", "whoami", _whoami),
    ("/logout-others", "logout_others", _logout_others),
)


def make_app(store: Store, **options: Any) -> Flask:
    """A Flask app on ``store`` with views that each do one kind of thing to the session.

    ``/none`` never touches it; ``/get/<k>`` reads; ``/set/<k>/<v>`` assigns without reading;
    ``/rw/<k>/<v>`` reads then assigns; ``/append/<k>/<v>`` appends to a list in place;
    ``/pop/<k>``; ``/regenerate``; ``/destroy``; ``/permanent``; ``/dump`` returns every value.

    With ``transport="header"``, ``app.test_client()`` is a :class:`HeaderClient`.
    """
    app = Flask(__name__)
    if options.get("transport") == "header":
        app.test_client_class = HeaderClient
    app.testing = True  # errors at save reach the test instead of becoming a 500
    app.secret_key = "conformance-secret"
    options.setdefault("cleanup_interval", 0)
    ServerSession(app, store=store, **options)
    for rule, endpoint, view in _VIEWS:
        app.add_url_rule(rule, endpoint, view, methods=["GET"])
    return app


def _interface(app: Flask) -> ServerSessionInterface:
    interface = app.session_interface
    assert isinstance(interface, ServerSessionInterface)
    return interface


def _cookie(client: FlaskClient) -> str | None:
    """The token ``client`` holds: its session cookie's value, or a :class:`HeaderClient`'s."""
    if isinstance(client, HeaderClient):
        return client.token
    cookie = client.get_cookie("session")
    return None if cookie is None else cookie.value


def _given(response: Response) -> str | None:
    """What ``response`` tells the client about its token, by cookie or header: the new token,
    ``""`` when it ends the session, ``None`` when it says nothing."""
    given = response.headers.get("X-Session-Token")
    if given is not None:
        return given
    for cookie in response.headers.getlist("Set-Cookie"):
        if cookie.startswith("session="):
            return cookie.partition(";")[0].removeprefix("session=")
    return None


def _reads_from(client: FlaskClient) -> str:
    """The request header ``client``'s session travels in, as it appears in ``Vary``."""
    return "Authorization" if isinstance(client, HeaderClient) else "Cookie"


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
