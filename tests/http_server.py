"""A real threaded HTTP server for a Flask app, and a small stdlib client that talks to it.

``serve(app)`` runs ``app`` on ``werkzeug.serving.make_server(..., threaded=True)`` in a
background thread and yields its base URL; on exit it stops the server and joins the server
thread and every request thread (each with a timeout), so nothing outlives the test.

The client side is deliberately explicit about cookies, because the race tests must send the
*same* cookie from two threads:

* :func:`request` sends exactly the ``Cookie`` header it is given (or none);
* :class:`Browser` keeps a cookie jar for one host, like a browser, but any request may override
  the cookies sent and opt out of updating the jar;
* :func:`raw_request` writes arbitrary bytes on a socket, for requests ``http.client`` refuses
  to build (CR/LF in a header, bytes outside latin-1).
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

_T = TypeVar("_T")

#: Seconds to wait for any thread (server, request handler, client) to finish.
JOIN_TIMEOUT = 10.0
#: Seconds a client waits for a response.
REQUEST_TIMEOUT = 10.0


# -- the server ----------------------------------------------------------------------------------


@contextmanager
def serve(app: Flask) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) from a background thread; yield the base URL."""
    active: set[threading.Thread] = set()
    lock = threading.Lock()

    class Handler(WSGIRequestHandler):
        """Werkzeug's handler, quiet, and tracking its thread so shutdown can join it."""

        def handle(self) -> None:
            me = threading.current_thread()
            with lock:
                active.add(me)
            try:
                super().handle()
            finally:
                with lock:
                    active.discard(me)

        def log(self, type: str, message: str, *args: Any) -> None:
            pass  # no access log in test output; errors still reach werkzeug's logger

    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Handler)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"http-server-{server.server_port}",
        daemon=True,
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(JOIN_TIMEOUT)
        server.server_close()
        with lock:
            handlers = list(active)
        for handler in handlers:
            handler.join(JOIN_TIMEOUT)
        hung = [t.name for t in (thread, *handlers) if t.is_alive()]
        if hung:
            raise AssertionError(f"server threads still running after shutdown: {hung}")


# -- threads -------------------------------------------------------------------------------------


class InThread(Generic[_T]):
    """Run ``call`` in a new thread now; :meth:`result` joins it (with a timeout) and returns
    its value or re-raises its exception."""

    def __init__(self, call: Callable[[], _T], name: str = "client") -> None:
        self._call = call
        self._value: _T | None = None
        self._error: BaseException | None = None
        self._done = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._call()
            self._done = True
        except BaseException as exc:  # handed to the caller in result()
            self._error = exc

    def result(self, timeout: float = JOIN_TIMEOUT) -> _T:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"thread {self._thread.name!r} did not finish in {timeout}s")
        if self._error is not None:
            raise self._error
        assert self._done
        return self._value  # type: ignore[return-value]


def in_parallel(*calls: Callable[[], _T], timeout: float = JOIN_TIMEOUT) -> list[_T]:
    """Run ``calls`` each in its own thread; return their results in order."""
    threads = [InThread(call, name=f"client-{i}") for i, call in enumerate(calls)]
    return [thread.result(timeout) for thread in threads]


# -- responses and cookies -----------------------------------------------------------------------


@dataclass(frozen=True)
class SetCookie:
    """One ``Set-Cookie`` header, parsed. Attribute names are lower-cased; flags map to ``""``."""

    name: str
    value: str
    attributes: Mapping[str, str]
    raw: str

    @classmethod
    def parse(cls, raw: str) -> SetCookie:
        first, *rest = raw.split(";")
        name, _, value = first.partition("=")
        attributes: dict[str, str] = {}
        for part in rest:
            key, _, val = part.strip().partition("=")
            attributes[key.strip().lower()] = val.strip()
        return cls(name.strip(), value.strip(), attributes, raw)

    def has(self, attribute: str) -> bool:
        return attribute.lower() in self.attributes

    def get(self, attribute: str) -> str | None:
        return self.attributes.get(attribute.lower())

    @property
    def expired(self) -> bool:
        """Whether a browser would delete the cookie on receiving this header."""
        max_age = self.get("max-age")
        if max_age is not None:
            return int(max_age) <= 0
        expires = self.get("expires")
        if expires:
            when = parsedate_to_datetime(expires)
            if when.tzinfo is None:
                when = when.replace(tzinfo=timezone.utc)
            return when <= datetime.now(timezone.utc)
        return False


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = field(repr=False)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def header_values(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def set_cookies(self, name: str | None = None) -> list[SetCookie]:
        cookies = [SetCookie.parse(raw) for raw in self.header_values("Set-Cookie")]
        return [c for c in cookies if name is None or c.name == name]

    def set_cookie(self, name: str) -> SetCookie | None:
        """The one ``Set-Cookie`` for ``name``, or ``None``; more than one is an error."""
        cookies = self.set_cookies(name)
        if len(cookies) > 1:
            raise AssertionError(f"{len(cookies)} Set-Cookie headers for {name!r}: {cookies}")
        return cookies[0] if cookies else None

    @property
    def vary(self) -> set[str]:
        """The ``Vary`` tokens, lower-cased."""
        return {
            token.strip().lower()
            for value in self.header_values("Vary")
            for token in value.split(",")
            if token.strip()
        }


# -- clients -------------------------------------------------------------------------------------


def request(
    base_url: str,
    path: str,
    *,
    method: str = "GET",
    cookie_header: str | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = REQUEST_TIMEOUT,
) -> HttpResponse:
    """One request on a fresh connection, sending exactly ``cookie_header`` (or no cookie)."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        sent = {"Connection": "close", **(headers or {})}
        if cookie_header is not None:
            sent["Cookie"] = cookie_header
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        data = response.read()
        return HttpResponse(response.status, response.getheaders(), data)
    finally:
        conn.close()


def cookie_header(cookies: Mapping[str, str]) -> str | None:
    """``name=value; ...`` for ``cookies``, or ``None`` when there are none."""
    return "; ".join(f"{name}={value}" for name, value in cookies.items()) or None


class Browser:
    """A cookie jar for one host, applied the way a browser does (``Path`` and ``Domain`` are
    ignored: every cookie in these tests is for ``/`` on one host).

    ``cookies=`` sends exactly those cookies instead of the jar's; ``remember=False`` leaves the
    jar untouched (use both from worker threads: the jar itself is not thread-safe).
    """

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.jar: dict[str, str] = {}

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        cookies: Mapping[str, str] | None = None,
        remember: bool = True,
    ) -> HttpResponse:
        sent = self.jar if cookies is None else cookies
        response = request(
            self.base_url,
            path,
            method=method,
            cookie_header=cookie_header(sent),
            body=body,
            headers=headers,
        )
        if remember:
            for cookie in response.set_cookies():
                if cookie.expired:
                    self.jar.pop(cookie.name, None)
                else:
                    self.jar[cookie.name] = cookie.value
        return response

    def get(
        self, path: str, *, cookies: Mapping[str, str] | None = None, remember: bool = True
    ) -> HttpResponse:
        return self.request(path, cookies=cookies, remember=remember)

    def post(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = "application/octet-stream",
        cookies: Mapping[str, str] | None = None,
        remember: bool = True,
    ) -> HttpResponse:
        return self.request(
            path,
            method="POST",
            body=body,
            headers={"Content-Type": content_type},
            cookies=cookies,
            remember=remember,
        )


def raw_request(base_url: str, data: bytes, timeout: float = REQUEST_TIMEOUT) -> bytes:
    """Write ``data`` as is on a new connection, half-close it, and return every byte the
    server sends back until it closes the connection."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse_raw_response(data: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """``(status, headers, body)`` of the first response in ``data`` (``status`` 0 if none)."""
    head, _, body = data.partition(b"\r\n\r\n")
    if not head:
        return 0, [], b""
    status_line, *lines = head.split(b"\r\n")
    fields = status_line.split(b" ", 2)
    status = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0
    headers = []
    for line in lines:
        name, _, value = line.partition(b":")
        headers.append((name.strip(), value.strip()))
    return status, headers, body
