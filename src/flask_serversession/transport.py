"""How the signed session ID travels between client and server: in a cookie, or in a header.

The token is the same either way: the value :class:`~flask_serversession.ids.CookieSigner` makes
of the session ID. :class:`CookieTransport` carries it as browsers expect (the default, and the
only transport that reads or sets a cookie); :class:`HeaderTransport` carries it the way API
clients do, in ``Authorization: Bearer <token>`` (or a header of the app's choosing) on the
request, and in ``X-Session-Token`` on the response, only when it changes.

The interface asks a transport for this and nothing else (:class:`Transport`): to
:meth:`~Transport.read` the token, add what the response must :meth:`~Transport.vary` on,
:meth:`~Transport.send` a new token, :meth:`~Transport.end` the session on the client, say
whether it :meth:`~Transport.sent` either already, and :meth:`~Transport.finish` (where the
header transport tells a client whose token led to no live session that it is over).

.. versionadded:: 0.1
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from flask import Flask, Request, Response

from .errors import ConfigurationError
from .ids import MAX_COOKIE_LENGTH

if TYPE_CHECKING:
    from .config import Config
    from .interface import ServerSessionInterface

#: The values of ``SESSION_TRANSPORT``.
TransportName = Literal["cookie", "header", "both"]
TRANSPORT_NAMES: tuple[TransportName, ...] = ("cookie", "header", "both")
#: An HTTP header name, or an auth scheme: RFC 9110's ``token``.
_HEADER_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
#: Where a request keeps what :meth:`HeaderTransport.read` parsed, by header name and scheme.
_PARSED = "_serversession_header_tokens"


def transport_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """SESSION_TRANSPORT and its headers, as :class:`~.config.Config` fields; raise
    :class:`~.errors.ConfigurationError` naming the key of a bad value."""
    transport = values.get("SESSION_TRANSPORT") or "cookie"
    if transport not in TRANSPORT_NAMES:
        raise ConfigurationError(
            f"SESSION_TRANSPORT must be one of {', '.join(map(repr, TRANSPORT_NAMES))},"
            f" got {transport!r}"
        )
    scheme = values.get("SESSION_HEADER_SCHEME")
    scheme = "Bearer" if scheme is None else scheme
    if not isinstance(scheme, str) or (scheme and not _HEADER_TOKEN.match(scheme)):
        raise ConfigurationError(
            f"SESSION_HEADER_SCHEME must be a word such as 'Bearer', or '' for a bare token,"
            f" got {scheme!r}"
        )
    return {
        "transport": transport,
        "header_name": _header_name(values, "SESSION_HEADER_NAME", "Authorization"),
        "header_scheme": scheme,
        "response_header": _header_name(values, "SESSION_RESPONSE_HEADER", "X-Session-Token"),
    }


def _header_name(values: Mapping[str, Any], key: str, default: str) -> str:
    name = values.get(key) or default
    if (
        not isinstance(name, str)
        or not _HEADER_TOKEN.match(name)
        or name.lower() in ("cookie", "set-cookie")
    ):
        raise ConfigurationError(f"{key} must be an HTTP header name, got {name!r}")
    return name


class Transport(Protocol):
    """What the interface asks of a transport; see the module docstring."""

    #: Whether the client keeps the token for a time the server names (a cookie's
    #: ``Expires``), so a session that becomes permanent must re-send it.
    has_lifetime: bool

    def read(self, request: Request) -> tuple[str | None, str | None]:
        """``(token, None)``; ``(None, None)`` when the request carries none; ``(None, reason)``
        for one refused before any signature check (a ``session_rejected`` reason)."""
        ...

    def vary(self, response: Response) -> None:
        """Add the request headers the session was read from to ``Vary``."""
        ...

    def send(self, app: Flask, response: Response, token: str, expires: datetime | None) -> None:
        """Give the client ``token`` (``expires``: when a permanent session's cookie ends)."""
        ...

    def end(self, app: Flask, response: Response) -> None:
        """Tell the client its session is over."""
        ...

    def sent(self, response: Response) -> bool:
        """Whether ``response`` gives (or ends) the token already."""
        ...

    def finish(self, request: Request, response: Response, alive: bool) -> None:
        """The last word after saving; ``alive``: the session is stored under an ID."""
        ...


class CookieTransport:
    """The token in the session cookie, with the cookie settings Flask reads per request."""

    has_lifetime = True

    def __init__(self, interface: ServerSessionInterface) -> None:
        self._interface = interface
        self.config: Config = interface.config

    def read(self, request: Request) -> tuple[str | None, str | None]:
        return request.cookies.get(self.config.cookie_name), None

    def vary(self, response: Response) -> None:
        response.vary.add("Cookie")

    def send(self, app: Flask, response: Response, token: str, expires: datetime | None) -> None:
        response.set_cookie(self.config.cookie_name, token, expires=expires, **self.attributes(app))

    def end(self, app: Flask, response: Response) -> None:
        response.delete_cookie(self.config.cookie_name, **self.attributes(app))

    def sent(self, response: Response) -> bool:
        name = self.config.cookie_name + "="
        return any(value.startswith(name) for value in response.headers.getlist("Set-Cookie"))

    def finish(self, request: Request, response: Response, alive: bool) -> None:
        """Nothing: a cookie that leads nowhere is replaced when a session is next stored."""

    def attributes(self, app: Flask) -> dict[str, Any]:
        """The cookie's attributes. A setting changed in ``app.config`` after
        ``ServerSession(app)`` is read per request through Flask's ``get_cookie_*`` helpers, as
        Flask's own session does; an unchanged one keeps the value parsed at start-up (with our
        defaults, e.g. ``SameSite=Lax``), and one given as an option is never overridden."""
        config = self.config
        seen = config.cookie_config
        flask = self._interface

        def changed(*keys: str) -> bool:
            return any(key in seen and app.config.get(key) != seen[key] for key in keys)

        attributes: dict[str, Any] = {
            "path": config.cookie_path,
            "domain": config.cookie_domain,
            "secure": config.cookie_secure,
            "httponly": config.cookie_httponly,
            "samesite": config.cookie_samesite,
            "partitioned": config.cookie_partitioned,
        }
        if "SESSION_COOKIE_PATH" in seen and changed("SESSION_COOKIE_PATH", "APPLICATION_ROOT"):
            attributes["path"] = flask.get_cookie_path(app) or "/"
        if changed("SESSION_COOKIE_DOMAIN"):
            attributes["domain"] = flask.get_cookie_domain(app) or None
        if changed("SESSION_COOKIE_SECURE"):
            attributes["secure"] = bool(flask.get_cookie_secure(app))
        if changed("SESSION_COOKIE_HTTPONLY"):
            attributes["httponly"] = bool(flask.get_cookie_httponly(app))
        if changed("SESSION_COOKIE_SAMESITE"):
            attributes["samesite"] = flask.get_cookie_samesite(app)
        if changed("SESSION_COOKIE_PARTITIONED"):
            attributes["partitioned"] = bool(flask.get_cookie_partitioned(app))
        return attributes


class HeaderTransport:
    """The token in a request header (``Authorization: Bearer <token>`` by default) and, when
    it changes, in a response header (``X-Session-Token``); an empty response header says the
    session is over. Never reads or sets a cookie."""

    has_lifetime = False

    def __init__(self, name: str, scheme: str, response_name: str) -> None:
        #: The request header the token is read from.
        self.name = name
        #: What precedes the token in it, and one space (``""``: the bare token).
        self.prefix = f"{scheme.lower()} " if scheme else ""
        #: The response header a new token (or ``""``) is sent in.
        self.response_name = response_name
        #: Longer values are refused before any HMAC work.
        self._max_length = len(self.prefix) + MAX_COOKIE_LENGTH

    def presented(self, request: Request) -> bool:
        """Whether ``request`` carries the header at all, a token or not (with
        ``SESSION_TRANSPORT = "both"`` such a request is served by the header, whatever cookie
        it has; an API client without a token yet sends the scheme alone, ``Bearer``)."""
        return self.name in request.headers

    def read(self, request: Request) -> tuple[str | None, str | None]:
        """The header's token, parsed once per request and kept on it (as Werkzeug keeps
        ``request.cookies``): :meth:`finish` reuses what the session was opened from."""
        parsed: dict[tuple[str, str], tuple[str | None, str | None]]
        parsed = request.__dict__.setdefault(_PARSED, {})
        key = (self.name, self.prefix)
        found = parsed.get(key)
        if found is None:
            found = parsed[key] = self._parse(request.headers.getlist(self.name))
        return found

    def _parse(self, values: list[str]) -> tuple[str | None, str | None]:
        """:meth:`read`'s answer for the header's ``values``."""
        if not values:
            return None, None
        if len(values) > 1:
            return None, "malformed"  # sent twice: neither is trusted
        value = values[0].strip()
        if len(value) > self._max_length:
            return None, "too-long"
        prefix = self.prefix
        if not value or value.lower() == prefix[:-1]:
            return None, None  # empty, or the scheme alone: a client that holds no token
        if prefix:
            if value[: len(prefix)].lower() != prefix:
                return None, "malformed"  # another scheme (Basic ...), or no space after it
            value = value[len(prefix) :]
        if "," in value or " " in value:
            return None, "malformed"  # a list of values folded into one, or a second token
        return value, None

    def vary(self, response: Response) -> None:
        response.vary.add(self.name)

    def send(self, app: Flask, response: Response, token: str, expires: datetime | None) -> None:
        response.headers[self.response_name] = token
        self._expose(response)

    def end(self, app: Flask, response: Response) -> None:
        self._end(response)

    def sent(self, response: Response) -> bool:
        return self.response_name in response.headers

    def finish(self, request: Request, response: Response, alive: bool) -> None:
        """A token was presented but leads to no live session (revoked, expired, refused) and
        no new one was sent: the client learns that it is over."""
        if not alive and not self.sent(response) and self.read(request) != (None, None):
            self._end(response)

    def _end(self, response: Response) -> None:
        response.headers[self.response_name] = ""
        self._expose(response)

    def _expose(self, response: Response) -> None:
        """A cross-origin script reads only the response headers listed in
        ``Access-Control-Expose-Headers``: add ours when the response allows the origin."""
        if "Access-Control-Allow-Origin" not in response.headers:
            return
        exposed = response.headers.get("Access-Control-Expose-Headers", "")
        names = [name.strip() for name in exposed.split(",") if name.strip()]
        # (Not even "*" spares it: with credentials, "*" is a header name, not a wildcard.)
        if any(name.lower() == self.response_name.lower() for name in names):
            return
        response.headers["Access-Control-Expose-Headers"] = ", ".join([*names, self.response_name])
