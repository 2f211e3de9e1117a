"""Moving from Flask-Session 0.8 without logging anyone out.

Apps run under the real Flask-Session against a real redis-server, SQLAlchemy (on SQLite,
PostgreSQL and MariaDB) and memcached, make sessions with their test client, then switch to us
(same configuration, changed import): every session is still logged in, with our cookie, and
the old record is gone. Pickled records are planted as raw bytes and never unpickled. Flask's
cookie sessions move in test_migrate_cookie.py.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from migrate_apps import USERS, check_parallel_first_requests, flask_session_app, our_app
from servers import ServerProcess
from sql_servers import SQLServer
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from flask_serversession.cli import sessions
from flask_serversession.extension import _State
from flask_serversession.ids import new_session_id, store_key
from flask_serversession.interface import ServerSessionInterface
from flask_serversession.migrate import (
    MOVE_GRACE,
    SQLAlchemyLegacy,
    decode_record,
    forward_record,
    imported_id,
    moved_id,
    open_forward,
    seal_forward,
)

#: pickle.dumps({"user": "eve"}, protocol=4), as bytes: written, never loaded.
PICKLED = b"\x80\x04\x95\x11\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x04user\x94\x8c\x03eve\x94s."
_counter = itertools.count()


def _prefix() -> str:
    return f"fsmig{next(_counter)}:"


def _log_in_everyone(app: Flask) -> dict[str, str]:
    """Log each user in under Flask-Session; their cookie values."""
    cookies = {}
    for name in USERS:
        client = app.test_client()
        assert client.get(f"/login/{name}").status_code == 200
        cookie = client.get_cookie("session")
        assert cookie is not None
        cookies[name] = cookie.value
        assert client.get("/whoami").text == f"{name}|[1, 2, '{name}']"
    return cookies


def _check_still_logged_in(app: Flask, cookies: dict[str, str]) -> dict[str, str]:
    """Each old cookie finds its user's session and is replaced by ours; the new one works."""
    ours = {}
    for name, value in cookies.items():
        client = app.test_client()
        client.set_cookie("session", value)
        assert client.get("/none").headers.get("Set-Cookie") is None  # untouched: nothing moves
        response = client.get("/whoami")
        assert response.text == f"{name}|[1, 2, '{name}']"
        new = client.get_cookie("session")
        assert new is not None and new.value != value and len(new.value) == 87
        assert new.expires is not None  # SESSION_PERMANENT (Flask-Session's default) kept
        ours[name] = new.value
        again = app.test_client()
        again.set_cookie("session", new.value)
        assert again.get("/whoami").text == f"{name}|[1, 2, '{name}']"
        # A request sent at the same time with the old cookie (a page load's others) ends in
        # the same session: the move left its new ID for them, for MOVE_GRACE seconds.
        overlapping = app.test_client()
        overlapping.set_cookie("session", value)
        assert overlapping.get("/whoami").text == f"{name}|[1, 2, '{name}']"
        joined = overlapping.get_cookie("session")
        assert joined is not None and joined.value == new.value
    # After the grace, the old cookie finds nothing any more: the old record was deleted.
    interface = app.session_interface
    assert isinstance(interface, ServerSessionInterface)
    later = time.time() + MOVE_GRACE + 1
    interface.clock = lambda: later
    try:
        for value in cookies.values():
            stale = app.test_client()
            stale.set_cookie("session", value)
            response = stale.get("/whoami")
            assert response.text == "None|None"
            assert response.headers.get("Set-Cookie") is None  # read only: nothing stored
    finally:
        interface.clock = time.time
    return ours


def _stats(app: Flask) -> Any:
    state: _State = app.extensions["serversession"]
    return state.config.flask_session.stats


# -- Redis ---------------------------------------------------------------------------------------


@pytest.fixture
def redis_client(redis_server: ServerProcess) -> Iterator[redis.Redis]:
    client = redis.Redis(port=redis_server.port)
    yield client
    client.close()


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_redis_sessions_move_on_first_use(redis_client: redis.Redis, signed: bool) -> None:
    prefix = _prefix()
    config = {
        "SESSION_TYPE": "redis",
        "SESSION_REDIS": redis_client,
        "SESSION_KEY_PREFIX": prefix,
        "SESSION_USE_SIGNER": signed,
    }
    cookies = _log_in_everyone(flask_session_app(config))
    old_keys = {
        prefix + (value.rsplit(".", 1)[0] if signed else value) for value in cookies.values()
    }
    assert all(redis_client.exists(key) for key in old_keys)

    app = our_app(config)
    _check_still_logged_in(app, cookies)
    assert not any(redis_client.exists(key) for key in old_keys)
    assert _stats(app).moved == len(USERS)


def test_redis_pickled_record_is_skipped_never_unpickled(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = _prefix()
    config = {"SESSION_TYPE": "redis", "SESSION_REDIS": redis_client, "SESSION_KEY_PREFIX": prefix}
    sid = "p" * 43
    redis_client.set(prefix + sid, PICKLED, ex=600)
    app = our_app(config)
    client = app.test_client()
    client.set_cookie("session", sid)
    with caplog.at_level(logging.WARNING, "flask_serversession.migrate"):
        assert client.get("/whoami").text == "None|None"
    assert _stats(app).skipped == 1 and _stats(app).moved == 0
    assert "pickled record" in caplog.text and "never unpickled" in caplog.text
    assert redis_client.get(prefix + sid) == PICKLED  # left alone, never loaded


def test_decode_record_formats() -> None:
    import msgspec

    assert decode_record(msgspec.msgpack.encode({"a": [1, "x"]})) == {"a": [1, "x"]}
    assert decode_record(b'{"a": true}') == {"a": True}
    with pytest.raises(Exception, match="never unpickled"):
        decode_record(PICKLED)
    with pytest.raises(Exception, match="neither msgpack nor JSON"):
        decode_record(b"\x00garbage\xff\xfe")


def test_bad_signed_cookie_is_not_migrated(redis_client: redis.Redis) -> None:
    prefix = _prefix()
    config = {
        "SESSION_TYPE": "redis",
        "SESSION_REDIS": redis_client,
        "SESSION_KEY_PREFIX": prefix,
        "SESSION_USE_SIGNER": True,
    }
    cookies = _log_in_everyone(flask_session_app(config))
    app = our_app(config)
    client = app.test_client()
    sid = cookies["alice"].rsplit(".", 1)[0]
    client.set_cookie("session", sid + ".forged")
    assert client.get("/whoami").text == "None|None"
    assert redis_client.exists(prefix + sid)  # a forged signature reached no store


def test_parallel_first_requests_end_in_one_session(redis_client: redis.Redis) -> None:
    """Through a real threaded server: each user's first PARALLEL requests with the old
    Flask-Session cookie end in one new session, and every write lands there."""
    prefix = _prefix()
    config = {"SESSION_TYPE": "redis", "SESSION_REDIS": redis_client, "SESSION_KEY_PREFIX": prefix}
    cookies = _log_in_everyone(flask_session_app(config))
    check_parallel_first_requests(our_app(config), cookies)
    for old in cookies.values():
        assert not redis_client.exists(prefix + old)


def test_a_request_that_loses_the_claim_joins_the_winner(redis_client: redis.Redis) -> None:
    """Another request claimed the move (its forwarding record is there) but has not moved the
    session yet: this one moves it to the winner's ID, so both end in the same session."""
    prefix = _prefix()
    config = {"SESSION_TYPE": "redis", "SESSION_REDIS": redis_client, "SESSION_KEY_PREFIX": prefix}
    cookies = _log_in_everyone(flask_session_app(config))
    app = our_app(config)
    state: _State = app.extensions["serversession"]
    sid = cookies["alice"]  # unsigned: the cookie is the sid
    winner = new_session_id()
    assert app.secret_key is not None
    forward = forward_record(winner, sid, app.secret_key, time.time())
    assert state.store.create(store_key(moved_id(sid)), forward)
    client = app.test_client()
    client.set_cookie("session", sid)
    assert client.get("/whoami").text == "alice|[1, 2, 'alice']"
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.value.split(".")[0] == winner
    assert state.store.load(store_key(winner)) is not None


def test_forwarding_is_sealed() -> None:
    """The forwarding record holds the new ID only sealed under the secret key and the old ID:
    a dump of the store reveals no ID; the wrong key or old ID opens nothing."""
    new_id, sid = new_session_id(), "old-session-id-1234"
    sealed = seal_forward(new_id, sid, "secret")
    assert new_id.encode().hex() not in sealed  # not the ID in the clear
    assert open_forward(sealed, sid, "secret") == new_id
    assert open_forward(sealed, sid, b"secret") == new_id
    assert open_forward(sealed, sid, "other secret") is None
    assert open_forward(sealed, sid + "x", "secret") is None
    assert open_forward("zz", sid, "secret") is None
    assert open_forward("00" * 100, sid, "secret") is None


# -- SQLAlchemy on SQLite, PostgreSQL and MariaDB ----------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def database_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The app's SQLALCHEMY_DATABASE_URI, as Flask-SQLAlchemy users have it: a file, or the
    run's PostgreSQL or MariaDB (whose session tables are dropped afterwards)."""
    kind: str = request.param
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'app.db'}"
        return
    server: SQLServer = request.getfixturevalue(
        "pg_server" if kind == "postgresql" else "mariadb_server"
    )
    yield server.url
    engine = create_engine(server.url)
    try:
        with engine.begin() as conn:
            for table in ("sessions", "serversession"):
                conn.execute(text(f"DROP TABLE IF EXISTS {table}"))
    finally:
        engine.dispose()


@pytest.fixture
def flask_sqlalchemy() -> Callable[[], SQLAlchemy]:
    """Makes Flask-SQLAlchemy extensions (one per app, as one per process would be) whose
    connections close when returned: the test's apps end with no connection left open."""
    return lambda: SQLAlchemy(engine_options={"poolclass": NullPool})


def _sqlalchemy_config(uri: str, db: SQLAlchemy) -> dict[str, Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": uri,
        "SESSION_TYPE": "sqlalchemy",
        "SESSION_SQLALCHEMY": db,
    }


def test_sqlalchemy_sessions_move_on_first_use(
    database_uri: str, flask_sqlalchemy: Callable[[], SQLAlchemy]
) -> None:
    old_db = flask_sqlalchemy()
    old = flask_session_app(_sqlalchemy_config(database_uri, old_db), old_db.init_app)
    cookies = _log_in_everyone(old)

    db = flask_sqlalchemy()  # a new process would have its own
    app = our_app(_sqlalchemy_config(database_uri, db), db.init_app)
    _check_still_logged_in(app, cookies)
    with app.app_context():
        count = db.session.execute(text("SELECT count(*) FROM sessions")).scalar()
        ours = db.session.execute(text("SELECT count(*) FROM serversession")).scalar()
    assert count == 0 and ours == 2 * len(USERS)  # each session and, for MOVE_GRACE, its forwarding
    # The forwarding records are no sessions: the management API leaves them out.
    state: _State = app.extensions["serversession"]
    assert state.manager.count() == len(USERS)
    assert len(list(state.manager.all())) == len(USERS)
    assert state.manager.stats()["count"] == len(USERS)


# -- bulk import ---------------------------------------------------------------------------------


def test_import_command_redis(redis_client: redis.Redis) -> None:
    prefix = _prefix()
    config = {"SESSION_TYPE": "redis", "SESSION_REDIS": redis_client, "SESSION_KEY_PREFIX": prefix}
    cookies = _log_in_everyone(flask_session_app(config))
    redis_client.set(prefix + "p" * 43, PICKLED, ex=600)
    redis_client.set(prefix + "u" * 43, b"\x00not a session\xff", ex=600)

    app = our_app(config)
    result = app.test_cli_runner().invoke(sessions, ["import", "--from", "flask-session"])
    assert "Imported: 3 moved, 1 skipped (pickled or expired), 1 failed." in result.stdout
    assert result.exit_code == 1  # one failed
    for value in cookies.values():
        assert not redis_client.exists(prefix + value)
    store = app.extensions["serversession"].store
    assert store.load(store_key(imported_id(cookies["alice"]))) is not None
    _check_still_logged_in(app, cookies)
    # Claimed: the imported record moved to a fresh ID, leaving a tombstone.
    record = store.load(store_key(imported_id(cookies["alice"])))
    assert record is None or record.ended
    # A second run finds nothing more to move than the records it could not.
    again = app.test_cli_runner().invoke(sessions, ["import", "--from", "flask-session"])
    assert "Imported: 0 moved, 1 skipped (pickled or expired), 1 failed." in again.stdout


def test_import_command_sqlalchemy(
    database_uri: str, flask_sqlalchemy: Callable[[], SQLAlchemy]
) -> None:
    old_db = flask_sqlalchemy()
    cookies = _log_in_everyone(
        flask_session_app(_sqlalchemy_config(database_uri, old_db), old_db.init_app)
    )
    db = flask_sqlalchemy()
    app = our_app(_sqlalchemy_config(database_uri, db), db.init_app)
    legacy = app.extensions["serversession"].config.flask_session.legacy
    assert isinstance(legacy, SQLAlchemyLegacy)
    assert sorted(sid for sid, _, _ in legacy.scan(page=2)) == sorted(cookies.values())
    result = app.test_cli_runner().invoke(sessions, ["import", "--from", "flask-session"])
    assert result.exit_code == 0, result.output
    assert "Imported: 3 moved, 0 skipped (pickled or expired), 0 failed." in result.stdout
    with app.app_context():
        assert db.session.execute(text("SELECT count(*) FROM sessions")).scalar() == 0
    _check_still_logged_in(app, cookies)


def test_import_needs_a_flask_session_store() -> None:
    app = our_app({"SESSION_STORE": "memory://"})
    result = app.test_cli_runner().invoke(sessions, ["import", "--from", "flask-session"])
    assert result.exit_code == 5 and "no Flask-Session store is configured" in result.stderr


# -- Memcached -----------------------------------------------------------------------------------


def test_memcached_sessions_move_on_first_use(memcached_server: ServerProcess) -> None:
    from pymemcache.client.base import Client  # type: ignore[import-untyped]

    client = Client(("127.0.0.1", memcached_server.port), default_noreply=False, timeout=5)
    prefix = _prefix()
    config = {
        "SESSION_TYPE": "memcached",
        "SESSION_MEMCACHED": client,
        "SESSION_KEY_PREFIX": prefix,
    }
    cookies = _log_in_everyone(flask_session_app(config))
    assert all(client.get(prefix + value) is not None for value in cookies.values())
    app = our_app(config)
    _check_still_logged_in(app, cookies)
    assert all(client.get(prefix + value) is None for value in cookies.values())
    # Memcached cannot list its keys: the bulk import says so.
    result = app.test_cli_runner().invoke(sessions, ["import", "--from", "flask-session"])
    assert result.exit_code == 5 and "cannot list its sessions" in result.stderr
    client.close()
