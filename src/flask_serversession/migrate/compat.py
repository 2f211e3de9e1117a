"""Flask-Session's configuration keys: our store where they say, theirs kept as the source."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask

from ..errors import ConfigurationError, SessionStoreUnavailable
from ..interface import ServerSessionInterface
from ..stores import Store
from .legacy import (
    _SID_BYTES,
    LegacyStore,
    MemcachedLegacy,
    MigrationStats,
    RedisLegacy,
    SQLAlchemyLegacy,
)
from .plugin import Migration

logger = logging.getLogger("flask_serversession.migrate")


#: SESSION_TYPE values we cannot serve, and what to use instead.
UNSUPPORTED_TYPES = {
    "filesystem": "filesystem: use the default SQLite store (leave SESSION_STORE unset, or"
    " SESSION_STORE = 'sqlite:///path/to/sessions.db'), which is one file shared by every process",
    "cachelib": "cachelib: use Redis (SESSION_TYPE = 'redis' with SESSION_REDIS, or SESSION_STORE"
    " = 'redis://host:6379/0'), or the default SQLite store for one machine",
    "mongodb": "mongodb: there is no MongoDB store; the closest is the SQL store (SESSION_TYPE ="
    " 'sqlalchemy', or SESSION_STORE = 'postgresql://...'), or Redis",
    "dynamodb": "dynamodb: there is no DynamoDB store; the closest is Redis (e.g. ElastiCache:"
    " SESSION_STORE = 'rediss://...'), or the SQL store on PostgreSQL",
}


@dataclass
class FlaskSessionSetup:
    """What Flask-Session's keys say: our store (``None``: not implied), the old store to
    migrate from, and cookie and permanence rules."""

    session_type: str | None = None
    store: Store | None = None
    legacy: LegacyStore | None = None
    use_signer: bool = False
    permanent: bool = False
    migrate_cookie_sessions: bool = False
    stats: MigrationStats = field(default_factory=MigrationStats)

    def plugin(self, interface: ServerSessionInterface) -> Migration | None:
        """The migration plug-in for ``interface``, if there is anything to migrate."""
        if self.legacy is None and not self.migrate_cookie_sessions:
            return None
        return Migration(interface, self)


def flask_session_setup(
    app: Flask, values: Mapping[str, Any], key_prefix: str | None
) -> FlaskSessionSetup:
    """Read Flask-Session's configuration keys; raise ConfigurationError at start-up."""
    kind = _session_type(values)
    setup = FlaskSessionSetup(session_type=kind)
    prefix = key_prefix if key_prefix is not None else "session:"
    if kind is not None:
        setup.store, setup.legacy = _STORES[kind](app, values, prefix)
    if not _migrates(values, kind):
        setup.legacy = None
    setup.use_signer = bool(values.get("SESSION_USE_SIGNER", False))
    permanent = values.get("SESSION_PERMANENT")
    setup.permanent = bool(permanent) if permanent is not None else kind is not None
    length = _id_length(values)
    if setup.legacy is not None:
        setup.legacy.expect_ids_of(length)
    setup.migrate_cookie_sessions = bool(values.get("SESSION_MIGRATE_COOKIE_SESSIONS", False))
    return setup


def _session_type(values: Mapping[str, Any]) -> str | None:
    """``SESSION_TYPE``, lower case, if it is one we serve (``None``: none, or ``"null"``)."""
    raw_type = values.get("SESSION_TYPE")
    kind = str(raw_type).lower() if raw_type is not None else None
    if kind is None or kind == "null":
        return None
    if kind in UNSUPPORTED_TYPES:
        raise ConfigurationError(f"SESSION_TYPE {UNSUPPORTED_TYPES[kind]}")
    if kind not in _STORES:
        raise ConfigurationError(
            f"SESSION_TYPE {raw_type!r} is not one of redis, memcached, sqlalchemy (or"
            f" Flask-Session's filesystem, cachelib, mongodb, dynamodb)"
        )
    return kind


def _migrates(values: Mapping[str, Any], kind: str | None) -> bool:
    migrate = values.get("SESSION_MIGRATE_FROM_FLASK_SESSION")
    if migrate is None:
        return kind is not None
    if migrate and kind is None:
        raise ConfigurationError(
            "SESSION_MIGRATE_FROM_FLASK_SESSION needs SESSION_TYPE (and its client) to know"
            " where Flask-Session kept its sessions"
        )
    return bool(migrate)


def _id_length(values: Mapping[str, Any]) -> int:
    """``SESSION_ID_LENGTH``: which cookies have the shape of Flask-Session's IDs."""
    length = values.get("SESSION_ID_LENGTH")
    if length is None:
        return _SID_BYTES
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= 256:
        raise ConfigurationError(
            f"SESSION_ID_LENGTH must be a whole number of bytes from 1 to 256, got {length!r}"
        )
    logger.info(
        "SESSION_ID_LENGTH=%r only tells which cookies are Flask-Session's: our session IDs"
        " are always 256 random bits",
        length,
    )
    return length


def _redis(app: Flask, values: Mapping[str, Any], prefix: str) -> tuple[Store, LegacyStore]:
    client = values.get("SESSION_REDIS")
    if client is None:
        raise ConfigurationError(
            "SESSION_TYPE 'redis' needs SESSION_REDIS (a redis.Redis client): Flask-Session fell"
            " back to redis.Redis() on localhost, we never pick a host silently; set"
            " SESSION_REDIS = redis.Redis(host='localhost', port=6379) to keep that"
        )
    from ..stores.redis import RedisStore

    return RedisStore(client, prefix=prefix), RedisLegacy(client, prefix)


def _memcached(app: Flask, values: Mapping[str, Any], prefix: str) -> tuple[Store, LegacyStore]:
    client = values.get("SESSION_MEMCACHED")
    if client is None:
        raise ConfigurationError(
            "SESSION_TYPE 'memcached' needs SESSION_MEMCACHED (a pymemcache client):"
            " Flask-Session fell back to a client of 127.0.0.1:11211, we never pick a host"
            " silently; set SESSION_MEMCACHED ="
            " pymemcache.client.base.PooledClient(('127.0.0.1', 11211)) to keep that"
        )
    from ..stores.memcached import MemcachedStore

    return MemcachedStore(client, prefix=prefix), MemcachedLegacy(client, prefix)


#: The table our sessions go in when Flask-Session's SQLAlchemy keys say where the database is.
_OUR_TABLE = "serversession"


def _sqlalchemy(
    app: Flask, values: Mapping[str, Any], prefix: str
) -> tuple[Store, SQLAlchemyLegacy | None]:
    db = values.get("SESSION_SQLALCHEMY")
    if db is None:
        raise ConfigurationError(
            "SESSION_TYPE 'sqlalchemy' needs SESSION_SQLALCHEMY (your Flask-SQLAlchemy db,"
            " initialised on the app first): Flask-Session made a SQLAlchemy(app) of its own,"
            " we use the app's; set SESSION_SQLALCHEMY = db, your SQLAlchemy(app)"
        )
    bind_key = values.get("SESSION_SQLALCHEMY_BIND_KEY")
    schema = values.get("SESSION_SQLALCHEMY_SCHEMA")
    table = values.get("SESSION_SQLALCHEMY_TABLE") or "sessions"
    try:
        with app.app_context():
            engine = db.engines[bind_key]
    except (KeyError, RuntimeError, AttributeError) as exc:
        raise ConfigurationError(
            f"SESSION_SQLALCHEMY: no engine for bind key {bind_key!r} ({exc}); call"
            " db.init_app(app) before ServerSession(app)"
        ) from None
    if table == _OUR_TABLE:
        raise ConfigurationError(
            f"SESSION_SQLALCHEMY_TABLE {table!r} is the table Flask-ServerSession keeps its own"
            " sessions in: name the table Flask-Session used (its default is 'sessions')"
        )
    store = _sql_store(app, db, engine, bind_key, schema)
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    try:
        exists = inspect(engine).has_table(table, schema=schema)
    except SQLAlchemyError as exc:
        raise SessionStoreUnavailable(f"Flask-Session table {table!r}", str(exc)) from exc
    if not exists:
        # Flask-Session never ran here: nothing to move, and no cookie should make every
        # request read a table that is not there.
        logger.info("no Flask-Session table %r: there are no sessions to move from it", table)
        return store, None
    return store, SQLAlchemyLegacy(engine, prefix, table, schema)


def _sql_store(app: Flask, db: Any, engine: Any, bind_key: str | None, schema: str | None) -> Store:
    """Our store in the database of Flask-Session's engine."""
    if engine.dialect.name != "sqlite":
        from ..stores.sql import SQLStore

        return SQLStore.from_flask_sqlalchemy(
            db, bind_key, app=app, table=_OUR_TABLE, schema=schema
        )
    if _in_memory_sqlite(engine.url):
        # The database lives as long as this process, shared by its threads (Flask-SQLAlchemy
        # keeps one connection for it): so does the memory store, without funnelling every
        # request through that one connection, and without a table in the app's database.
        from ..stores.memory import MemoryStore

        logger.info(
            "SESSION_SQLALCHEMY is an in-memory SQLite database: sessions are kept in this"
            " process's memory (the memory store), and end with it, as that database does"
        )
        return MemoryStore()
    from ..stores.sqlite import SQLiteStore

    return SQLiteStore(engine.url.database, table=_OUR_TABLE)


def _in_memory_sqlite(url: Any) -> bool:
    """Whether the SQLAlchemy ``url`` of an SQLite engine names an in-memory database:
    ``sqlite://``, ``sqlite:///``, ``sqlite:///:memory:`` or a ``file:`` URI with
    ``mode=memory``."""
    database = url.database
    if not database or database == ":memory:":
        return True
    return bool(url.query.get("mode") == "memory")


#: Our store and Flask-Session's, by ``SESSION_TYPE``.
_STORES: dict[str, Callable[[Flask, Mapping[str, Any], str], tuple[Store, LegacyStore | None]]] = {
    "redis": _redis,
    "memcached": _memcached,
    "sqlalchemy": _sqlalchemy,
}
