"""What a migration takes in is held to the limits of our own sessions (issue 13, items 3, 4,
5, 10): old records that cannot be read or are too large are dropped and reported, never a 5xx
and never copied in; a session made from a Flask cookie is shared only by the requests of one
client; a forwarding record's seal never reuses its pad.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Iterator
from datetime import timedelta
from functools import partial
from typing import Any

import msgspec
import pytest
import redis
from flask import Flask, session
from flask.sessions import SecureCookieSessionInterface
from http_server import in_parallel, request, serve
from itsdangerous import URLSafeTimedSerializer
from rejections import rejections
from servers import ServerProcess

from flask_serversession import Session
from flask_serversession.extension import _State
from flask_serversession.ids import new_session_id
from flask_serversession.migrate import open_forward, seal_forward

_counter = itertools.count()
#: A Flask-Session ID as Flask-Session 0.8 makes them (SESSION_ID_LENGTH 32).
_SID = partial(secrets.token_urlsafe, 32)


def _views(app: Flask) -> Flask:
    app.secret_key = "migration-limits-secret"

    @app.get("/login/<name>")
    def login(name: str) -> str:
        session["user"] = name
        return "ok"

    @app.get("/whoami")
    def whoami() -> str:
        return str(session.get("user"))

    @app.get("/note/<text>")
    def note(text: str) -> str:
        before = session.get("note")
        session["note"] = text
        return str(before)

    @app.get("/dump")
    def dump() -> dict[str, Any]:
        return dict(session)

    return app


def _state(app: Flask) -> _State:
    state: _State = app.extensions["serversession"]
    return state


# -- old records from Flask-Session (Redis) ------------------------------------------------------


@pytest.fixture
def redis_client(redis_server: ServerProcess) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


def _legacy_app(client: redis.Redis, **config: Any) -> tuple[Flask, str]:
    prefix = f"fslim{next(_counter)}:"
    app = _views(Flask(__name__))
    app.config.update(
        SESSION_TYPE="redis",
        SESSION_REDIS=client,
        SESSION_KEY_PREFIX=prefix,
        SESSION_CLEANUP_INTERVAL=0,
        **config,
    )
    Session(app)
    return app, prefix


_DEPTH = 1_000_000
_UNREADABLE = {
    "json-deep": b'{"a":' + b"[" * _DEPTH + b"]" * _DEPTH + b"}",
    "msgpack-deep": b"\x81\xa1a" + b"\x91" * _DEPTH + b"\x90",
    "value-too-deep-to-keep": b'{"a":' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    "not-a-mapping": msgspec.msgpack.encode([1, 2, 3]),
    "garbage": b"\xc1\xff\x00garbage",
}


@pytest.mark.parametrize("kind", list(_UNREADABLE))
def test_unreadable_old_record_is_dropped_and_reported(
    redis_client: redis.Redis, kind: str
) -> None:
    """An old record we cannot read (nested a million levels deep, say) costs the visitor
    nothing but a new session: HTTP 200, ``session_rejected`` with ``"corrupt"``, and the record
    is gone from the old store, so the next request does not pay for it again."""
    app, prefix = _legacy_app(redis_client)
    reasons = rejections(app)
    sid = _SID()
    redis_client.set(prefix + sid, _UNREADABLE[kind], ex=600)
    client = app.test_client()
    client.set_cookie("session", sid)
    response = client.get("/whoami")
    assert response.status_code == 200
    assert response.text == "None"
    assert reasons == ["corrupt"]
    assert not redis_client.exists(prefix + sid)
    assert _state(app).manager.count() == 0
    assert client.get("/login/ivy").status_code == 200  # the visitor goes on, in a new session
    assert client.get("/whoami").text == "ivy"


def test_old_record_over_max_size_is_refused_and_reported(redis_client: redis.Redis) -> None:
    """A record over SESSION_MAX_SIZE is not copied in (ours would refuse to grow so large):
    the visitor gets a new session, ``session_rejected`` says ``"too-large"``, the old record
    is dropped, and one within the limit next to it still moves."""
    app, prefix = _legacy_app(redis_client, SESSION_MAX_SIZE=2_000)
    reasons = rejections(app)
    big, small = _SID(), _SID()
    redis_client.set(prefix + big, msgspec.msgpack.encode({"user": "bo", "blob": "x" * 3_000}))
    redis_client.set(prefix + small, msgspec.msgpack.encode({"user": "al", "blob": "x" * 100}))
    client = app.test_client()
    client.set_cookie("session", big)
    response = client.get("/whoami")
    assert response.status_code == 200 and response.text == "None"
    assert reasons == ["too-large"]
    assert not redis_client.exists(prefix + big)
    assert _state(app).manager.count() == 0
    other = app.test_client()
    other.set_cookie("session", small)
    assert other.get("/whoami").text == "al"
    assert reasons == ["too-large"]


def test_bulk_import_refuses_records_over_max_size(redis_client: redis.Redis) -> None:
    """``flask sessions import`` applies the same limit: a record over SESSION_MAX_SIZE is
    counted as failed and not imported."""
    from flask_serversession.cli import sessions

    app, prefix = _legacy_app(redis_client, SESSION_MAX_SIZE=2_000)
    redis_client.set(prefix + _SID(), msgspec.msgpack.encode({"blob": "x" * 3_000}))
    redis_client.set(prefix + _SID(), msgspec.msgpack.encode({"blob": "x" * 100}))
    result = app.test_cli_runner().invoke(sessions, ["import", "--from", "flask-session"])
    assert result.exit_code == 1, result.output  # a record failed
    assert "1 moved" in result.stdout and "1 failed" in result.stdout
    assert _state(app).manager.count() == 1


# -- Flask cookie sessions -----------------------------------------------------------------------


def _flask_cookie(values: dict[str, Any]) -> str:
    """A Flask cookie session holding ``values``, as Flask's own interface signs it."""
    old = _views(Flask(__name__))

    @old.get("/make")
    def make() -> str:
        session.update(values)
        return "made"

    client = old.test_client()
    client.get("/make")
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def _upgraded_app(**config: Any) -> Flask:
    app = _views(Flask(__name__))
    app.config.update(
        SESSION_STORE="memory://",
        SESSION_MIGRATE_COOKIE_SESSIONS=True,
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=10),
        SESSION_CLEANUP_INTERVAL=0,
        **config,
    )
    Session(app)
    return app


def test_flask_cookie_over_max_size_is_refused_and_reported() -> None:
    cookie = _flask_cookie({"user": "bo", "blob": "x" * 2_500})
    app = _upgraded_app(SESSION_MAX_SIZE=2_000)
    reasons = rejections(app)
    client = app.test_client()
    client.set_cookie("session", cookie)
    response = client.get("/whoami")
    assert response.status_code == 200 and response.text == "None"
    assert reasons == ["too-large"]
    assert client.get("/login/bo").status_code == 200  # a write starts a session of its own
    assert _state(app).manager.count() == 1
    assert client.get("/dump").json == {"user": "bo"}


def _signed_flask_cookie(payload: str) -> str:
    """``payload`` (JSON text) signed as Flask's cookie session signs its JSON: a cookie the
    app's own key vouches for, whatever it holds."""

    class Raw:
        @staticmethod
        def dumps(value: str) -> str:
            return value

    flask_interface = SecureCookieSessionInterface()
    serializer = URLSafeTimedSerializer(
        "migration-limits-secret",
        salt=flask_interface.salt,
        serializer=Raw,
        signer_kwargs={
            "key_derivation": flask_interface.key_derivation,
            "digest_method": flask_interface.digest_method,
        },
    )
    cookie = serializer.dumps(payload)
    return cookie.decode("ascii") if isinstance(cookie, bytes) else cookie


@pytest.mark.parametrize("depth", [400, 5_000])
def test_flask_cookie_too_deep_to_keep_is_refused_and_reported(depth: int) -> None:
    """A validly signed Flask cookie nested deeper than we can read (5,000) or keep (400: the
    serializer's own recursion) is refused as unreadable: a new session, never a 500."""
    cookie = _signed_flask_cookie('{"deep":' + "[" * depth + "]" * depth + "}")
    assert len(cookie) < 4096
    app = _upgraded_app()
    reasons = rejections(app)
    client = app.test_client()
    client.set_cookie("session", cookie)
    response = client.get("/whoami")
    assert response.status_code == 200 and response.text == "None"
    assert reasons == ["corrupt"]
    assert client.get("/login/ola").status_code == 200
    assert client.get("/dump").json == {"user": "ola"}


_CLIENTS = {
    "other-address": ({"User-Agent": "Browser/1"}, {"REMOTE_ADDR": "192.0.2.7"}),
    "other-user-agent": ({"User-Agent": "Browser/2"}, {}),
    "other-forwarded-for": (
        {"User-Agent": "Browser/1", "X-Forwarded-For": "198.51.100.9"},
        {},
    ),
    "other-cookies": ({"User-Agent": "Browser/1", "Cookie": "theme=dark"}, {}),
}


@pytest.mark.parametrize("difference", list(_CLIENTS))
def test_identical_flask_cookies_of_two_clients_are_never_joined(difference: str) -> None:
    """Two users whose Flask cookies are byte-identical (same values signed in the same second)
    come in within the join window: each gets a session of their own, and neither reads or
    overwrites the other's data."""
    cookie = _flask_cookie({"user": "guest"})
    app = _upgraded_app()
    alice = app.test_client()
    alice.set_cookie("session", cookie)
    assert alice.get("/note/alice-secret", headers={"User-Agent": "Browser/1"}).text == "None"
    headers, environ = _CLIENTS[difference]
    bob = app.test_client()
    bob.set_cookie("session", cookie)
    if "Cookie" in headers:
        bob.set_cookie("theme", "dark")
        headers = {k: v for k, v in headers.items() if k != "Cookie"}
    reply = bob.get("/note/bob-note", headers=headers, environ_base=environ)
    assert reply.text == "None", "bob read alice's data"
    alice_cookie, bob_cookie = alice.get_cookie("session"), bob.get_cookie("session")
    assert alice_cookie is not None and bob_cookie is not None
    assert alice_cookie.value != bob_cookie.value, "two clients share one session"
    assert alice.get("/dump", headers={"User-Agent": "Browser/1"}).json == {
        "user": "guest",
        "note": "alice-secret",
    }
    assert _state(app).manager.count() == 2


def test_parallel_first_requests_of_one_client_still_join() -> None:
    """What the join is for stays: one browser's parallel first requests (same address, user
    agent and cookies) end in one session through a real threaded server, every write landing."""
    cookie = _flask_cookie({"user": "guest"})
    app = _upgraded_app()
    parallel = 4
    gate = threading.Barrier(parallel)

    @app.get("/add/<key>")
    def add(key: str) -> str:
        user = session.get("user")
        gate.wait(timeout=10)
        session[key] = user
        return str(user)

    with serve(app) as url:
        sent = [
            partial(
                request,
                url,
                f"/add/k{i}",
                cookie_header=f"session={cookie}",
                headers={"User-Agent": "Browser/1"},
            )
            for i in range(parallel)
        ]
        replies = in_parallel(*sent)
        assert [reply.text for reply in replies] == ["guest"] * parallel
        values = {c.value for reply in replies for c in reply.set_cookies("session")}
        assert len(values) == 1
    assert _state(app).manager.count() == 1


# -- forwarding records --------------------------------------------------------------------------


def test_forwarding_seal_never_reuses_its_pad() -> None:
    """Two moves from one origin (a Flask cookie replayed after the grace moves again) sealed
    with the same pad would give away one new ID to whoever knows the other: XOR the two
    records and the known ID. Each seal is fresh: that recovers nothing, and sealing the same
    ID twice gives two different records."""
    origin, secret = "cookie:" + "ab" * 32, "secret"
    first, second = new_session_id(), new_session_id()
    sealed_first = bytes.fromhex(seal_forward(first, origin, secret))
    sealed_second = bytes.fromhex(seal_forward(second, origin, secret))
    assert len(sealed_first) == len(sealed_second)
    recovered = bytes(
        a ^ b ^ c
        for a, b, c in zip(
            sealed_first, sealed_second, first.encode().ljust(len(sealed_first)), strict=True
        )
    )
    assert second.encode() not in recovered
    assert seal_forward(first, origin, secret) != seal_forward(first, origin, secret)
    assert open_forward(sealed_first.hex(), origin, secret) == first
    assert open_forward(sealed_second.hex(), origin, secret) == second


def test_forwarding_seal_refuses_tampering() -> None:
    """A seal changed in one bit opens to nothing (it is authenticated), and a seal of one
    origin opens nothing under another."""
    new_id, origin = new_session_id(), "cookie:" + "cd" * 32
    sealed = bytearray(bytes.fromhex(seal_forward(new_id, origin, "secret")))
    assert open_forward(bytes(sealed).hex(), "cookie:" + "ce" * 32, "secret") is None
    for position in range(len(sealed)):
        flipped = bytearray(sealed)
        flipped[position] ^= 1
        assert open_forward(bytes(flipped).hex(), origin, "secret") is None
