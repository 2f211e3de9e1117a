"""The session implementations the test-client benchmark compares (run.py), and the app of one
of them for a WSGI server (http_bench.py): Flask's cookie session, Flask-ServerSession on each
store, Flask-Session 0.8 on SQLAlchemy (SQLite, PostgreSQL) and Redis.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

from flask import Flask
from harness import (
    BASELINE,
    HOST,
    Built,
    Servers,
    Variant,
    create_app,
    import_or_fail,
    memcached_server,
    redis_server,
)
from redis_counts import redis_admin
from sql_server import MARIADB, OURS_MARIADB, OURS_PG, PG, SQLServer, start_sql_servers

#: Key prefixes of the two Redis variants: equally long, so that MEMORY USAGE (which counts the
#: key) compares the stored sessions, not the prefixes.
OURS_REDIS_PREFIX = "bench:our:"
FLASK_SESSION_REDIS_PREFIX = "bench:fls:"
FLASK_SESSION_PG = "flask-session-sqlalchemy-postgresql"
OURS_TABLE = "serversession"


def _count_rows(path: Path, table: str) -> Callable[[], int]:
    def count() -> int:
        # closing(): sqlite3's own context manager only ends the transaction.
        with closing(sqlite3.connect(path)) as conn:
            return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    return count


def _count_keys(port: int, prefix: str) -> Callable[[], int]:
    def count() -> int:
        with redis_admin(port) as admin:
            return sum(1 for _ in admin.scan_iter(match=prefix + "*", count=1000))

    return count


def _no_session_setup(app: Flask) -> None:
    """The cookie session: Flask's own, nothing to install."""


def _ours(store: str, **extra: Any) -> Built:
    from flask_serversession import ServerSession

    def configure(app: Flask) -> None:
        ServerSession(app, store=store)

    app = create_app(configure)
    built = ServerSession.store_of(app)
    # The SQL store's engine: run.py counts its statements and times its reads.
    return Built(app, close=built.close, engine=getattr(built, "engine", None), **extra)


def _build_ours_sqlite(servers: Servers) -> Built:
    path = servers.tmp / "ours.sqlite3"
    # An absolute path gives the four slashes of an absolute SQLAlchemy-style URL.
    return _ours(f"sqlite:///{path}", stored_sessions=_count_rows(path, "serversession"))


def _build_ours_redis(servers: Servers) -> Built:
    port = servers.require("redis")
    return _ours(
        f"redis://{HOST}:{port}/0?prefix={OURS_REDIS_PREFIX}",
        stored_sessions=_count_keys(port, OURS_REDIS_PREFIX),
        redis_prefix=OURS_REDIS_PREFIX,
    )


def _build_ours_memcached(servers: Servers) -> Built:
    port = servers.require("memcached")
    return _ours(f"memcached://{HOST}:{port}?prefix={OURS_REDIS_PREFIX}")


def _build_ours_sql(kind: str, servers: Servers) -> Built:
    server: SQLServer = servers.require(kind)
    stored = functools.partial(server.count, OURS_TABLE)
    return _ours(f"{server.url}?table={OURS_TABLE}", stored_sessions=stored)


def _flask_session_sqlalchemy(name: str, uri: str, stored: Callable[[], int]) -> Built:
    session = import_or_fail(name, "flask_session").Session
    db = import_or_fail(name, "flask_sqlalchemy").SQLAlchemy()

    def configure(app: Flask) -> None:
        app.config.update(
            SQLALCHEMY_DATABASE_URI=uri, SESSION_TYPE="sqlalchemy", SESSION_SQLALCHEMY=db
        )
        db.init_app(app)
        # Flask-Session 0.8 creates its "sessions" table here (checkfirst), in an app context.
        session(app)

    app = create_app(configure)
    with app.app_context():
        engine = db.engine
    return Built(app, stored_sessions=stored, close=engine.dispose, engine=engine)


def _build_flask_session_sqlite(servers: Servers) -> Built:
    path = servers.tmp / "flask_session.sqlite3"
    name = "flask-session-sqlalchemy"
    return _flask_session_sqlalchemy(name, f"sqlite:///{path}", _count_rows(path, "sessions"))


def _build_flask_session_pg(servers: Servers) -> Built:
    server: SQLServer = servers.require(PG)
    stored = functools.partial(server.count, "sessions")
    return _flask_session_sqlalchemy(FLASK_SESSION_PG, server.url, stored)


def _build_flask_session_redis(servers: Servers) -> Built:
    session = import_or_fail("flask-session-redis", "flask_session").Session
    import redis

    port = servers.require("redis")
    # Flask-Session's documented set-up: a redis.Redis it is given, otherwise its defaults.
    client = redis.Redis(host=HOST, port=port)

    def configure(app: Flask) -> None:
        app.config.update(
            SESSION_TYPE="redis",
            SESSION_REDIS=client,
            SESSION_KEY_PREFIX=FLASK_SESSION_REDIS_PREFIX,
        )
        session(app)

    return Built(
        create_app(configure),
        stored_sessions=_count_keys(port, FLASK_SESSION_REDIS_PREFIX),
        close=client.close,
        redis_prefix=FLASK_SESSION_REDIS_PREFIX,
    )


VARIANTS: tuple[Variant, ...] = (
    Variant(
        BASELINE,
        "Flask's default signed-cookie session",
        lambda s: Built(create_app(_no_session_setup)),
    ),
    Variant("ours-memory", 'Flask-ServerSession, store="memory://"', lambda s: _ours("memory://")),
    Variant("ours-sqlite", "Flask-ServerSession, SQLite file store", _build_ours_sqlite),
    Variant(
        "ours-redis",
        f'Flask-ServerSession, store="redis://{HOST}:PORT/0?prefix={OURS_REDIS_PREFIX}"',
        _build_ours_redis,
        ("redis",),
    ),
    Variant(
        "ours-memcached",
        f'Flask-ServerSession, store="memcached://{HOST}:PORT"',
        _build_ours_memcached,
        ("memcached",),
    ),
    Variant(
        OURS_PG,
        f'Flask-ServerSession, store="postgresql+psycopg://...?table={OURS_TABLE}"',
        functools.partial(_build_ours_sql, PG),
        (PG,),
    ),
    Variant(
        OURS_MARIADB,
        f'Flask-ServerSession, store="mariadb+pymysql://...?table={OURS_TABLE}"',
        functools.partial(_build_ours_sql, MARIADB),
        (MARIADB,),
    ),
    Variant(
        "flask-session-sqlalchemy",
        'Flask-Session 0.8, SESSION_TYPE="sqlalchemy", Flask-SQLAlchemy on an SQLite file',
        _build_flask_session_sqlite,
    ),
    Variant(
        FLASK_SESSION_PG,
        'Flask-Session 0.8, SESSION_TYPE="sqlalchemy", Flask-SQLAlchemy on the same PostgreSQL'
        " server (psycopg 3)",
        _build_flask_session_pg,
        (PG,),
    ),
    Variant(
        "flask-session-redis",
        'Flask-Session 0.8, SESSION_TYPE="redis", SESSION_REDIS=redis.Redis(host, port)',
        _build_flask_session_redis,
        ("redis",),
    ),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}


def start_servers(servers: Servers, variants: Sequence[Variant]) -> None:
    """The servers the variants need, each on 127.0.0.1 and stopped by PID at the end."""
    needs = {need for variant in variants for need in variant.needs}
    if "redis" in needs:
        servers.start("redis", lambda: redis_server(servers.tmp / "redis"))
    if "memcached" in needs:
        servers.start("memcached", lambda: memcached_server(servers.tmp / "memcached"))
    start_sql_servers(servers, [kind for kind in (PG, MARIADB) if kind in needs])


def wsgi_app_from_env() -> Flask:
    """The app of one variant, for a WSGI server (http_bench.py runs it under gunicorn).

    ``BENCH_VARIANT`` names the variant, ``BENCH_DIR`` is the directory for its files and
    ``BENCH_REDIS_PORT`` the port of the redis-server on 127.0.0.1, if it needs one.
    """
    variant = VARIANTS_BY_NAME[os.environ["BENCH_VARIANT"]]
    port = os.environ.get("BENCH_REDIS_PORT")
    servers = Servers(ExitStack(), Path(os.environ["BENCH_DIR"]))
    if port:
        servers.started["redis"] = int(port)
    # Never closed: the worker process ends with it.
    return variant.build(servers).app
