"""The session implementations the benchmarks compare, and the servers they run on: the tests'
own (tests/redis_servers.py, memcached_servers.py, sql_servers.py: 127.0.0.1, free ports, temp
dirs, stopped by PID) with the benchmark's settings on top (benchmarks/README.md says why).
"""

from __future__ import annotations

import functools
import importlib
import itertools
import json
import os
import socket
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from harness import BASELINE, HOST, BenchmarkError, Built, Servers, Variant, create_app, progress

PG, MARIADB = "postgresql", "mariadb"
#: Key prefixes of the two Redis variants: equally long, so that MEMORY USAGE (which counts the
#: key) compares the stored sessions, not the prefixes.
OURS_REDIS_PREFIX, FLASK_SESSION_REDIS_PREFIX = "bench:our:", "bench:fls:"
FLASK_SESSION_PG = "flask-session-sqlalchemy-postgresql"
OURS_TABLE = "serversession"
Login = dict[str, Any] | None

#: PostgreSQL's defaults over the tests' throwaway settings, but commits that do not wait for
#: the WAL flush. MariaDB: the same for its log, and a buffer pool that holds the largest table.
PG_SETTINGS = {
    "fsync": "on",
    "full_page_writes": "on",
    "shared_buffers": "128MB",
    "synchronous_commit": "off",
}
MARIADB_SETTINGS = (  # --local-infile: the scale part's bulk load
    "--innodb-buffer-pool-size=1G --innodb-log-file-size=96M --innodb-doublewrite=1"
    " --innodb-flush-log-at-trx-commit=2 --character-set-server=utf8mb4 --local-infile=1"
).split()
#: Per SQL server: how to ask its version and a setting, and the settings a report shows.
_SHOW = {
    PG: ("SHOW server_version", "SHOW {}", [*PG_SETTINGS, "max_wal_size"]),
    MARIADB: (
        "SELECT VERSION()",
        "SELECT @@{}",
        ["innodb_buffer_pool_size", "innodb_flush_log_at_trx_commit"],
    ),
}


@dataclass
class SQLServer:
    """A running PostgreSQL or MariaDB, its database, and the benchmark's own (admin) way in."""

    kind: str
    #: SQLAlchemy URL of the database (psycopg 3 / PyMySQL), without store options.
    url: str
    port: int
    database: str

    def connect(self) -> Any:
        """An autocommit admin connection of the benchmark's own (never a variant's)."""
        if self.kind == PG:
            import psycopg

            return psycopg.connect(
                host=HOST, port=self.port, user="postgres", dbname=self.database, autocommit=True
            )
        import pymysql  # type: ignore[import-untyped]

        options = {"local_infile": True, "charset": "utf8mb4", "autocommit": True}
        return pymysql.connect(
            host=HOST, port=self.port, user="root", database=self.database, **options
        )

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with closing(self.connect()) as conn, closing(conn.cursor()) as cursor:
            cursor.execute(statement, params)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    def count(self, table: str) -> int:
        quote = '"' if self.kind == PG else "`"
        return int(self.query(f"SELECT count(*) FROM {quote}{table}{quote}")[0][0])


@contextmanager
def sql_server(kind: str, workdir: Path) -> Iterator[tuple[SQLServer, str]]:
    """PostgreSQL or MariaDB with the benchmark's settings; its version and those settings."""
    import sql_servers

    if kind == PG:
        starting = sql_servers.postgresql(PG_SETTINGS)
    else:
        starting = sql_servers.mariadb(MARIADB_SETTINGS)
    with starting as server:
        url = server.url.replace("mysql+pymysql://", "mariadb+pymysql://", 1)
        found = SQLServer(kind, url, server.port, sql_servers.DATABASE)
        version, show, names = _SHOW[kind]
        settings = ", ".join(f"{n}={found.query(show.format(n))[0][0]}" for n in names)
        yield found, f"{found.query(version)[0][0]} ({settings})"


@contextmanager
def redis_server(workdir: Path) -> Iterator[tuple[int, str]]:
    """A redis-server without persistence (tests/redis_servers.py); its port and version."""
    from redis_servers import standalone

    with standalone(workdir) as server, redis_admin(server.port) as admin:
        yield server.port, str(admin.info("server")["redis_version"])


@contextmanager
def memcached_server(workdir: Path) -> Iterator[tuple[int, None]]:
    """A memcached (tests/memcached_servers.py); its port."""
    from memcached_servers import running

    with running(workdir) as servers:
        yield servers[0].port, None


def redis_admin(port: int, db: int = 0) -> Any:
    """A separate redis-py client for the benchmark's own look-ups (never a variant's client)."""
    import redis

    return redis.Redis(host=HOST, port=port, db=db, decode_responses=True)


STARTERS: dict[str, Callable[[Path], Any]] = {
    "redis": redis_server,
    "memcached": memcached_server,
    PG: functools.partial(sql_server, PG),
    MARIADB: functools.partial(sql_server, MARIADB),
}


def start_servers(servers: Servers, names: Iterable[str]) -> None:
    """The named servers, each on 127.0.0.1 and stopped by PID at the end (or why not)."""
    for name in dict.fromkeys(n for n in names if n not in servers.started | servers.missing):
        servers.start(name, functools.partial(STARTERS[name], servers.tmp / name))
        if name in servers.started:
            progress(f"{name} up: {servers.versions[name] or 'running'}")


def start_variants(
    servers: Servers, variants: Sequence[Variant]
) -> tuple[list[Variant], dict[str, str]]:
    """The variants' servers started; the variants that can run, and why the others are skipped."""
    start_servers(servers, (need for variant in variants for need in variant.needs))
    skipped = {
        v.name: servers.missing[n] for v in variants for n in v.needs if n in servers.missing
    }
    for name, reason in skipped.items():
        progress(f"{name} skipped: {reason}")
    return [v for v in variants if v.name not in skipped], skipped


# -- the variants --------------------------------------------------------------------------------


def count_rows(path: Path, table: str) -> Callable[[], int]:
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
    # The SQL store's engine: run.py counts its statements.
    return Built(app, close=store.close, engine=getattr(store, "engine", None), **extra)


def _ours_sqlite(servers: Servers, login: Login) -> Built:
    path = servers.tmp / "ours.sqlite3"  # absolute: the four slashes of an absolute URL
    return _ours(f"sqlite:///{path}", login, stored_sessions=count_rows(path, OURS_TABLE))


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


_ours_pg, _ours_mariadb = functools.partial(_ours_sql, PG), functools.partial(_ours_sql, MARIADB)


def _flask_session(name: str, login: Login, config: dict[str, Any], **built: Any) -> Built:
    """Flask-Session 0.8 configured by ``config`` (its table, if any, created at start-up)."""
    session = import_or_fail(name, "flask_session").Session
    db = config.get("SESSION_SQLALCHEMY")

    def configure(app: Flask) -> None:
        app.config.update(config)
        if db is not None:
            db.init_app(app)
        session(app)  # Flask-Session creates its "sessions" table here (checkfirst)

    app = create_app(configure, login)
    if db is not None:
        with app.app_context():
            built |= {"engine": db.engine, "close": db.engine.dispose}
    return Built(app, **built)


def _flask_session_sql(name: str, uri: str, login: Login, count: Callable[[], int]) -> Built:
    db = import_or_fail(name, "flask_sqlalchemy").SQLAlchemy()
    config = {"SQLALCHEMY_DATABASE_URI": uri, "SESSION_TYPE": "sqlalchemy"}
    return _flask_session(name, login, {**config, "SESSION_SQLALCHEMY": db}, stored_sessions=count)


def _flask_session_sqlite(servers: Servers, login: Login) -> Built:
    path = servers.tmp / "flask_session.sqlite3"
    count = count_rows(path, "sessions")
    return _flask_session_sql("flask-session-sqlalchemy", f"sqlite:///{path}", login, count)


def _flask_session_pg(servers: Servers, login: Login) -> Built:
    server: SQLServer = servers.require(PG)
    count = functools.partial(server.count, "sessions")
    return _flask_session_sql(FLASK_SESSION_PG, server.url, login, count)


def _fs_redis(servers: Servers, login: Login) -> Built:
    import redis

    port, prefix = servers.require("redis"), FLASK_SESSION_REDIS_PREFIX
    # Flask-Session's documented set-up: a redis.Redis it is given, otherwise its defaults.
    client = redis.Redis(host=HOST, port=port)
    config = {"SESSION_TYPE": "redis", "SESSION_REDIS": client, "SESSION_KEY_PREFIX": prefix}
    count = _count_keys(port, prefix)
    name = "flask-session-redis"
    return _flask_session(
        name, login, config, stored_sessions=count, close=client.close, redis_prefix=prefix
    )


# -- the floors: Flask's own session plus one round trip with the least client work ----------------

#: What the floors read: fields and values shaped like ours' stored login (a hash of 8 fields).
FLOOR_FIELDS = {":user": '"alice"', ":cart": "[1, 2, 3]", "a": "1", "n": "0"}
FLOOR_FIELDS |= dict.fromkeys("cesz", "1764806400000")  # times in ms


def _resp(*parts: str) -> bytes:
    """``parts`` as a RESP array of bulk strings (a command, or HGETALL's reply)."""
    items = (b"$%d\r\n%s\r\n" % (len(part), part) for part in map(str.encode, parts))
    return b"*%d\r\n" % len(parts) + b"".join(items)


def _floor(round_trip: Callable[[], bool], close: Callable[[], None], login: Login) -> Built:
    """The cookie-session app whose every request first makes ``round_trip``."""

    def check() -> None:
        if not round_trip():
            raise BenchmarkError("a floor's round trip read the wrong answer")

    return Built(create_app(lambda app: app.before_request(check), login), close=close)


def _floor_redis(servers: Servers, login: Login) -> Built:
    """One ``HGETALL`` written to and read from a plain socket: no client library at all."""
    port = servers.require("redis")
    with redis_admin(port) as admin:  # the hash keeps this order, and so does its reply
        admin.hset("bench:floor", mapping=FLOOR_FIELDS)
    command, reply = _resp("HGETALL", "bench:floor"), _resp(*itertools.chain(*FLOOR_FIELDS.items()))
    sock = socket.create_connection((HOST, port), timeout=10)  # a short wrong reply: no hang
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def round_trip() -> bool:
        sock.sendall(command)
        got = sock.recv(4096)
        while len(got) < len(reply) and (piece := sock.recv(4096)):  # in pieces; b"": closed
            got += piece
        return got == reply

    return _floor(round_trip, sock.close, login)


def _floor_pg(servers: Servers, login: Login) -> Built:
    """One prepared ``SELECT`` of a row by its key through libpq itself (psycopg's ``pgconn``)."""
    conn = servers.require(PG).connect()
    conn.execute("CREATE TABLE IF NOT EXISTS bench_floor (key text PRIMARY KEY, data jsonb)")
    data = [json.dumps(FLOOR_FIELDS)]
    conn.execute("INSERT INTO bench_floor VALUES ('k', %s) ON CONFLICT DO NOTHING", data)
    libpq = conn.pgconn
    libpq.prepare(b"floor", b"SELECT data FROM bench_floor WHERE key = $1")
    return _floor(lambda: libpq.exec_prepared(b"floor", [b"k"]).ntuples == 1, conn.close, login)


_OURS, _FS = "Flask-ServerSession, store=", "Flask-Session 0.8, SESSION_TYPE="
_FS_SQL = f'{_FS}"sqlalchemy", Flask-SQLAlchemy on'
VARIANTS: tuple[Variant, ...] = (
    Variant(BASELINE, "Flask's default signed-cookie session", _cookie),
    Variant("ours-memory", f'{_OURS}"memory://"', lambda servers, login: _ours("memory://", login)),
    Variant("ours-sqlite", f'{_OURS}"sqlite:////tmp/.../ours.sqlite3"', _ours_sqlite),
    Variant("ours-redis", f'{_OURS}"redis://{HOST}:PORT/0?prefix=bench:our:"', _ours_redis),
    Variant("ours-memcached", f'{_OURS}"memcached://{HOST}:PORT"', _ours_memcached),
    Variant("ours-postgresql", f'{_OURS}"postgresql+psycopg://...?table={OURS_TABLE}"', _ours_pg),
    Variant("ours-mariadb", f'{_OURS}"mariadb+pymysql://...?table={OURS_TABLE}"', _ours_mariadb),
    Variant("flask-session-sqlalchemy", f"{_FS_SQL} an SQLite file", _flask_session_sqlite),
    Variant(FLASK_SESSION_PG, f"{_FS_SQL} the same PostgreSQL (psycopg 3)", _flask_session_pg),
    Variant("flask-session-redis", f'{_FS}"redis", SESSION_REDIS=redis.Redis()', _fs_redis),
    Variant("floor-redis", "the cookie session + one HGETALL on a raw socket", _floor_redis),
    Variant(f"floor-{PG}", "the cookie session + one prepared SELECT through libpq", _floor_pg),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}


def wsgi_app_from_env() -> Flask:
    """The app of ``BENCH_VARIANT`` for gunicorn (http_bench.py sets the environment)."""
    servers = Servers(ExitStack(), Path(os.environ["BENCH_DIR"]))
    if port := os.environ.get("BENCH_REDIS_PORT"):
        servers.started["redis"] = int(port)
    # Never closed: the worker process ends with it.
    return VARIANTS_BY_NAME[os.environ["BENCH_VARIANT"]].build(servers, None).app
