"""Which cookies a migration lets reach a store (issue 13, items 2, 6, 7): a session's handle is
never a cookie, ours and the old store's keys never meet, and a cookie that cannot be an old
session ID is refused before any store is asked.
"""

from __future__ import annotations

import itertools
import secrets
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask, session
from flask_sqlalchemy import SQLAlchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rejections import rejections
from servers import ServerProcess
from sqlalchemy.pool import NullPool

from flask_serversession import Session
from flask_serversession.extension import _State
from flask_serversession.interface import ServerSessionInterface
from flask_serversession.migrate import SQLAlchemyLegacy
from flask_serversession.session import ServerSideSession
from flask_serversession.testing import CountingStore

_counter = itertools.count()


def _views(app: Flask) -> Flask:
    app.secret_key = "keyspace-secret"
    app.testing = True

    @app.get("/login/<name>")
    def login(name: str) -> str:
        session["user"] = name
        return "ok"

    @app.get("/whoami")
    def whoami() -> str:
        return str(session.get("user"))

    @app.get("/handle")
    def handle() -> str:
        assert isinstance(session, ServerSideSession)
        return str(session.handle)

    return app


def _app(config: dict[str, Any], setup: Callable[[Flask], None] | None = None) -> Flask:
    app = _views(Flask(__name__))
    app.config.update(config, SESSION_CLEANUP_INTERVAL=0)
    if setup is not None:
        setup(app)
    Session(app)
    return app


@pytest.fixture
def memcached_client(memcached_server: ServerProcess) -> Iterator[Any]:
    from pymemcache.client.base import Client  # type: ignore[import-untyped]

    client = Client(("127.0.0.1", memcached_server.port), default_noreply=False, timeout=5)
    yield client
    client.close()


@pytest.fixture
def redis_client(redis_server: ServerProcess) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


@pytest.fixture(params=["memcached", "redis", "sqlalchemy"])
def migrating_app(request: pytest.FixtureRequest, tmp_path: Path) -> Flask:
    """Our app, configured as a Flask-Session app was (unsigned cookies, Flask-Session's
    default), migrating from it."""
    prefix = f"fskey{next(_counter)}:"
    if request.param == "memcached":
        client = request.getfixturevalue("memcached_client")
        config = {"SESSION_TYPE": "memcached", "SESSION_MEMCACHED": client}
    elif request.param == "redis":
        client = request.getfixturevalue("redis_client")
        config = {"SESSION_TYPE": "redis", "SESSION_REDIS": client}
    else:
        db = SQLAlchemy(engine_options={"poolclass": NullPool})
        uri = f"sqlite:///{tmp_path / 'app.db'}"
        config = {
            "SQLALCHEMY_DATABASE_URI": uri,
            "SESSION_TYPE": "sqlalchemy",
            "SESSION_SQLALCHEMY": db,
        }
        app = _app(config, db.init_app)
        with app.app_context():  # the table Flask-Session made and kept its sessions in
            SQLAlchemyLegacy(db.engine, "session:", "sessions", None).table.create(db.engine)
        return _app(config, db.init_app)
    return _app({**config, "SESSION_KEY_PREFIX": prefix})


def test_a_handle_is_never_a_cookie(migrating_app: Flask) -> None:
    """The handle `flask sessions list` shows (and the CLI and docs call safe to show) sent as
    the cookie, as an attacker would: it reaches nothing of the victim's, and the victim stays
    logged in with their data."""
    victim = migrating_app.test_client()
    assert victim.get("/login/victim").status_code == 200
    handle = victim.get("/handle").text
    assert len(handle) == 43
    attacker = migrating_app.test_client()
    attacker.set_cookie("session", handle)
    assert attacker.get("/whoami").text == "None"
    assert attacker.get("/handle").text == "None"  # no session was moved to the attacker
    assert victim.get("/whoami").text == "victim"
    assert victim.get("/handle").text == handle


def _legacy_calls(app: Flask) -> tuple[CountingStore, list[str]]:
    """Count the calls a request makes on our store and on the old one."""
    state: _State = app.extensions["serversession"]
    interface = app.session_interface
    assert isinstance(interface, ServerSessionInterface)
    counting = CountingStore(interface.store)
    interface.store = counting
    legacy = state.config.flask_session.legacy
    assert legacy is not None
    calls: list[str] = []
    for method in ("get", "delete"):
        original = getattr(legacy, method)

        def counted(*args: Any, _name: str = method, _original: Any = original) -> Any:
            calls.append(_name)
            return _original(*args)

        setattr(legacy, method, counted)
    return counting, calls


def test_a_cookie_that_is_no_old_id_never_reaches_a_store(migrating_app: Flask) -> None:
    """With migration on, a cookie that is neither ours nor shaped as an ID Flask-Session
    issues (SESSION_ID_LENGTH 32: 43 URL-safe characters) is refused before any store is
    asked, and reported."""
    counting, legacy_calls = _legacy_calls(migrating_app)
    reasons = rejections(migrating_app)
    forged = [
        "x" * 42,
        "x" * 44,
        "x" * 250,
        "a" * 300,
        "has space" + "x" * 34,
        "é" * 43,
        "{" + "x" * 41 + "}",
    ]
    for cookie in forged:
        client = migrating_app.test_client()
        client.set_cookie("session", cookie)
        response = client.get("/whoami")
        assert response.status_code == 200 and response.text == "None"
    assert counting.total == 0 and legacy_calls == []
    assert len(reasons) == len(forged)


def test_an_unknown_old_id_is_reported_at_the_least_cost(migrating_app: Flask) -> None:
    """A well-shaped Flask-Session ID with unsigned cookies cannot be told forged without
    reading the old store: one read there, and the two reads of ours where an overlapping move
    or a bulk import would have left it; then `session_rejected` with ``"unknown"``."""
    counting, legacy_calls = _legacy_calls(migrating_app)
    reasons = rejections(migrating_app)
    client = migrating_app.test_client()
    client.set_cookie("session", secrets.token_urlsafe(32))
    response = client.get("/whoami")
    assert response.status_code == 200 and response.text == "None"
    assert legacy_calls == ["get"]
    assert counting.total == 2 and counting.calls["load"] == 2
    assert reasons == ["unknown"]


def test_a_bad_signature_never_reaches_a_store(redis_client: redis.Redis) -> None:
    """With SESSION_USE_SIGNER, an old-style cookie whose signature fails is refused without
    a store call."""
    app = _app(
        {
            "SESSION_TYPE": "redis",
            "SESSION_REDIS": redis_client,
            "SESSION_KEY_PREFIX": f"fskey{next(_counter)}:",
            "SESSION_USE_SIGNER": True,
        }
    )
    counting, legacy_calls = _legacy_calls(app)
    reasons = rejections(app)
    client = app.test_client()
    client.set_cookie("session", secrets.token_urlsafe(32) + ".forged-signature")
    assert client.get("/whoami").text == "None"
    assert counting.total == 0 and legacy_calls == []
    assert reasons == ["bad-signature"]


def test_old_table_named_as_ours_is_refused(tmp_path: Path) -> None:
    """Flask-Session's table and ours are two tables: configured as one, the app refuses to
    start rather than read its own sessions as old ones."""
    from flask_serversession import ConfigurationError

    db = SQLAlchemy(engine_options={"poolclass": NullPool})
    config = {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'app.db'}",
        "SESSION_TYPE": "sqlalchemy",
        "SESSION_SQLALCHEMY": db,
        "SESSION_SQLALCHEMY_TABLE": "serversession",
    }
    with pytest.raises(ConfigurationError, match="SESSION_SQLALCHEMY_TABLE"):
        _app(config, db.init_app)


_URL_SAFE = string.ascii_letters + string.digits + "-_"
_COOKIE_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from(_URL_SAFE), min_size=30, max_size=400),
    st.text(alphabet=st.sampled_from(_URL_SAFE + ".{}:%~ é\x7f"), max_size=400),
)


@pytest.fixture
def memcached_fuzz_app(memcached_client: Any) -> Flask:
    return _app(
        {
            "SESSION_TYPE": "memcached",
            "SESSION_MEMCACHED": memcached_client,
            "SESSION_KEY_PREFIX": "p" * 150,  # the longest prefix either library takes
        }
    )


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(cookie=_COOKIE_TEXT)
def test_fuzzed_cookies_with_memcached_migration_never_5xx(
    memcached_fuzz_app: Flask, cookie: str
) -> None:
    """Memcached refuses keys over 250 bytes or with spaces and control characters: no cookie
    may turn into such a key (a 503 'store unavailable'), whatever its length or characters."""
    client = memcached_fuzz_app.test_client()
    client.set_cookie("session", cookie)
    response = client.get("/whoami")
    assert response.status_code == 200, response.text
