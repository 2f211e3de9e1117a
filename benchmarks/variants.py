"""The session implementations the benchmarks compare, and the servers they run on.

The servers are the tests' own (tests/redis_servers.py, memcached_servers.py, sql_servers.py:
127.0.0.1, free ports, temp dirs, stopped by PID) with the benchmark's settings on top. The
variants: Flask's cookie session, Flask-ServerSession on each store, Flask-Session 0.8 on
SQLAlchemy (SQLite, PostgreSQL) and on Redis; ``wsgi_app_from_env`` serves one under gunicorn.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from harness import BASELINE, HOST, BenchmarkError, Built, Servers, Variant, create_app, progress

PG = "postgresql"
MARIADB = "mariadb"
#: Key prefixes of the two Redis variants: equally long, so that MEMORY USAGE (which counts the
#: key) compares the stored sessions, not the prefixes.
OURS_REDIS_PREFIX = "bench:our:"
FLASK_SESSION_REDIS_PREFIX = "bench:fls:"
FLASK_SESSION_PG = "flask-session-sqlalchemy-postgresql"
OURS_TABLE = "serversession"
Login = dict[str, Any] | None

#: PostgreSQL settings over the tests' throwaway ones, back to PostgreSQL's defaults (fsync,
#: full page writes, 128MB shared buffers) except that commits do not wait for the WAL flush:
#: this machine's disk is not what is measured, and the setting favours whichever library
#: writes more (Flask-Session writes on every request).
PG_SETTINGS = {
    "fsync": "on",
    "full_page_writes": "on",
    "shared_buffers": "128MB",
    "synchronous_commit": "off",
}
#: MariaDB options over the tests' ones: a commit that does not wait for the log flush (as
#: synchronous_commit=off on PostgreSQL), MariaDB's own log size and doublewrite, and a buffer
#: pool that holds the largest table of the scale part (~400 MiB with its indexes). InnoDB reads
#: with O_DIRECT, past the OS page cache: with its default 128M pool, lookups in the
#: 1,000,000-session table read the disk, which measures this machine's disk, not the store.
MARIADB_SETTINGS = (
    "--innodb-buffer-pool-size=1G",
    "--innodb-log-file-size=96M",
    "--innodb-doublewrite=1",
    "--innodb-flush-log-at-trx-commit=2",
    "--character-set-server=utf8mb4",
    "--local-infile=1",  # the scale part's bulk load
)
#: Per SQL server: how to ask its version and a setting, and the settings a report shows.
_SHOW = {
    PG: ("SHOW server_version", "SHOW {}", PG_SETTINGS.keys() | {"max_wal_size"}),
    MARIADB: (
        "SELECT VERSION()",
        "SELECT @@{}",
        {"innodb_buffer_pool_size", "innodb_flush_log_at_trx_commit"},
    ),
}


# -- the servers ---------------------------------------------------------------------------------


@dataclass
class SQLServer:
    """A running PostgreSQL or MariaDB, its database, and the benchmark's own (admin) way in."""

    kind: str
    #: SQLAlchemy URL of the database (psycopg 3 / PyMySQL), without store options.
    url: str
    port: int
    database: str
    version: str = ""
    settings: dict[str, str] = field(default_factory=dict)

    def connect(self) -> Any:
        """An autocommit admin connection of the benchmark's own (never a variant's)."""
        if self.kind == PG:
            import psycopg

            return psycopg.connect(
                host=HOST, port=self.port, user="postgres", dbname=self.database, autocommit=True
            )
        import pymysql  # type: ignore[import-untyped]

        return pymysql.connect(
            host=HOST,
            port=self.port,
            user="root",
            database=self.database,
            autocommit=True,
            local_infile=True,
            charset="utf8mb4",
        )

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with closing(self.connect()) as conn:
            cursor = conn.cursor()
            cursor.execute(statement, params)
            rows = cursor.fetchall() if cursor.description is not None else []
            cursor.close()
            return [tuple(row) for row in rows]

    def describe(self) -> str:
        """Its version and the settings that matter here, as the server reports them."""
        return f"{self.version} ({', '.join(f'{k}={v}' for k, v in self.settings.items())})"

    def count(self, table: str) -> int:
        quote = '"' if self.kind == PG else "`"
        return int(self.query(f"SELECT count(*) FROM {quote}{table}{quote}")[0][0])


@contextmanager
def sql_server(kind: str, workdir: Path) -> Iterator[SQLServer]:
    """PostgreSQL or MariaDB (tests/sql_servers.py) with the benchmark's settings."""
    import sql_servers

    if kind == PG:
        starting = sql_servers.postgresql(PG_SETTINGS)
    else:
        starting = sql_servers.mariadb(MARIADB_SETTINGS)
    with starting as server:
        url = server.url.replace("mysql+pymysql://", "mariadb+pymysql://", 1)
        found = SQLServer(kind, url, server.port, sql_servers.DATABASE)
        version, show, names = _SHOW[kind]
        found.version = str(found.query(version)[0][0])
        found.settings = {n: str(found.query(show.format(n))[0][0]) for n in sorted(names)}
        yield found


@contextmanager
def redis_server(workdir: Path) -> Iterator[int]:
    """A redis-server on 127.0.0.1 without persistence (tests/redis_servers.py); its port."""
    from redis_servers import standalone

    with standalone(workdir) as server:
        yield server.port


@contextmanager
def memcached_server(workdir: Path) -> Iterator[int]:
    """A memcached on 127.0.0.1 (tests/memcached_servers.py); its port."""
    from memcached_servers import running

    with running(workdir) as servers:
        yield servers[0].port


STARTERS: dict[str, Callable[[Path], Any]] = {
    "redis": redis_server,
    "memcached": memcached_server,
    PG: functools.partial(sql_server, PG),
    MARIADB: functools.partial(sql_server, MARIADB),
}


def start_servers(servers: Servers, names: Iterable[str]) -> None:
    """The named servers, each on 127.0.0.1 and stopped by PID at the end (or why not)."""
    for name in dict.fromkeys(names):
        servers.start(name, functools.partial(STARTERS[name], servers.tmp / name))
        if name in servers.started:
            progress(f"{name} up: {server_version(servers, name)}")


def redis_admin(port: int) -> Any:
    """A separate redis-py client for the benchmark's own look-ups (never a variant's client)."""
    import redis

    return redis.Redis(host=HOST, port=port, decode_responses=True)


def server_version(servers: Servers, name: str) -> str | None:
    """The version of a server the run started (SQL servers: with their settings)."""
    if name not in servers.started or name == "memcached":
        return None
    if name != "redis":
        return str(servers.started[name].describe())
    with redis_admin(servers.started[name]) as admin:
        return str(admin.info("server")["redis_version"])


# -- the variants --------------------------------------------------------------------------------


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


def import_or_fail(variant: str, module: str) -> Any:
    """``module`` imported, or a :class:`BenchmarkError` naming what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BenchmarkError(
            f"{variant} needs {exc.name}: pip install --group bench (make bench does),"
            " or leave the variant out with --only"
        ) from exc


def _cookie(servers: Servers, login: Login) -> Built:
    return Built(create_app(lambda app: None, login))  # Flask's own session: nothing to install


def _ours(url: str, login: Login, **extra: Any) -> Built:
    from flask_serversession import ServerSession

    app = create_app(lambda app: ServerSession(app, store=url), login)
    store = ServerSession.store_of(app)
    # The SQL store's engine: run.py counts its statements and times its reads.
    return Built(app, close=store.close, engine=getattr(store, "engine", None), **extra)


def _ours_memory(servers: Servers, login: Login) -> Built:
    return _ours("memory://", login)


def _ours_sqlite(servers: Servers, login: Login) -> Built:
    path = servers.tmp / "ours.sqlite3"
    # An absolute path gives the four slashes of an absolute SQLAlchemy-style URL.
    return _ours(f"sqlite:///{path}", login, stored_sessions=_count_rows(path, OURS_TABLE))


def _ours_redis(servers: Servers, login: Login) -> Built:
    port, prefix = servers.require("redis"), OURS_REDIS_PREFIX
    url = f"redis://{HOST}:{port}/0?prefix={prefix}"
    return _ours(url, login, stored_sessions=_count_keys(port, prefix), redis_prefix=prefix)


def _ours_memcached(servers: Servers, login: Login) -> Built:
    return _ours(f"memcached://{HOST}:{servers.require('memcached')}?prefix=bench:our:", login)


def _ours_sql(kind: str, servers: Servers, login: Login) -> Built:
    server: SQLServer = servers.require(kind)
    stored = functools.partial(server.count, OURS_TABLE)
    return _ours(f"{server.url}?table={OURS_TABLE}", login, stored_sessions=stored)


def _flask_session_sqlalchemy(name: str, uri: str, login: Login, count: Callable[[], int]) -> Built:
    session = import_or_fail(name, "flask_session").Session
    db = import_or_fail(name, "flask_sqlalchemy").SQLAlchemy()

    def configure(app: Flask) -> None:
        app.config.update(SQLALCHEMY_DATABASE_URI=uri, SESSION_TYPE="sqlalchemy")
        app.config["SESSION_SQLALCHEMY"] = db
        db.init_app(app)
        # Flask-Session 0.8 creates its "sessions" table here (checkfirst), in an app context.
        session(app)

    app = create_app(configure, login)
    with app.app_context():
        engine = db.engine
    return Built(app, stored_sessions=count, close=engine.dispose, engine=engine)


def _flask_session_sqlite(servers: Servers, login: Login) -> Built:
    path = servers.tmp / "flask_session.sqlite3"
    count = _count_rows(path, "sessions")
    return _flask_session_sqlalchemy("flask-session-sqlalchemy", f"sqlite:///{path}", login, count)


def _flask_session_pg(servers: Servers, login: Login) -> Built:
    server: SQLServer = servers.require(PG)
    count = functools.partial(server.count, "sessions")
    return _flask_session_sqlalchemy(FLASK_SESSION_PG, server.url, login, count)


def _flask_session_redis(servers: Servers, login: Login) -> Built:
    session = import_or_fail("flask-session-redis", "flask_session").Session
    import redis

    port, prefix = servers.require("redis"), FLASK_SESSION_REDIS_PREFIX
    # Flask-Session's documented set-up: a redis.Redis it is given, otherwise its defaults.
    client = redis.Redis(host=HOST, port=port)

    def configure(app: Flask) -> None:
        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=client, SESSION_KEY_PREFIX=prefix)
        session(app)

    app = create_app(configure, login)
    count = _count_keys(port, prefix)
    return Built(app, stored_sessions=count, close=client.close, redis_prefix=prefix)


_OURS = "Flask-ServerSession, store="
_FLASK_SESSION = 'Flask-Session 0.8, SESSION_TYPE="sqlalchemy", Flask-SQLAlchemy on'
VARIANTS: tuple[Variant, ...] = (
    Variant(BASELINE, "Flask's default signed-cookie session", _cookie),
    Variant("ours-memory", f'{_OURS}"memory://"', _ours_memory),
    Variant("ours-sqlite", "Flask-ServerSession, SQLite file store", _ours_sqlite),
    Variant(
        "ours-redis",
        f'{_OURS}"redis://{HOST}:PORT/0?prefix={OURS_REDIS_PREFIX}"',
        _ours_redis,
        ("redis",),
    ),
    Variant("ours-memcached", f'{_OURS}"memcached://{HOST}:PORT"', _ours_memcached, ("memcached",)),
    Variant(
        "ours-postgresql",
        f'{_OURS}"postgresql+psycopg://...?table={OURS_TABLE}"',
        functools.partial(_ours_sql, PG),
        (PG,),
    ),
    Variant(
        "ours-mariadb",
        f'{_OURS}"mariadb+pymysql://...?table={OURS_TABLE}"',
        functools.partial(_ours_sql, MARIADB),
        (MARIADB,),
    ),
    Variant("flask-session-sqlalchemy", f"{_FLASK_SESSION} an SQLite file", _flask_session_sqlite),
    Variant(
        FLASK_SESSION_PG,
        f"{_FLASK_SESSION} the same PostgreSQL server (psycopg 3)",
        _flask_session_pg,
        (PG,),
    ),
    Variant(
        "flask-session-redis",
        'Flask-Session 0.8, SESSION_TYPE="redis", SESSION_REDIS=redis.Redis(host, port)',
        _flask_session_redis,
        ("redis",),
    ),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}


def needed(variants: Iterable[Variant]) -> list[str]:
    return list(dict.fromkeys(need for variant in variants for need in variant.needs))


def wsgi_app_from_env() -> Flask:
    """The app of one variant, for a WSGI server (http_bench.py runs it under gunicorn).

    ``BENCH_VARIANT`` names the variant, ``BENCH_DIR`` is the directory for its files and
    ``BENCH_REDIS_PORT`` the port of the redis-server on 127.0.0.1, if it needs one.
    """
    variant = VARIANTS_BY_NAME[os.environ["BENCH_VARIANT"]]
    servers = Servers(ExitStack(), Path(os.environ["BENCH_DIR"]))
    if port := os.environ.get("BENCH_REDIS_PORT"):
        servers.started["redis"] = int(port)
    # Never closed: the worker process ends with it.
    return variant.build(servers, None).app
