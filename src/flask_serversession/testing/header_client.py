"""A Flask test client that holds its session as an API client does: a token, no cookie jar."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask.sessions import SessionMixin
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from ..interface import ServerSessionInterface


class HeaderClient(FlaskClient):
    """A test client for an app with ``SESSION_TRANSPORT = "header"`` (or ``"both"``).

    It has no cookie jar. It keeps the token the last response gave in the response header
    (``X-Session-Token``), forgets it when a response sends that header empty, and sends it in
    the request header (``Authorization: Bearer <token>``) of each request, as a script or a
    mobile app would; while it holds none, it sends the scheme alone (``Authorization:
    Bearer``), so that an app with ``SESSION_TRANSPORT = "both"`` answers with a token, not a
    cookie. Make one with ``app.test_client_class = HeaderClient`` (then
    ``app.test_client()``), or ``HeaderClient(app)``.

    For code written against cookies, :meth:`set_cookie` and :meth:`delete_cookie` with the
    session cookie's name set and forget the token, and :meth:`session_transaction` works as
    Flask's does.

    .. versionadded:: 0.1
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["use_cookies"] = False
        super().__init__(*args, **kwargs)
        interface = self.application.session_interface
        assert isinstance(interface, ServerSessionInterface), "not a Flask-ServerSession app"
        config = interface.config
        self._cookie_name = config.cookie_name
        self._environ_key = "HTTP_" + config.header_name.upper().replace("-", "_")
        self._scheme = f"{config.header_scheme} " if config.header_scheme else ""
        self._response_header = config.response_header
        #: The token the client holds, ``None`` for none.
        self.token: str | None = None

    def _headers(self) -> dict[str, str]:
        """The WSGI environ entry that carries :attr:`token`; without one, the scheme alone
        (``Authorization: Bearer``), which says "header, please" to an app that takes both."""
        return {self._environ_key: (self._scheme + (self.token or "")).strip()}

    def _take(self, response_headers: Any) -> None:
        """Keep the token the response gave, or forget it if the response ended it."""
        given = response_headers.get(self._response_header)
        if given is not None:
            self.token = given or None

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:
        self.environ_base.pop(self._environ_key, None)
        self.environ_base.update(self._headers())
        response = super().open(*args, **kwargs)
        self._take(response.headers)
        return response

    def set_cookie(self, key: str, value: str = "", *args: Any, **kwargs: Any) -> None:
        """With the session cookie's name: hold ``value`` as the token."""
        if key != self._cookie_name:
            raise TypeError(f"a HeaderClient holds no cookie but the session's, not {key!r}")
        self.token = value or None

    def delete_cookie(self, key: str, *args: Any, **kwargs: Any) -> None:
        """With the session cookie's name: forget the token."""
        self.set_cookie(key)

    @contextmanager
    def session_transaction(self, *args: Any, **kwargs: Any) -> Iterator[SessionMixin]:
        """Open the session this client holds, let the ``with`` block change it, and save it,
        keeping the token the save gives (as Flask's does with the cookie)."""
        app = self.application
        ctx = app.test_request_context(*args, **kwargs)
        ctx.request.environ.update(self._headers())
        with ctx:
            session = app.session_interface.open_session(app, ctx.request)
        if session is None:
            raise RuntimeError("Session backend did not open a session.")
        yield session
        response = app.response_class()
        with ctx:
            app.session_interface.save_session(app, session, response)
        self._take(response.headers)
