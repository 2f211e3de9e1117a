"""What an app moving from Flask-Session 0.8 meets when it changes only its import (issue 18).

Flask-Session's own suite drives an app through a handful of views: store a value, read it back,
change it, delete it, with ``Vary: Cookie`` on the responses that used the session and a cookie
from the first write on. :func:`test_flask_session_behaviour` walks the same story, in our own
words, through ``from flask_serversession import Session`` and ``SESSION_TYPE`` on every store
Flask-Session and we share. The start-up checks a migrating app hits first are above it.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask, request, session
from flask.sessions import SecureCookieSessionInterface
from flask_sqlalchemy import SQLAlchemy
from pymemcache.client.base import Client as MemcacheClient  # type: ignore[import-untyped]
from servers import ServerProcess
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from flask_serversession import ConfigurationError, ServerSession, Session
from flask_serversession.extension import _State
from flask_serversession.stores.memcached import MemcachedStore
from flask_serversession.stores.memory import MemoryStore
from flask_serversession.stores.redis import RedisStore
from flask_serversession.stores.sql import SQLStore
from flask_serversession.stores.sqlite import SQLiteStore

#: Key prefixes, one per test, so that tests sharing a Redis or memcached never meet.
_prefixes = itertools.count()

# -- start-up: Flask-Session's keys (moved here from test_migrate.py) ---------------------------


@pytest.mark.parametrize(
    ("kind", "closest"),
    [
        ("filesystem", "use the default SQLite store"),
        ("cachelib", "use Redis"),
        ("mongodb", "closest is the SQL store"),
        ("dynamodb", "closest is Redis"),
    ],
)
def test_unsupported_types_fail_at_start_up(kind: str, closest: str) -> None:
    app = Flask(__name__)
    app.config["SESSION_TYPE"] = kind
    with pytest.raises(ConfigurationError, match=f"SESSION_TYPE {kind}: .*{closest}"):
        Session(app)


@pytest.fixture
def redis_client(redis_server: ServerProcess) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


def test_flask_session_keys_accepted(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    app = Flask(__name__)
    app.secret_key = "migration-secret"  # SESSION_TYPE needs one at start-up (issue 18)
    app.config.update(
        SESSION_TYPE="redis",
        SESSION_REDIS=redis_client,
        SESSION_KEY_PREFIX=f"fscompat{next(_prefixes)}:",
        SESSION_PERMANENT=False,
        SESSION_USE_SIGNER=True,
        SESSION_ID_LENGTH=16,
        SESSION_CLEANUP_N_REQUESTS=100,
        SESSION_SERIALIZATION_FORMAT="json",
    )
    with caplog.at_level(logging.INFO):
        Session(app)
    assert "SESSION_ID_LENGTH=16 only tells which cookies are Flask-Session's" in caplog.text
    state: _State = app.extensions["serversession"]
    legacy = state.config.flask_session.legacy
    assert legacy is not None  # IDs of 16 bytes: 22 characters, and no other length
    assert legacy.is_sid("a" * 22) and not legacy.is_sid("a" * 43)
    assert state.config.permanent is False
    assert type(state.store).__name__ == "RedisStore"
    with pytest.raises(ConfigurationError, match="needs SESSION_REDIS"):
        Session(_redis_less())


def _redis_less() -> Flask:
    app = Flask(__name__)
    app.config["SESSION_TYPE"] = "redis"
    return app


def test_migrate_without_type_is_refused() -> None:
    app = Flask(__name__)
    app.config.update(SESSION_STORE="memory://", SESSION_MIGRATE_FROM_FLASK_SESSION=True)
    with pytest.raises(ConfigurationError, match="needs SESSION_TYPE"):
        Session(app)


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


# -- start-up: in-memory SQLite ------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///", "sqlite:///:memory:"])
def test_in_memory_sqlite_gives_the_memory_store(uri: str) -> None:
    """Flask-Session's own SQLAlchemy test uses an in-memory SQLite database; before issue 18
    start-up failed with "an SQLite store needs a file path". That database lives as long as
    the process, shared by its threads: the memory store does the same."""
    db = SQLAlchemy()
    app = Flask(__name__)
    app.secret_key = "a key"
    app.config.update(SQLALCHEMY_DATABASE_URI=uri, SESSION_TYPE="sqlalchemy", SESSION_SQLALCHEMY=db)
    db.init_app(app)
    Session(app)
    assert isinstance(ServerSession.store_of(app), MemoryStore)
    assert ServerSession.config_of(app).flask_session.legacy is None  # no Flask-Session table


# -- Flask-Session's behaviour, on every store it and we share -----------------------------------

#: Each store Flask-Session 0.8 and we both have, as ``SESSION_TYPE`` and its client name it;
#: and the class of our store it gives.
SHARED_STORES = {
    "redis": RedisStore,
    "memcached": MemcachedStore,
    "sqlalchemy-sqlite-file": SQLiteStore,
    "sqlalchemy-postgresql": SQLStore,
    "sqlalchemy-sqlite-memory": MemoryStore,
}


@pytest.fixture(params=list(SHARED_STORES))
def store_kind(request: pytest.FixtureRequest) -> str:
    """One key of :data:`SHARED_STORES`."""
    kind: str = request.param
    return kind


@pytest.fixture
def flask_session_app(
    request: pytest.FixtureRequest, store_kind: str, tmp_path: Path
) -> Iterator[Flask]:
    """The app of Flask-Session's suite on one store, configured with Flask-Session's keys as
    its users write them, on this run's servers (a fresh key prefix or database file;
    PostgreSQL's table dropped after)."""
    prefix = f"fscompat{next(_prefixes)}:"
    if store_kind == "redis":
        server: ServerProcess = request.getfixturevalue("redis_server")
        client = redis.Redis(port=server.port)
        yield _app({"SESSION_TYPE": "redis", "SESSION_REDIS": client, "SESSION_KEY_PREFIX": prefix})
        client.close()
    elif store_kind == "memcached":
        server = request.getfixturevalue("memcached_server")
        mc = MemcacheClient(("127.0.0.1", server.port), timeout=5)
        yield _app(
            {"SESSION_TYPE": "memcached", "SESSION_MEMCACHED": mc, "SESSION_KEY_PREFIX": prefix}
        )
        mc.close()
    else:
        yield from _sqlalchemy_app(request, store_kind.removeprefix("sqlalchemy-"), tmp_path)


def _sqlalchemy_app(
    request: pytest.FixtureRequest, database: str, tmp_path: Path
) -> Iterator[Flask]:
    if database == "postgresql":
        uri = request.getfixturevalue("pg_server").url
    else:
        uri = f"sqlite:///{tmp_path / 'app.db'}" if database == "sqlite-file" else "sqlite://"
    # NullPool: no connection outlives the test; in memory, Flask-SQLAlchemy's one connection.
    options = {} if database == "sqlite-memory" else {"poolclass": NullPool}
    db = SQLAlchemy(engine_options=options)
    app = _app(
        {"SQLALCHEMY_DATABASE_URI": uri, "SESSION_TYPE": "sqlalchemy", "SESSION_SQLALCHEMY": db},
        setup=db.init_app,  # before Session(app), as Flask-Session asks too
    )
    yield app
    with app.app_context():
        if database == "postgresql":
            with db.engine.begin() as conn:
                conn.execute(text("DROP TABLE IF EXISTS serversession"))
        db.engine.dispose()


def _app(config: dict[str, Any], setup: Callable[[Flask], None] | None = None) -> Flask:
    """An app with the views of Flask-Session's suite, set up as its users do, with our
    ``Session`` imported in place of Flask-Session's."""
    app = Flask(__name__)
    app.secret_key = "compat-secret"
    app.config.update(config)
    if setup is not None:
        setup(app)

    @app.get("/")
    def hello() -> str:
        return "hello world"

    @app.post("/set")
    def set_value() -> str:
        session["value"] = request.form["value"]
        return "value set"

    @app.post("/modify")
    def modify() -> str:
        session["value"] = request.form["value"]
        return "value set"

    @app.post("/delete")
    def delete() -> str:
        del session["value"]
        return "value deleted"

    @app.get("/get")
    def get() -> str:
        value: str = session.get("value", "no value set")
        return value

    Session(app)
    return app


def test_flask_session_behaviour(flask_session_app: Flask, store_kind: str) -> None:
    app = flask_session_app
    assert type(ServerSession.store_of(app)) is SHARED_STORES[store_kind]
    client = app.test_client()

    # A view that does not touch the session: no cookie, no Vary.
    response = client.get("/")
    assert response.text == "hello world"
    assert "Set-Cookie" not in response.headers and "Vary" not in response.headers
    # Reading an empty session: nothing stored, so still no cookie; but the answer depended
    # on the cookie, so a cache must key it by the cookie.
    response = client.get("/get")
    assert response.text == "no value set" and "Set-Cookie" not in response.headers
    assert response.headers["Vary"] == "Cookie"
    assert client.get_cookie("session") is None

    # The first write sends the cookie: our signed ID, never the value.
    response = client.post("/set", data={"value": "42"})
    assert response.text == "value set" and response.headers["Vary"] == "Cookie"
    cookie = client.get_cookie("session")
    # (Only the ID and its signature: a test for "42" in it failed when the random text held it.)
    assert cookie is not None and re.fullmatch(r"[\w-]{43}\.[\w-]{43}", cookie.value, re.ASCII)
    assert cookie.expires is not None  # SESSION_PERMANENT: True by default, as Flask-Session's
    response = client.get("/get")
    assert response.text == "42" and response.headers["Vary"] == "Cookie"
    assert app.test_client().get("/get").text == "no value set"  # another visitor

    # Modify, then delete.
    assert client.post("/modify", data={"value": "43"}).text == "value set"
    assert client.get("/get").text == "43"
    assert client.post("/delete").text == "value deleted"
    assert client.get("/get").text == "no value set"

    # The value was on the server: the cookie alone, in a fresh client, finds it.
    assert client.post("/set", data={"value": "44"}).text == "value set"
    replay = app.test_client()
    latest = client.get_cookie("session")
    assert latest is not None
    replay.set_cookie("session", latest.value)
    assert replay.get("/get").text == "44"


# -- start-up: Flask-Session's fallbacks for a missing client ------------------------------------


@pytest.mark.parametrize(
    ("kind", "replacement"),
    [
        ("redis", "SESSION_REDIS = redis.Redis(host='localhost', port=6379)"),
        (
            "memcached",
            "SESSION_MEMCACHED = pymemcache.client.base.PooledClient(('127.0.0.1', 11211))",
        ),
        ("sqlalchemy", "SESSION_SQLALCHEMY = db, your SQLAlchemy(app)"),
    ],
)
def test_a_missing_client_is_refused_naming_the_line_that_replaces_the_fallback(
    kind: str, replacement: str
) -> None:
    """Flask-Session made a client when none was given (Redis and memcached on localhost, a
    SQLAlchemy(app)); we refuse, and say which one line does what its fallback did."""
    app = Flask(__name__)
    app.secret_key = "a key"
    app.config["SESSION_TYPE"] = kind
    with pytest.raises(ConfigurationError) as info:
        Session(app)
    message = str(info.value)
    assert message.startswith(f"SESSION_TYPE {kind!r} needs SESSION_") and "\n" not in message
    assert "Flask-Session" in message and replacement in message
