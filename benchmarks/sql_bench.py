"""The SQL store against Flask's cookie session and Flask-Session's SQLAlchemy store, on real
PostgreSQL 15 and MariaDB servers that the run starts, and stops, itself.

Four parts, one process:

1. Requests per second through Flask's test client, the same app and method as run.py
   (interleaved rounds, medians, ratios to the cookie session of the same run, correctness
   checked before and after timing): ``cookie``, ``ours-postgresql``,
   ``flask-session-sqlalchemy-postgresql`` (Flask-Session 0.8 with Flask-SQLAlchemy on the same
   PostgreSQL server) and ``ours-mariadb``.
2. Statements per request kind: SQLAlchemy ``before_cursor_execute`` events, and what the server
   itself ran (PostgreSQL's statement log, MariaDB's ``Com_*`` counters), BEGIN/COMMIT included.
3. Scale: load latency (``store.load`` called directly, and ``/get`` through the test client)
   with 1,000, 100,000 and 1,000,000 sessions in the table, rows bulk-loaded in the store's own
   format (COPY on PostgreSQL, LOAD DATA on MariaDB).
4. ``clear_expired`` of 100,000 expired sessions in the 1,000,000-session table.

Both servers listen on 127.0.0.1 only, on free ports, with data in temp dirs, and are stopped by
PID however the run ends (error, Ctrl-C, SIGTERM). As root, PostgreSQL runs as the ``postgres``
system user. See benchmarks/README.md.

    .venv/bin/python benchmarks/sql_bench.py               # the full run (about 4 minutes)
    .venv/bin/python benchmarks/sql_bench.py --quick       # smoke check: tiny sizes, no files
    .venv/bin/python benchmarks/sql_bench.py --profile ours-postgresql:get   # cProfile
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import json
import math
import os
import platform
import pwd
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from bench_servers import (
    HOST,
    ServerProcess,
    Unavailable,
    free_port,
    port_open,
    require_binary,
)
from flask import Flask
from flask.testing import FlaskClient
from harness import (
    BASELINE,
    SECRET_KEY,
    USER,
    BenchmarkError,
    calibrate_endpoints,
    calibrated,
    check_session,
    closed_on_error,
    create_app,
    fmt_counts,
    fmt_ratio,
    goal_status,
    load_average,
    logged_in_client,
    package_versions,
    profile_heading,
    profile_report,
    profile_requests,
    reproduce_lines,
    request_text,
    rotated,
    run_main,
    summarize,
    time_requests,
    write_results,
)
from psycopg import sql
from scaling import (
    percentile,
    prepare_calls,
    session_id_of,
    time_interleaved,
    user_of,
    verify_sample,
)
from sqlalchemy import event
from sqlalchemy.engine import Engine

from flask_serversession import ServerSession
from flask_serversession.ids import CookieSigner, store_key
from flask_serversession.serialization import dumps_value
from flask_serversession.stores import Record, Touch
from flask_serversession.stores.sql import SQLStore

DATABASE = "bench"
MARIADB_USER = "bench"
MARIADB_PASSWORD = "bench-Pa55word"
PG_BIN_DIRS = ("/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin")
MARIADB_DIRS = ("/usr/sbin", "/usr/bin")
PG = "postgresql"
MARIADB = "mariadb"

ENDPOINTS = ("none", "get", "set")
#: Request kinds whose statements are counted; ``/rw`` reads, then writes.
COUNT_ENDPOINTS = ("none", "get", "set", "rw")
OURS_PG = "ours-postgresql"
FLASK_SESSION_PG = "flask-session-sqlalchemy-postgresql"
OURS_MARIADB = "ours-mariadb"
OURS_TABLE = "serversession"
#: Flask-Session's default table (SESSION_SQLALCHEMY_TABLE).
FLASK_SESSION_TABLE = "sessions"

DAY = 24 * 3600.0
#: Flask-ServerSession's defaults: idle timeout = PERMANENT_SESSION_LIFETIME (31 days), absolute
#: timeout 30 days. The generated rows follow them.
IDLE_TIMEOUT = 31 * DAY
ABSOLUTE_TIMEOUT = 30 * DAY
#: The scale part's touch interval: every generated session was seen within the last 30 minutes,
#: so a load with this interval reads without writing, in every table alike.
SCALE_TOUCH_INTERVAL = 3600.0
SCALE_SIZES = (1_000, 100_000, 1_000_000)
#: The parts of a run (--parts).
PARTS = ("testclient", "statements", "scale")
EXPIRED_SESSIONS = 100_000
CLEAR_BATCH_SIZE = 1000  # SESSION_CLEANUP_BATCH_SIZE's default
#: Load latency with the largest table may be at most this many times that with the smallest.
SCALE_GOAL = 1.2
SCALE_MODES = ("load", "load-touch-due", "testclient-get")
SCALE_MODE_TEXT = {
    "load": "store.load(key, touch), touch not due (a read)",
    "load-touch-due": "store.load(key, touch), touch due (a read that refreshes the expiry)",
    "testclient-get": "GET /get through the test client (cookie of that session)",
}
COPY_COLUMNS = (
    "key",
    "data",
    "created",
    "last_seen",
    "expires",
    "absolute_expires",
    "user_id",
    "ended",
    "version",
)
PACKAGES = (
    "flask",
    "werkzeug",
    "flask-serversession",
    "flask-session",
    "flask-sqlalchemy",
    "sqlalchemy",
    "psycopg",
    "psycopg-binary",
    "pymysql",
)

#: One sessions-table row, in COPY_COLUMNS order.
Row = tuple[str, str, float, float, float, float, str | None, bool, int]


# -- server processes (adapted from tests/servers.py and tests/sql_servers.py) --------------------


class SQLServerProcess(ServerProcess):
    """A database server: a minute to start, half a minute to stop, and a failed start makes what
    needs it skipped, not the run fail."""

    start_error = Unavailable
    start_timeout = 60.0
    stop_timeout = 30.0


class PostgresProcess(SQLServerProcess):
    # SIGINT is PostgreSQL's "fast" shutdown; its SIGTERM ("smart") waits for every client to
    # disconnect, and a connection pool never does.
    stop_signal = signal.SIGINT


@dataclass
class SQLServer:
    """A running server, its benchmark database and how to reach it."""

    kind: str
    process: ServerProcess
    #: SQLAlchemy URL of the benchmark database (psycopg 3 / PyMySQL), without store options.
    url: str
    version: str = ""
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return self.process.port

    def connect(self) -> Any:
        """An autocommit admin connection of the benchmark's own (never a variant's)."""
        if self.kind == PG:
            return psycopg.connect(
                host=HOST, port=self.port, user="postgres", dbname=DATABASE, autocommit=True
            )
        import pymysql  # type: ignore[import-untyped]

        return pymysql.connect(
            host=HOST,
            port=self.port,
            user="root",
            database=DATABASE,
            autocommit=True,
            local_infile=True,
            charset="utf8mb4",
        )

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            cursor = conn.cursor()
            cursor.execute(statement, params)
            rows = cursor.fetchall() if cursor.description is not None else []
            cursor.close()
            return [tuple(row) for row in rows]
        finally:
            conn.close()

    def count(self, table: str) -> int:
        quote = '"' if self.kind == PG else "`"
        return int(self.query(f"SELECT count(*) FROM {quote}{table}{quote}")[0][0])


def _run(argv: list[str], user: str | None = None, timeout: float = 120) -> None:
    result = subprocess.run(argv, capture_output=True, timeout=timeout, user=user, check=False)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).decode(errors="replace")
        raise Unavailable(f"{argv[0]} failed ({result.returncode}):\n{output[-3000:]}")


@contextmanager
def _owned_tempdir(prefix: str, user: str | None) -> Iterator[Path]:
    """A temp dir that the server's user owns (removed at the end)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _pg_user() -> str | None:
    """PostgreSQL refuses to run as root: then it runs as the ``postgres`` system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise Unavailable("running as root and there is no postgres system user") from None
    return "postgres"


def _pg_ready(port: int) -> bool:
    if not port_open(port):
        return False
    try:
        with psycopg.connect(
            host=HOST, port=port, user="postgres", dbname="postgres", connect_timeout=2
        ):
            return True
    except psycopg.OperationalError:
        return False


#: PostgreSQL settings of the run, besides its defaults (shared_buffers 128MB, fsync on...).
#: Commits do not wait for the WAL flush: this machine's disk is not what is measured, and the
#: setting favours whichever library writes more (Flask-Session writes on every request).
PG_SETTINGS = {
    "listen_addresses": HOST,
    "synchronous_commit": "off",
    "max_connections": "60",
    "log_min_messages": "warning",
    # Parsed by the statement count (PgStatementLog).
    "log_line_prefix": "@@%p@@ ",
}


@contextmanager
def postgresql_server() -> Iterator[SQLServer]:
    """PostgreSQL with a ``bench`` database; trust authentication on 127.0.0.1."""
    initdb = require_binary("initdb", "postgresql-15", *PG_BIN_DIRS)
    postgres = require_binary("postgres", "postgresql-15", *PG_BIN_DIRS)
    user = _pg_user()
    with _owned_tempdir("sql-bench-pg-", user) as root:
        data = root / "data"
        _run(
            [
                initdb,
                *("-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"),
                *("--locale=C", "--no-sync", "--no-instructions"),
            ],
            user=user,
        )
        port = free_port()
        argv = [postgres, "-D", str(data), "-p", str(port), "-k", str(root)]
        for name, value in PG_SETTINGS.items():
            argv += ["-c", f"{name}={value}"]
        process = PostgresProcess(
            f"postgres-{port}", argv, port, root, ready=lambda: _pg_ready(port), user=user
        )
        try:
            process.start()
            with psycopg.connect(
                host=HOST, port=port, user="postgres", dbname="postgres", autocommit=True
            ) as conn:
                conn.execute(f"CREATE DATABASE {DATABASE}")
            server = SQLServer(
                PG, process, f"postgresql+psycopg://postgres@{HOST}:{port}/{DATABASE}"
            )
            server.version = str(server.query("SHOW server_version")[0][0])
            for name in (
                "shared_buffers",
                "fsync",
                "synchronous_commit",
                "full_page_writes",
                "max_wal_size",
            ):
                server.settings[name] = str(server.query(f"SHOW {name}")[0][0])
            yield server
        finally:
            process.stop()


def _mariadb_ready(port: int) -> bool:
    if not port_open(port):
        return False
    import pymysql

    try:
        pymysql.connect(host=HOST, port=port, user="root", connect_timeout=2).close()
    except pymysql.MySQLError:
        return False
    return True


#: MariaDB settings of the run: a commit that does not wait for the log flush (as
#: synchronous_commit=off on PostgreSQL), and a buffer pool that holds the largest table of the
#: scale part (~400 MiB with its indexes). InnoDB reads with O_DIRECT, past the OS page cache:
#: with its default 128M pool, lookups in the 1,000,000-session table read the disk, which
#: measures this machine's disk, not the store (PostgreSQL reads through the page cache).
MARIADB_SETTINGS = (
    "--innodb-buffer-pool-size=1G",
    "--innodb-flush-log-at-trx-commit=2",
    "--skip-log-bin",
    "--max-connections=80",
    "--performance-schema=0",
    "--local-infile=1",  # the scale part's bulk load
)


@contextmanager
def mariadb_server() -> Iterator[SQLServer]:
    """MariaDB with a ``bench`` database and a user with a password."""
    install = require_binary("mariadb-install-db", "mariadb-server", *MARIADB_DIRS)
    mariadbd = require_binary("mariadbd", "mariadb-server", *MARIADB_DIRS)
    try:
        import pymysql
    except ImportError:
        raise Unavailable("PyMySQL not installed: pip install --group test") from None
    as_root = ["--user=root"] if os.geteuid() == 0 else []
    with _owned_tempdir("sql-bench-mariadb-", None) as root:
        data = root / "data"
        common = ["--no-defaults", f"--datadir={data}", "--skip-name-resolve"]
        _run(
            [
                install,
                *common[:2],
                *as_root,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ]
        )
        port = free_port()
        argv = [
            mariadbd,
            *common,
            *MARIADB_SETTINGS,
            *as_root,
            f"--port={port}",
            f"--bind-address={HOST}",
            f"--socket={root / 'mariadb.sock'}",
            f"--pid-file={root / 'mariadb.pid'}",
            "--skip-networking=0",
        ]
        process = SQLServerProcess(
            f"mariadb-{port}", argv, port, root, ready=lambda: _mariadb_ready(port)
        )
        try:
            process.start()
            conn = pymysql.connect(host=HOST, port=port, user="root", autocommit=True)
            try:
                with conn.cursor() as cursor:
                    cursor.execute(f"CREATE DATABASE {DATABASE} CHARACTER SET utf8mb4")
                    cursor.execute(
                        f"CREATE USER '{MARIADB_USER}'@'{HOST}' IDENTIFIED BY '{MARIADB_PASSWORD}'"
                    )
                    cursor.execute(f"GRANT ALL ON {DATABASE}.* TO '{MARIADB_USER}'@'{HOST}'")
            finally:
                conn.close()
            server = SQLServer(
                MARIADB,
                process,
                f"mariadb+pymysql://{MARIADB_USER}:{MARIADB_PASSWORD}@{HOST}:{port}/{DATABASE}",
            )
            server.version = str(server.query("SELECT VERSION()")[0][0])
            for name in ("innodb_buffer_pool_size", "innodb_flush_log_at_trx_commit"):
                server.settings[name] = str(server.query(f"SELECT @@{name}")[0][0])
            yield server
        finally:
            process.stop()


@dataclass
class Context:
    """What the parts of one run share: the servers, or why one is missing."""

    servers: dict[str, SQLServer] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def require(self, kind: str) -> SQLServer:
        server = self.servers.get(kind)
        if server is None:
            raise BenchmarkError(f"no {kind} server: {self.missing.get(kind, 'not started')}")
        return server


@contextmanager
def servers_for(kinds: Iterable[str]) -> Iterator[Context]:
    """Start the servers of ``kinds``; a server that cannot run is recorded as missing. All
    started servers are stopped by PID however the block ends."""
    ctx = Context()
    starters = {PG: postgresql_server, MARIADB: mariadb_server}
    with ExitStack() as stack:
        for kind in dict.fromkeys(kinds):
            started = time.perf_counter()
            try:
                ctx.servers[kind] = stack.enter_context(starters[kind]())
            except Unavailable as exc:
                ctx.missing[kind] = str(exc).splitlines()[0]
                print(f"{kind} unavailable: {exc}", file=sys.stderr)
                continue
            print(
                f"{kind} {ctx.servers[kind].version} up on port {ctx.servers[kind].port}"
                f" in {time.perf_counter() - started:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        yield ctx


# -- the app (the same shape as run.py's) -------------------------------------------------------


# -- variants ------------------------------------------------------------------------------------


@dataclass
class Built:
    """A variant's app, ready to serve, with what is needed to check, count and release it."""

    app: Flask
    #: Rows in the variant's table, for the variants that keep sessions in a server.
    stored_sessions: Callable[[], int] | None = None
    close: Callable[[], None] = lambda: None
    #: The engine whose statements are counted.
    engine: Engine | None = None


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    build: Callable[[Context], Built]
    #: The server the variant needs, if any.
    server: str | None = None


def _sql_store(app: Flask) -> SQLStore:
    store = ServerSession.store_of(app)
    assert isinstance(store, SQLStore)
    return store


def _build_cookie(ctx: Context) -> Built:
    return Built(create_app(lambda app: None))


def _build_ours(kind: str) -> Callable[[Context], Built]:
    def build(ctx: Context) -> Built:
        server = ctx.require(kind)
        url = f"{server.url}?table={OURS_TABLE}"

        def configure(app: Flask) -> None:
            ServerSession(app, store=url)

        app = create_app(configure)
        store = _sql_store(app)
        return Built(
            app,
            stored_sessions=lambda: server.count(OURS_TABLE),
            close=store.close,
            engine=store.engine,
        )

    return build


def _build_flask_session_pg(ctx: Context) -> Built:
    try:
        from flask_session import Session  # type: ignore[import-untyped]
        from flask_sqlalchemy import SQLAlchemy
    except ImportError as exc:
        raise BenchmarkError(
            f"{FLASK_SESSION_PG} needs {exc.name}: pip install --group bench"
        ) from exc
    server = ctx.require(PG)
    db = SQLAlchemy()

    def configure(app: Flask) -> None:
        app.config.update(
            SQLALCHEMY_DATABASE_URI=server.url,
            SESSION_TYPE="sqlalchemy",
            SESSION_SQLALCHEMY=db,
        )
        db.init_app(app)
        # Flask-Session 0.8 creates its "sessions" table here (checkfirst), in an app context.
        Session(app)

    app = create_app(configure)
    with app.app_context():
        engine = db.engine

    return Built(
        app,
        stored_sessions=lambda: server.count(FLASK_SESSION_TABLE),
        close=engine.dispose,
        engine=engine,
    )


VARIANTS: tuple[Variant, ...] = (
    Variant(BASELINE, "Flask's default signed-cookie session", _build_cookie),
    Variant(
        OURS_PG,
        f'Flask-ServerSession, store="postgresql+psycopg://...?table={OURS_TABLE}"',
        _build_ours(PG),
        server=PG,
    ),
    Variant(
        FLASK_SESSION_PG,
        'Flask-Session 0.8, SESSION_TYPE="sqlalchemy", SESSION_SQLALCHEMY=Flask-SQLAlchemy db'
        " on the same PostgreSQL server (psycopg 3)",
        _build_flask_session_pg,
        server=PG,
    ),
    Variant(
        OURS_MARIADB,
        f'Flask-ServerSession, store="mariadb+pymysql://...?table={OURS_TABLE}"',
        _build_ours(MARIADB),
        server=MARIADB,
    ),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}


@dataclass(frozen=True)
class Goal:
    variant: str
    endpoint: str
    target: float
    against: str = BASELINE


GOALS = (Goal(OURS_PG, "get", 0.5), Goal(OURS_PG, "get", 3.0, against=FLASK_SESSION_PG))
PEERS = ((OURS_PG, FLASK_SESSION_PG),)
#: Statements per request kind that issue 4 requires of ours (the touch is not due here).
EXPECTED_STATEMENTS = {
    OURS_PG: {"none": 0, "get": 1, "set": 1, "rw": 2},
    OURS_MARIADB: {"none": 0, "get": 1, "set": 1, "rw": 2},
}


# -- the test-client run -------------------------------------------------------------------------


@dataclass
class Running:
    variant: Variant
    built: Built
    client: FlaskClient
    batch: dict[str, int] = field(default_factory=dict)


def verify(running: Running) -> None:
    """Fail unless the variant really keeps the session: a broken session must not look fast."""
    check_session(
        running.variant.name, running.client, running.built.stored_sessions, "the store's table"
    )


def start(variant: Variant, ctx: Context) -> Running:
    built = variant.build(ctx)
    with closed_on_error(built.close):
        running = Running(variant, built, logged_in_client(built.app, variant.name))
        verify(running)
    return running


def calibrate(running: Running, seconds: float, warmup: float) -> None:
    calibrate_endpoints(running.client, ENDPOINTS, running.batch, seconds, warmup)


@dataclass
class Probe:
    """One call timed like a variant's request, in the same rounds, to split the time of a
    read into its parts: a bare round trip, the store's statement, ``store.load``."""

    name: str
    server: str
    part: str
    #: One call; returns whether its answer is right.
    call: Callable[[], bool]
    close: Callable[[], None] = lambda: None
    batch: int = 0


#: What each probe part is, in the order of the report.
PROBE_PARTS = {
    "select-1": "`SELECT 1` through the bare driver: the round-trip floor",
    "statement": "the store's read statement (captured from a /get) through the bare driver",
    "store-load": "`store.load(key, touch)` as the app calls it (SQLAlchemy Core + the store)",
}
#: The app's touch interval (SESSION_TOUCH_INTERVAL's default).
APP_TOUCH_INTERVAL = 60.0


def _time_calls(probe: Probe, count: int) -> float:
    call = probe.call
    gc.collect()
    start = time.perf_counter()
    for _ in range(count):
        if not call():
            raise BenchmarkError(f"{probe.name}: wrong answer during timing")
    return time.perf_counter() - start


def build_probes(running: Running, server: SQLServer) -> list[Probe]:
    """The probes of ``running``'s read: its /get statement is captured and replayed."""
    engine = running.built.engine
    assert engine is not None
    captured: list[tuple[str, Any]] = []

    def capture(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        captured.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        request_text(running.client, "/get")
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    if len(captured) != 1:
        raise BenchmarkError(f"{running.variant.name}: /get ran {len(captured)} statements")
    statement, parameters = captured[0]
    cookie = running.client.get_cookie("session")
    assert cookie is not None
    session_id, _ = CookieSigner([SECRET_KEY]).unsign(cookie.value)
    assert session_id is not None
    key = store_key(session_id)
    store = _sql_store(running.built.app)
    conn = server.connect()
    cursor = conn.cursor()

    def select_one() -> bool:
        cursor.execute("SELECT 1")
        return [tuple(row) for row in cursor.fetchall()] == [(1,)]

    def replay() -> bool:
        # Its touch condition was fixed at capture: replays read and never write.
        cursor.execute(statement, parameters)
        return len(cursor.fetchall()) == 1

    def load() -> bool:
        now = time.time()
        touch = Touch(now, now + IDLE_TIMEOUT, now - APP_TOUCH_INTERVAL)
        return store.load(key, touch) is not None

    def close() -> None:
        cursor.close()
        conn.close()

    prefix = f"{server.kind}:"
    return [
        Probe(prefix + "select-1", server.kind, "select-1", select_one, close),
        Probe(prefix + "statement", server.kind, "statement", replay),
        Probe(prefix + "store-load", server.kind, "store-load", load),
    ]


class InstrumentedGet:
    """Ours' /get with clocks inside: the time of ``store.load`` within each request, and of
    the driver's execute within it (SQLAlchemy's before/after_cursor_execute events). Timed in
    the same rounds as the variants; the clocks add a few µs to the total."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.name = f"{running.variant.server}:instrumented-get"
        self.batch = running.batch.get("get", 0)
        self.load_seconds = 0.0
        self.driver_seconds = 0.0
        self._driver_started = 0.0

    def _before(self, *args: Any) -> None:
        self._driver_started = time.perf_counter()

    def _after(self, *args: Any) -> None:
        self.driver_seconds += time.perf_counter() - self._driver_started

    def measure(self, count: int) -> dict[str, float]:
        """µs per request: ``total``, ``store_load`` and ``driver`` (within store_load)."""
        store = _sql_store(self.running.built.app)
        engine = store.engine
        original = store.load
        clock = time.perf_counter

        def timed_load(key: str, touch: Touch | None = None) -> Record | None:
            started = clock()
            try:
                return original(key, touch)
            finally:
                self.load_seconds += clock() - started

        self.load_seconds = self.driver_seconds = 0.0
        # An attribute of this store object only; the library's code is untouched.
        setattr(store, "load", timed_load)  # noqa: B010
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)
        try:
            elapsed = time_requests(self.running.client, "/get", count)
        finally:
            event.remove(engine, "after_cursor_execute", self._after)
            event.remove(engine, "before_cursor_execute", self._before)
            delattr(store, "load")
        return {
            "total": elapsed / count * 1e6,
            "store_load": self.load_seconds / count * 1e6,
            "driver": self.driver_seconds / count * 1e6,
        }


def _no_session_app() -> Flask:
    """The same app with a session interface that does nothing: the test client's and Flask's
    own cost of a request, without any session."""
    from flask.sessions import SecureCookieSession, SessionInterface

    class NoSession(SessionInterface):
        def open_session(self, app: Flask, request: Any) -> SecureCookieSession:
            return SecureCookieSession()

        def save_session(self, app: Flask, session: Any, response: Any) -> None:
            return None

    def configure(app: Flask) -> None:
        app.session_interface = NoSession()

    return create_app(configure)


def no_session_probe() -> Probe:
    client = _no_session_app().test_client()

    def get() -> bool:
        return client.get("/get", buffered=True).get_data() == b"None"

    return Probe("no-session:get", "-", "no-session", get)


def ours_memory_probe() -> Probe:
    """Flask-ServerSession with its in-process memory store: its own work per /get when the
    store costs (almost) nothing."""

    def configure(app: Flask) -> None:
        ServerSession(app, store="memory://")

    client = create_app(configure).test_client()
    if request_text(client, "/login") != "ok" or request_text(client, "/get") != USER:
        raise BenchmarkError("ours with memory:// does not keep the session")

    def get() -> bool:
        return client.get("/get", buffered=True).get_data() == USER.encode()

    return Probe("ours-memory:get", "-", "ours-memory", get)


@dataclass
class ClientResults:
    raw: dict[str, dict[str, list[float]]]
    order: list[list[str]]
    batch: dict[str, dict[str, int]]
    #: Microseconds per call of each probe, round by round.
    probes: dict[str, list[float]] = field(default_factory=dict)
    #: Per server, round by round: µs per request of ours' instrumented /get and its parts.
    instrumented: dict[str, list[dict[str, float]]] = field(default_factory=dict)


def run_client(
    runnings: Sequence[Running],
    probes: Sequence[Probe],
    rounds: int,
    seconds: float,
    warmup: float,
) -> ClientResults:
    for running in runnings:
        calibrate(running, seconds, warmup)
    for probe in probes:
        deadline = time.perf_counter() + warmup
        while time.perf_counter() < deadline:
            probe.call()
        probe.batch = calibrated(functools.partial(_time_calls, probe), seconds)
    raw: dict[str, dict[str, list[float]]] = {
        r.variant.name: {e: [] for e in ENDPOINTS} for r in runnings
    }
    probe_us: dict[str, list[float]] = {p.name: [] for p in probes}
    instrumented = [
        InstrumentedGet(r) for r in runnings if r.variant.name in (OURS_PG, OURS_MARIADB)
    ]
    parts: dict[str, list[dict[str, float]]] = {
        str(i.running.variant.server): [] for i in instrumented
    }
    order: list[list[str]] = []
    timed: list[Running | Probe | InstrumentedGet] = [*runnings, *probes, *instrumented]
    for round_index in range(rounds):
        this_round = rotated(timed, round_index)
        order.append([t.variant.name if isinstance(t, Running) else t.name for t in this_round])
        for item in this_round:
            if isinstance(item, Probe):
                probe_us[item.name].append(_time_calls(item, item.batch) / item.batch * 1e6)
                continue
            if isinstance(item, InstrumentedGet):
                parts[str(item.running.variant.server)].append(item.measure(item.batch))
                continue
            for endpoint in ENDPOINTS:
                count = item.batch[endpoint]
                elapsed = time_requests(item.client, "/" + endpoint, count)
                raw[item.variant.name][endpoint].append(count / elapsed)
        print(f"test client: round {round_index + 1}/{rounds} done", file=sys.stderr, flush=True)
    for running in runnings:
        verify(running)  # timing must not have broken anything either
    batch = {r.variant.name: dict(r.batch) for r in runnings}
    batch.update({p.name: {"calls": p.batch} for p in probes})
    return ClientResults(raw, order, batch, probe_us, parts)


def summarize_breakdown(
    results: ClientResults, summary: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, dict[str, Any]]:
    """Per server, where the time of ours' /get goes, in µs per request (medians over rounds).

    ``session_cost`` is ours' /get minus the same request without any session; the goal of
    0.5x the cookie session allows ``session_budget`` = 2 x cookie /get - no-session /get."""
    breakdown: dict[str, dict[str, Any]] = {}
    floor_rounds = results.probes.get("no-session:get")
    if not floor_rounds or BASELINE not in summary:
        return breakdown
    floor = statistics.median(floor_rounds)
    memory = statistics.median(results.probes["ours-memory:get"])
    cookie = 1e6 / summary[BASELINE]["get"]["median"]
    for kind, variant in ((PG, OURS_PG), (MARIADB, OURS_MARIADB)):
        rounds = results.instrumented.get(kind)
        if not rounds or variant not in summary:
            continue
        ours = 1e6 / summary[variant]["get"]["median"]
        load = statistics.median(r["store_load"] for r in rounds)
        driver = statistics.median(r["driver"] for r in rounds)
        clocked = statistics.median(r["total"] for r in rounds)
        isolated = {
            part: statistics.median(results.probes[f"{kind}:{part}"])
            for part in PROBE_PARTS
            if f"{kind}:{part}" in results.probes
        }
        breakdown[kind] = {
            "variant": variant,
            "no_session_get_us": floor,
            "cookie_get_us": cookie,
            "cookie_session_cost_us": cookie - floor,
            "ours_get_us": ours,
            "ours_session_cost_us": ours - floor,
            "session_budget_us": 2 * cookie - floor,
            "ours_memory_get_us": memory,
            "serversession_own_work_us": memory - floor,
            "instrumented_total_us": clocked,
            "store_load_in_request_us": load,
            "driver_execute_in_request_us": driver,
            "sqlalchemy_and_store_us": load - driver,
            # From the instrumented run, whose parts add up (its total is the timed /get plus
            # the clocks' few µs): what is left once Flask, the test client, Flask-ServerSession's
            # own work (measured with the memory store) and store.load are taken out.
            "rest_us": clocked - memory - load,
            "instrumented_rounds": rounds,
            "isolated_us": isolated,
            "isolated_rounds_us": {part: results.probes[f"{kind}:{part}"] for part in isolated},
        }
    return breakdown


def evaluate_client_goals(
    summary: dict[str, dict[str, dict[str, Any]]], raw: dict[str, dict[str, list[float]]]
) -> list[dict[str, Any]]:
    goals = []
    for goal in GOALS:
        ours = summary.get(goal.variant, {}).get(goal.endpoint)
        theirs = summary.get(goal.against, {}).get(goal.endpoint)
        ratio = None
        round_ratios = None
        if ours is not None and theirs is not None:
            ratio = ours["median"] / theirs["median"]
            round_ratios = [
                a / b
                for a, b in zip(
                    raw[goal.variant][goal.endpoint], raw[goal.against][goal.endpoint], strict=True
                )
            ]
        goals.append(
            {
                "goal": f"{goal.variant} /{goal.endpoint} >= {goal.target}x {goal.against}",
                "target_ratio": goal.target,
                "ratio": ratio,
                "round_ratios": round_ratios,
                "status": goal_status(ratio is not None and ratio >= goal.target, ratio),
            }
        )
    return goals


def compare_to_peers(
    summary: dict[str, dict[str, dict[str, Any]]], raw: dict[str, dict[str, list[float]]]
) -> list[dict[str, Any]]:
    comparisons = []
    for ours_name, theirs_name in PEERS:
        ours = summary.get(ours_name)
        theirs = summary.get(theirs_name)
        if ours is None or theirs is None:
            continue
        for endpoint in ENDPOINTS:
            round_ratios = [
                a / b
                for a, b in zip(raw[ours_name][endpoint], raw[theirs_name][endpoint], strict=True)
            ]
            comparisons.append(
                {
                    "ours": ours_name,
                    "peer": theirs_name,
                    "endpoint": endpoint,
                    "ours_over_peer": ours[endpoint]["median"] / theirs[endpoint]["median"],
                    "round_ratios": round_ratios,
                    "peer_ratio_to_cookie": theirs[endpoint]["ratio_to_cookie"],
                }
            )
    return comparisons


# -- statements per request ----------------------------------------------------------------------


def _kind(statement: str) -> str:
    """The statement's first word: ``SELECT``, ``UPDATE``, ``WITH`` (our read with its touch)."""
    words = statement.lstrip().split(None, 1)
    return words[0].upper() if words else "?"


_TRANSACTION_CONTROL = {"BEGIN", "COMMIT", "ROLLBACK", "START"}


class PgStatementLog:
    """What PostgreSQL ran, from its log with ``log_statement = 'all'`` (on only while counting).

    Every statement a client sent is logged, BEGIN and COMMIT too (psycopg sends BEGIN itself,
    so SQLAlchemy's events never see it). Markers sent on an admin connection delimit one
    request's statements."""

    _LINE = re.compile(r"^@@(\d+)@@ LOG:  (?:statement|execute [^:]+): (.*)$")

    def __init__(self, server: SQLServer) -> None:
        self.server = server
        self.conn: Any = None

    def __enter__(self) -> PgStatementLog:
        self.conn = self.server.connect()
        self.conn.execute("ALTER SYSTEM SET log_statement = 'all'")
        self.conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)  # every backend reloads its configuration before its next statement
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.execute("ALTER SYSTEM RESET log_statement")
            self.conn.execute("SELECT pg_reload_conf()")
        finally:
            self.conn.close()

    def _mark(self) -> str:
        marker = f"bench-mark-{uuid.uuid4().hex}"  # unique in the whole log
        self.conn.execute(f"SELECT '{marker}'")
        return marker

    def around(self, action: Callable[[], object]) -> list[str]:
        """The statements (their first words) the server ran during ``action``, in order."""
        first = self._mark()
        action()
        last = self._mark()
        for _ in range(50):  # the log file is written by the server: wait for the last marker
            lines = self.server.process.log_path.read_text(errors="replace").splitlines()
            statements = [m.group(2) for m in map(self._LINE.match, lines) if m]
            if any(last in s for s in statements):
                break
            time.sleep(0.05)
        else:
            raise BenchmarkError("PostgreSQL's statement log never showed the end marker")
        start_at = next(i for i, s in enumerate(statements) if first in s)
        end_at = next(i for i, s in enumerate(statements) if last in s)
        return [_kind(s) for s in statements[start_at + 1 : end_at]]


class MariaDBCounters:
    """What MariaDB ran, from ``SHOW GLOBAL STATUS LIKE 'Com_%'`` deltas (COMMIT, ROLLBACK and
    SET statements included)."""

    def __init__(self, server: SQLServer) -> None:
        self.server = server
        self.conn: Any = None

    def __enter__(self) -> MariaDBCounters:
        self.conn = self.server.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def _snapshot(self) -> dict[str, int]:
        with self.conn.cursor() as cursor:
            cursor.execute("SHOW GLOBAL STATUS LIKE 'Com\\_%'")
            return {str(name): int(value) for name, value in cursor.fetchall()}

    def around(self, action: Callable[[], object]) -> list[str]:
        before = self._snapshot()
        action()
        after = self._snapshot()
        kinds: list[str] = []
        for name, value in sorted(after.items()):
            delta = value - before.get(name, 0)
            if name == "Com_show_status":
                delta -= 1  # our own SHOW GLOBAL STATUS
            kinds += [name.removeprefix("Com_").upper()] * delta
        return kinds


def count_statements(running: Running, ctx: Context) -> dict[str, dict[str, Any]]:
    """One request of each kind (after one not counted): the statements SQLAlchemy sent and
    those the server ran; the two must agree on everything but transaction control."""
    engine = running.built.engine
    kind = running.variant.server
    assert engine is not None and kind is not None
    server = ctx.require(kind)
    sent: list[str] = []

    def before_cursor_execute(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        sent.append(_kind(statement))

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    view: PgStatementLog | MariaDBCounters = (
        PgStatementLog(server) if kind == PG else MariaDBCounters(server)
    )
    counts: dict[str, dict[str, Any]] = {}
    try:
        with view:
            for endpoint in COUNT_ENDPOINTS:
                path = "/" + endpoint
                request_text(running.client, path)  # connections made, statements prepared
                sent.clear()
                ran = view.around(functools.partial(request_text, running.client, path))
                sqlalchemy_kinds = list(sent)
                ran_other = [k for k in ran if k not in _TRANSACTION_CONTROL]
                if kind == PG and sorted(ran_other) != sorted(sqlalchemy_kinds):
                    raise BenchmarkError(
                        f"{running.variant.name} {path}: SQLAlchemy sent {sqlalchemy_kinds},"
                        f" the server logged {ran}"
                    )
                if kind == MARIADB and len(ran_other) != len(sqlalchemy_kinds):
                    raise BenchmarkError(
                        f"{running.variant.name} {path}: SQLAlchemy sent {sqlalchemy_kinds},"
                        f" the server counted {ran}"
                    )
                expected = EXPECTED_STATEMENTS.get(running.variant.name, {}).get(endpoint)
                counts[endpoint] = {
                    "statements": len(sqlalchemy_kinds),
                    "sqlalchemy": dict(Counter(sqlalchemy_kinds)),
                    "server_total": len(ran),
                    "server": dict(Counter(ran)),
                    "expected": expected,
                }
    finally:
        event.remove(engine, "before_cursor_execute", before_cursor_execute)
    return counts


# -- the scale part ------------------------------------------------------------------------------


def live_rows(tag: str, count: int, now: float, seed: int) -> Iterator[Row]:
    """Live sessions as the store writes them: the key is the hash of the session ID, the data
    an object of serialized values (user, cart, a CSRF token, half of them permanent), created
    in the last 20 days, seen in the last 30 minutes, 70% with a user ID."""
    rng = random.Random(f"{seed}:{tag}")
    uniform, randrange, chance, bits = rng.uniform, rng.randrange, rng.random, rng.getrandbits
    dumps = json.dumps
    for index in range(count):
        key = store_key(session_id_of(tag, index))
        cart = [randrange(1, 500) for _ in range(randrange(0, 5))]
        values = {
            "user": dumps(user_of(index)),
            "cart": dumps(cart, separators=(",", ":")),
            "csrf_token": dumps(f"{bits(160):040x}"),
        }
        if chance() < 0.5:
            values["_permanent"] = "true"
        created = now - uniform(3600, 20 * DAY)
        last_seen = now - uniform(0, 1800)
        absolute = created + ABSOLUTE_TIMEOUT
        user_id = user_of(index) if chance() < 0.7 else None
        yield (
            key,
            dumps(values),
            created,
            last_seen,
            min(last_seen + IDLE_TIMEOUT, absolute),
            absolute,
            user_id,
            False,
            randrange(1, 40),
        )


def expired_rows(tag: str, count: int, now: float, seed: int) -> Iterator[Row]:
    """Sessions past their end: 90% that reached their absolute timeout (the defaults' idle
    timeout is longer), 10% tombstones of logouts, all at most a week past."""
    rng = random.Random(f"{seed}:{tag}")
    dumps = json.dumps
    for index in range(count):
        key = store_key(session_id_of(tag, index))
        if rng.random() < 0.1:
            until = now - rng.uniform(60, 7 * DAY)
            yield (key, "{}", until, until, until, until, None, True, 1)
            continue
        absolute = now - rng.uniform(60, 7 * DAY)
        created = absolute - ABSOLUTE_TIMEOUT
        last_seen = absolute - rng.uniform(0, 3 * DAY)
        values = {"user": dumps(user_of(index)), "cart": "[]"}
        yield (key, dumps(values), created, last_seen, absolute, absolute, None, False, 3)


def check_row_format() -> None:
    """The generated values are what the library writes for the same Python values."""
    for name, value, text in (
        ("user", user_of(7), json.dumps(user_of(7))),
        ("cart", [3, 41, 7], json.dumps([3, 41, 7], separators=(",", ":"))),
        ("csrf_token", "0f" * 20, json.dumps("0f" * 20)),
        ("_permanent", True, "true"),
    ):
        if dumps_value(name, value) != text:
            raise BenchmarkError(
                f"row format: {name} is {dumps_value(name, value)!r}, not {text!r}"
            )


def bulk_insert(server: SQLServer, table: str, rows: Iterable[Row], workdir: Path) -> None:
    """Rows into ``table``: COPY on PostgreSQL, LOAD DATA LOCAL INFILE on MariaDB."""
    if server.kind == PG:
        with psycopg.connect(host=HOST, port=server.port, user="postgres", dbname=DATABASE) as conn:
            with conn.cursor() as cursor:
                statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                    sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
                )
                with cursor.copy(statement) as copy:
                    write_row = copy.write_row
                    for row in rows:
                        write_row(row)
            conn.commit()
        return
    # A tab-separated file, sorted by key: InnoDB keeps rows in primary-key order anyway, and a
    # sorted load fills its pages in one pass. No escape character: JSON has no tab nor newline.
    lines = sorted(
        f"{key}\t{data}\t{created!r}\t{seen!r}\t{expires!r}\t{absolute!r}"
        f"\t{'NULL' if user_id is None else user_id}\t{int(ended)}\t{version}\n"
        for key, data, created, seen, expires, absolute, user_id, ended, version in rows
    )
    path = workdir / f"{table}.tsv"
    path.write_text("".join(lines), encoding="utf-8")
    del lines
    columns = ", ".join(f"`{c}`" for c in COPY_COLUMNS)
    conn = server.connect()
    try:
        with conn.cursor() as cursor:
            cursor.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}` CHARACTER SET utf8mb4"
                f" FIELDS TERMINATED BY '\\t' ESCAPED BY '' LINES TERMINATED BY '\\n' ({columns})",
                (str(path),),
            )
    finally:
        conn.close()
        path.unlink()


def _size_label(size: int) -> str:
    return f"{size:,}"


@dataclass
class ScaleTarget:
    """One table of ``size`` sessions, its store and an app serving it."""

    server: SQLServer
    size: int
    table: str
    tag: str
    store: SQLStore
    app: Flask
    client: FlaskClient
    insert_seconds: float = 0.0
    sizes: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.table


def build_scale_target(
    server: SQLServer, size: int, now: float, seed: int, workdir: Path
) -> ScaleTarget:
    tag = f"{server.kind}-{size}"
    table = f"scale_{size}"
    store = SQLStore.from_url(f"{server.url}?table={table}")
    store.create_schema()  # the table and its indexes, as the store creates them
    started = time.perf_counter()
    bulk_insert(server, table, live_rows(tag, size, now, seed), workdir)
    insert_seconds = time.perf_counter() - started
    if server.kind == PG:
        server.query(f'VACUUM (ANALYZE) "{table}"')
    else:
        server.query(f"ANALYZE TABLE `{table}`")

    def configure(app: Flask) -> None:
        # No cleanup behind the measurement's back: clear_expired is measured on its own.
        ServerSession(app, store=store, touch_interval=SCALE_TOUCH_INTERVAL, cleanup_interval=0)

    app = create_app(configure)
    client = app.test_client(use_cookies=False)
    target = ScaleTarget(server, size, table, tag, store, app, client, insert_seconds)
    target.sizes = table_sizes(server, table)
    print(
        f"{server.kind}: {size:,} sessions in {table} in {insert_seconds:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return target


def table_sizes(server: SQLServer, table: str) -> dict[str, Any]:
    if server.kind == PG:
        heap, indexes = server.query(
            "SELECT pg_table_size(%s), pg_indexes_size(%s)", (table, table)
        )[0]
        levels = None
        try:
            server.query("CREATE EXTENSION IF NOT EXISTS pageinspect")
            levels = int(server.query("SELECT level FROM bt_metap(%s)", (f"{table}_pkey",))[0][0])
            levels += 1  # level of the root; 0 means the root is a leaf
        except psycopg.Error:
            pass
        return {"table_bytes": int(heap), "index_bytes": int(indexes), "pk_levels": levels}
    data, index = server.query(
        "SELECT data_length, index_length FROM information_schema.tables"
        " WHERE table_schema = %s AND table_name = %s",
        (DATABASE, table),
    )[0]
    return {"table_bytes": int(data), "index_bytes": int(index), "pk_levels": None}


def verify_scale_target(target: ScaleTarget, rng: random.Random) -> None:
    """Every row is there, and sampled sessions read back, directly and through the app."""
    rows = target.server.count(target.table)
    if rows != target.size:
        raise BenchmarkError(f"{target.table}: {rows} rows, expected {target.size}")
    verify_sample(target, rng)


def _touch(mode: str, now: float) -> Touch:
    if mode == "load-touch-due":
        return Touch(now, now + IDLE_TIMEOUT, now + 1.0)  # every live session is due
    return Touch(now, now + IDLE_TIMEOUT, now - SCALE_TOUCH_INTERVAL)


def log_bytes_per_call(target: ScaleTarget, mode: str, calls: int, rng: random.Random) -> float:
    """Write-ahead log bytes the server wrote per call, in a pass of its own (not timed)."""
    indices = [rng.randrange(target.size) for _ in range(calls)]
    prepared, check = prepare_calls(target, mode, indices, functools.partial(_touch, mode))
    before = log_position(target.server)
    answers = [call() for call in prepared]
    written = log_position(target.server) - before
    check(answers)
    return written / calls


def log_position(server: SQLServer) -> int:
    """Bytes of write-ahead log (PostgreSQL's WAL, InnoDB's redo log) written so far."""
    if server.kind == PG:
        return int(server.query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")[0][0])
    rows = server.query("SHOW GLOBAL STATUS LIKE 'Innodb_lsn_current'")
    return int(rows[0][1])


def _pg_scans(server: SQLServer, tables: Sequence[str]) -> dict[str, tuple[int, int]]:
    time.sleep(0.3)  # backends that just closed flush their statistics as they exit
    rows = server.query(
        "SELECT relname, seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables"
        " WHERE relname = ANY(%s)",
        (list(tables),),
    )
    return {str(name): (int(seq), int(idx)) for name, seq, idx in rows}


def run_scale(
    server: SQLServer,
    sizes: Sequence[int],
    rounds: int,
    calls: int,
    expired: int,
    seed: int,
    workdir: Path,
) -> dict[str, Any]:
    """Load latency with each table size, interleaved round by round, then clear_expired."""
    rng = random.Random(f"{seed}:{server.kind}:samples")
    now = time.time()
    targets: list[ScaleTarget] = []
    try:
        for size in sizes:
            targets.append(build_scale_target(server, size, now, seed, workdir))
        for target in targets:
            verify_scale_target(target, rng)
        for mode in SCALE_MODES:  # pools filled, statements prepared
            time_interleaved(targets, mode, 200, rng, 0, functools.partial(_touch, mode))
        # Statistics before and after, from fresh connections: a sequential scan of a sessions
        # table during the measurement would be the scaling failure itself.
        for target in targets:
            target.store.close()
        tables = [t.table for t in targets]
        scans_before = _pg_scans(server, tables) if server.kind == PG else {}
        for mode in SCALE_MODES:  # connected again, statements prepared again
            time_interleaved(targets, mode, 50, rng, 0, functools.partial(_touch, mode))
        raw: dict[str, dict[str, list[list[float]]]] = {
            str(t.size): {mode: [] for mode in SCALE_MODES} for t in targets
        }
        order: list[list[str]] = []
        for round_index in range(rounds):
            modes = rotated(SCALE_MODES, round_index)
            order.append(list(modes))
            for mode in modes:
                touch = functools.partial(_touch, mode)
                timed = time_interleaved(targets, mode, calls, rng, round_index, touch)
                for size, values in timed.items():
                    raw[str(size)][mode].append(values)
            print(
                f"{server.kind} scale: round {round_index + 1}/{rounds} done",
                file=sys.stderr,
                flush=True,
            )
        log_bytes = {
            str(t.size): {
                mode: log_bytes_per_call(t, mode, min(calls, 500), rng) for mode in SCALE_MODES
            }
            for t in targets
        }
        for target in targets:
            target.store.close()
        scans_after = _pg_scans(server, tables) if server.kind == PG else {}
        scans = {
            table: {
                "seq_scans": scans_after[table][0] - scans_before[table][0],
                "index_scans": scans_after[table][1] - scans_before[table][1],
            }
            for table in tables
            if table in scans_before and table in scans_after
        }
        result: dict[str, Any] = {
            "server": server.kind,
            "sizes": list(sizes),
            "rounds": rounds,
            "calls_per_measurement": calls,
            "order": order,
            "tables": {
                str(t.size): {
                    "table": t.table,
                    "insert_seconds": round(t.insert_seconds, 2),
                    "rows_per_second": round(t.size / t.insert_seconds),
                    **t.sizes,
                    **scans.get(t.table, {}),
                }
                for t in targets
            },
            "summary": summarize_scale(raw, sizes),
            "log_bytes_per_call": log_bytes,
            "raw_round_medians_us": {
                size: {mode: [statistics.median(r) for r in rs] for mode, rs in by_mode.items()}
                for size, by_mode in raw.items()
            },
        }
        largest = max(targets, key=lambda t: t.size)
        result["clear_expired"] = (
            measure_clear_expired(largest, expired, seed, workdir) if expired else None
        )
        return result
    finally:
        for target in targets:
            target.store.close()


def summarize_scale(
    raw: dict[str, dict[str, list[list[float]]]], sizes: Sequence[int]
) -> dict[str, dict[str, dict[str, Any]]]:
    smallest = str(min(sizes))
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for size, by_mode in raw.items():
        summary[size] = {}
        for mode, per_round in by_mode.items():
            pooled = [t for r in per_round for t in r]
            round_medians = [statistics.median(r) for r in per_round]
            base_rounds = raw[smallest][mode]
            base_median = statistics.median([t for r in base_rounds for t in r])
            summary[size][mode] = {
                "median_us": statistics.median(pooled),
                "p90_us": percentile(pooled, 0.9),
                "p99_us": percentile(pooled, 0.99),
                "round_median_min_us": min(round_medians),
                "round_median_max_us": max(round_medians),
                "ratio_to_smallest": statistics.median(pooled) / base_median,
                "round_ratios": [
                    m / statistics.median(b)
                    for m, b in zip(round_medians, base_rounds, strict=True)
                ],
            }
    return summary


def measure_clear_expired(
    target: ScaleTarget, count: int, seed: int, workdir: Path
) -> dict[str, Any]:
    """``count`` expired sessions added to the largest table, then one ``clear_expired`` with
    the default batch size; every live session must still be there afterwards."""
    server = target.server
    now = time.time()
    bulk_insert(
        server, target.table, expired_rows(f"{target.tag}-expired", count, now, seed), workdir
    )
    if server.count(target.table) != target.size + count:
        raise BenchmarkError(f"{target.table}: the expired rows did not all arrive")
    started = time.perf_counter()
    removed = target.store.clear_expired(time.time(), batch_size=CLEAR_BATCH_SIZE)
    seconds = time.perf_counter() - started
    left = server.count(target.table)
    if removed != count or left != target.size:
        raise BenchmarkError(
            f"{target.table}: clear_expired removed {removed} of {count} expired sessions,"
            f" {left} rows left of {target.size} live ones"
        )
    batches = math.ceil(count / CLEAR_BATCH_SIZE) + (1 if count % CLEAR_BATCH_SIZE == 0 else 0)
    print(
        f"{server.kind}: clear_expired removed {removed:,} in {seconds:.2f} s",
        file=sys.stderr,
        flush=True,
    )
    return {
        "live_sessions": target.size,
        "expired_sessions": count,
        "batch_size": CLEAR_BATCH_SIZE,
        "statements": batches,
        "seconds": seconds,
        "rows_per_second": removed / seconds,
        "ms_per_batch": seconds / batches * 1e3,
        "live_sessions_after": left,
    }


def evaluate_scale_goals(scale: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    goals = []
    for kind, result in scale.items():
        if result is None:
            continue
        sizes = result["sizes"]
        largest, smallest = str(max(sizes)), min(sizes)
        for mode in SCALE_MODES:
            entry = result["summary"][largest][mode]
            ratio = entry["ratio_to_smallest"]
            goals.append(
                {
                    "goal": f"{kind} {mode}: latency with {int(largest):,} sessions <="
                    f" {SCALE_GOAL}x that with {smallest:,}",
                    "server": kind,
                    "mode": mode,
                    "primary": kind == PG and mode == "load",
                    "target_ratio": SCALE_GOAL,
                    "ratio": ratio,
                    "round_ratios": entry["round_ratios"],
                    "status": goal_status(ratio <= SCALE_GOAL, ratio),
                }
            )
    return goals


# -- reporting -----------------------------------------------------------------------------------


def machine_info(ctx: Context) -> dict[str, Any]:
    packages = package_versions(PACKAGES)
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "servers": {
            kind: {"version": server.version, "settings": server.settings}
            for kind, server in ctx.servers.items()
        },
        "postgresql_arguments": PG_SETTINGS,
        "mariadb_arguments": list(MARIADB_SETTINGS),
        "packages": packages,
    }


def _range(values: Sequence[float] | None) -> str:
    return "n/a" if not values else f"{min(values):.2f}-{max(values):.2f}x"


def _mb(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:,.1f} MiB"


def render_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    packages = machine["packages"]
    servers = machine["servers"]
    settings = report["settings"]
    server_text = "; ".join(
        f"{kind} {info['version']} ({', '.join(f'{k}={v}' for k, v in info['settings'].items())})"
        for kind, info in servers.items()
    )
    lines = [
        f"# SQL store benchmark, {report['date']}",
        "",
        f"Python {machine['python']} on {machine['platform']}, {machine['cpu_count']} CPUs"
        f" ({machine['cpu']}); Flask {packages['flask']}, Flask-ServerSession"
        f" {packages['flask-serversession']}, Flask-Session {packages['flask-session']},"
        f" Flask-SQLAlchemy {packages['flask-sqlalchemy']}, SQLAlchemy {packages['sqlalchemy']},"
        f" psycopg {packages['psycopg']}, PyMySQL {packages['pymysql']}.",
        f"Servers (started by the run on 127.0.0.1, same machine): {server_text}.",
        "Commits do not wait for the disk on either server (`synchronous_commit=off`,"
        " `innodb_flush_log_at_trx_commit=2`): this machine's disk is not what is measured, and"
        " it favours whichever library writes more (Flask-Session writes on every request)."
        " InnoDB's buffer pool holds the largest table (InnoDB reads past the OS page cache;"
        " PostgreSQL's 128MB shared buffers are backed by it). Method: benchmarks/README.md,"
        " *SQL benchmark*.",
        f"Load average {report['load_average_before']} before,"
        f" {report['load_average_after']} after; {report['duration_seconds']:.0f} s in all.",
    ]
    if report["skipped"]:
        lines += ["", "## Skipped", ""]
        lines += [f"- **{name}**: {reason}" for name, reason in report["skipped"].items()]

    client = report["testclient"]
    if client:
        lines += [
            "",
            "## Requests per second through Flask's test client",
            "",
            f"{settings['rounds']} rounds of ~{settings['seconds']} s per measurement, variants"
            " interleaved (rotated each round), every response checked for 200 and the session"
            " checked before and after timing. Median req/s over the rounds, min, max; *vs"
            " cookie* is the median over the cookie session's median for the same endpoint in"
            " this run, *per round* the range of that ratio round by round, *+µs/req* the time"
            " the session adds to a request.",
            "",
            "| variant | endpoint | median req/s | min | max | vs cookie | per round | +µs/req |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, by_endpoint in client["summary"].items():
            for endpoint, entry in by_endpoint.items():
                extra = entry["extra_us_per_request"]
                lines.append(
                    f"| {name} | /{endpoint} | {entry['median']:,.0f} | {entry['min']:,.0f}"
                    f" | {entry['max']:,.0f} | {fmt_ratio(entry['ratio_to_cookie'])}"
                    f" | {_range(entry['round_ratios'])}"
                    f" | {'n/a' if extra is None else f'{extra:+.0f}'} |"
                )
        if client["comparisons"]:
            lines += [
                "",
                "| ours | Flask-Session | endpoint | ours / Flask-Session | per round"
                " | Flask-Session vs cookie |",
                "|---|---|---|---:|---:|---:|",
            ]
            for item in client["comparisons"]:
                lines.append(
                    f"| {item['ours']} | {item['peer']} | /{item['endpoint']}"
                    f" | {fmt_ratio(item['ours_over_peer'])} | {_range(item['round_ratios'])}"
                    f" | {fmt_ratio(item['peer_ratio_to_cookie'])} |"
                )

        breakdown = client["read_breakdown"]
        for item in breakdown.values():
            isolated = item["isolated_us"]
            lines += [
                "",
                f"### Where the time of {item['variant']} /get goes",
                "",
                "µs per request, medians over the same rounds. *No session* is the same app"
                " with a session interface that does nothing (the test client's and Flask's own"
                " cost). The parts of ours' /get come from a run of /get with clocks around"
                " `store.load` and around the driver's execute (SQLAlchemy's"
                " `before/after_cursor_execute`); the isolated calls are timed in a loop of"
                " their own.",
                "",
                "| what | µs |",
                "|---|---:|",
                f"| /get with no session at all | {item['no_session_get_us']:.0f} |",
                f"| cookie session /get | {item['cookie_get_us']:.0f} |",
                f"| ours with the memory:// store /get | {item['ours_memory_get_us']:.0f} |",
                f"| {item['variant']} /get | {item['ours_get_us']:.0f} |",
                f"| ... its session's cost ({item['variant']} - no session) |"
                f" **{item['ours_session_cost_us']:.0f}** |",
                f"| ... the same /get with the clocks (the parts below add up to it minus no"
                f" session) | {item['instrumented_total_us']:.0f} |",
                f"| ... ... Flask-ServerSession's own work (memory:// - no session) |"
                f" {item['serversession_own_work_us']:.0f} |",
                f"| ... ... `store.load` inside the request |"
                f" {item['store_load_in_request_us']:.0f} |",
                f"| ... ... ... the driver's execute (round trip + server) |"
                f" {item['driver_execute_in_request_us']:.0f} |",
                f"| ... ... ... SQLAlchemy Core + the store's Python |"
                f" {item['sqlalchemy_and_store_us']:.0f} |",
                f"| ... ... the rest: the same Python running slower around a round trip"
                f" (clocked - memory:// - store.load) | {item['rest_us']:.0f} |",
                f"| session cost that 0.5x cookie allows (2 x cookie - no session) |"
                f" {item['session_budget_us']:.0f} |",
            ]
            for part, text in PROBE_PARTS.items():
                if part in isolated:
                    rounds_us = item["isolated_rounds_us"][part]
                    lines.append(
                        f"| isolated: {text} | {isolated[part]:.0f}"
                        f" ({min(rounds_us):.0f}-{max(rounds_us):.0f}) |"
                    )

    lines += ["", "## Goals", ""]
    for goal in report["goals"]:
        lines.append(
            f"- **{goal['status']}**: {goal['goal']} (measured {fmt_ratio(goal['ratio'])},"
            f" per round {_range(goal['round_ratios'])})"
        )

    if report["statements"]:
        lines += [
            "",
            "## Statements per request",
            "",
            "One request of each kind after one that is not counted (the rate-limited touch is"
            " not due). *statements* are what SQLAlchemy sent (`before_cursor_execute`);"
            " *server* is what the server ran: PostgreSQL's log (`log_statement = all`), which"
            " also shows the BEGIN that psycopg sends itself and every COMMIT; MariaDB's"
            " `Com_*` counters. `WITH` is our read with its touch riding along. *expected* is"
            " what issue 4 requires of ours. `/rw` reads, then writes.",
            "",
            "| variant | endpoint | statements | expected | SQLAlchemy sent | server ran"
            " (total) | server ran |",
            "|---|---|---:|---:|---|---:|---|",
        ]
        for name, by_endpoint in report["statements"].items():
            for endpoint, item in by_endpoint.items():
                expected = item["expected"]
                expected_text = "-" if expected is None else str(expected)
                if expected is not None:
                    expected_text += " ok" if item["statements"] == expected else " **MISSED**"
                lines.append(
                    f"| {name} | /{endpoint} | {item['statements']} | {expected_text}"
                    f" | {fmt_counts(item['sqlalchemy'])} | {item['server_total']}"
                    f" | {fmt_counts(item['server'])} |"
                )

    for kind, result in report["scale"].items():
        if result is None:
            continue
        smallest = min(result["sizes"])
        lines += [
            "",
            f"## Scale on {kind}",
            "",
            f"Tables of {', '.join(_size_label(s) for s in result['sizes'])} live sessions in"
            " the store's own row format (bulk-loaded, then analyzed), each with its own"
            f" store. {result['rounds']} rounds; in each, for each kind of call,"
            f" {result['calls_per_measurement']:,} calls per table, the tables interleaved call"
            " by call (their order rotated at every step), so that whatever disturbs the"
            " machine hits every size alike; each call on a session drawn at random from its"
            " whole table, each call timed. Median, p90 and p99 over all calls; *round"
            f" medians* the range of the per-round medians; *vs {smallest:,}* the median over"
            f" that of the {smallest:,}-session table, *per round* the same ratio round by"
            " round; *log bytes per call* the write-ahead log the server wrote per call"
            " (PostgreSQL WAL, InnoDB redo), from a pass of its own after the timed rounds"
            " (server-wide, so background work such as autovacuum or InnoDB's purge shows as a"
            " few bytes): a read writes none, a due touch writes its row and index entries,"
            " plus, on PostgreSQL, a full image of each page it is the first to modify since"
            " the last checkpoint (`full_page_writes`).",
            "",
        ]
        for mode in SCALE_MODES:
            lines.append(f"- **{mode}**: {SCALE_MODE_TEXT[mode]}")
        lines += [
            "",
            f"| mode | sessions | median µs | p90 µs | p99 µs | round medians µs"
            f" | vs {smallest:,} | per round | log bytes per call |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for mode in SCALE_MODES:
            for size in result["sizes"]:
                entry = result["summary"][str(size)][mode]
                log = result["log_bytes_per_call"][str(size)][mode]
                lines.append(
                    f"| {mode} | {size:,} | {entry['median_us']:.0f} | {entry['p90_us']:.0f}"
                    f" | {entry['p99_us']:.0f} | {entry['round_median_min_us']:.0f}-"
                    f"{entry['round_median_max_us']:.0f} | {fmt_ratio(entry['ratio_to_smallest'])}"
                    f" | {_range(entry['round_ratios'])} | {log:,.0f} |"
                )
        lines += [
            "",
            "| sessions | bulk insert s | rows/s | table | indexes | primary key levels"
            " | seq scans / index scans while measured |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for size in result["sizes"]:
            table = result["tables"][str(size)]
            scans = (
                f"{table['seq_scans']} / {table['index_scans']:,}"
                if "seq_scans" in table
                else "n/a"
            )
            levels = table["pk_levels"]
            lines.append(
                f"| {size:,} | {table['insert_seconds']:.1f}"
                f" | {table['rows_per_second']:,}"
                f" | {_mb(table['table_bytes'])} | {_mb(table['index_bytes'])}"
                f" | {'n/a' if levels is None else levels} | {scans} |"
            )
        clear = result["clear_expired"]
        if clear:
            lines += [
                "",
                f"`clear_expired` of {clear['expired_sessions']:,} expired sessions (10% of"
                f" them tombstones) added to the {clear['live_sessions']:,}-session table, batch"
                f" size {clear['batch_size']}: **{clear['seconds']:.2f} s**"
                f" ({clear['rows_per_second']:,.0f} rows/s, {clear['statements']} batches,"
                f" {clear['ms_per_batch']:.1f} ms each); {clear['live_sessions_after']:,} live"
                " sessions left, as before.",
            ]

    lines += reproduce_lines(report["command"])
    return "\n".join(lines)


# -- profiling -----------------------------------------------------------------------------------


def profile(variant: Variant, endpoint: str, seconds: float, warmup: float, top: int) -> str:
    with servers_for([variant.server] if variant.server else []) as ctx:
        running = start(variant, ctx)
        try:
            calibrate(running, seconds, warmup)
            count = running.batch[endpoint]
            profiler, elapsed, plain = profile_requests(running.client, endpoint, count)
        finally:
            running.built.close()
    sections = [
        ("Flask-ServerSession functions", "flask_serversession"),
        ("SQLAlchemy and driver functions", "sqlalchemy|psycopg|pymysql"),
    ]
    heading = profile_heading(count, variant.name, endpoint, elapsed, plain)
    return profile_report(profiler, heading, sections, top)


# -- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=7, help="test-client rounds (default 7)")
    parser.add_argument(
        "--seconds", type=float, default=0.4, help="seconds per test-client measurement (0.4)"
    )
    parser.add_argument("--warmup", type=float, default=0.3, help="warm-up seconds (0.3)")
    parser.add_argument(
        "--sizes",
        default=",".join(str(s) for s in SCALE_SIZES),
        help="comma-separated table sizes of the scale part (default 1000,100000,1000000)",
    )
    parser.add_argument("--scale-rounds", type=int, default=5, help="scale rounds (default 5)")
    parser.add_argument(
        "--scale-calls", type=int, default=1000, help="calls per scale measurement (1000)"
    )
    parser.add_argument(
        "--expired", type=int, default=EXPIRED_SESSIONS, help="expired sessions to clear"
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)",
    )
    parser.add_argument("--no-mariadb", action="store_true", help="PostgreSQL only")
    parser.add_argument("--no-mariadb-scale", action="store_true", help="no scale part on MariaDB")
    parser.add_argument("--seed", type=int, default=20261125, help="random seed of the rows")
    parser.add_argument(
        "--quick", action="store_true", help="smoke check: tiny everything, writes no files"
    )
    parser.add_argument(
        "--profile",
        metavar="VARIANT:ENDPOINT",
        help="print a cProfile of one test-client variant and endpoint instead",
    )
    parser.add_argument("--top", type=int, default=25, help="rows per profile listing")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup = 1, 0.02, 0.01
        args.sizes, args.scale_rounds, args.scale_calls, args.expired = "100,2000", 1, 50, 500
    try:
        args.size_list = sorted({int(s) for s in args.sizes.split(",")})
    except ValueError:
        parser.error("--sizes wants comma-separated integers")
    if len(args.size_list) < 2 or min(args.size_list) < 1:
        parser.error("--sizes wants at least two positive sizes")
    if min(args.rounds, args.scale_rounds, args.scale_calls) < 1 or args.seconds <= 0:
        parser.error("rounds, calls and seconds must be positive")
    args.part_list = [part for part in PARTS if part in args.parts.split(",")]
    if not args.part_list or set(args.parts.split(",")) - set(PARTS):
        parser.error(f"--parts wants some of {', '.join(PARTS)}")
    if args.profile:
        name, _, endpoint = args.profile.partition(":")
        if name not in VARIANTS_BY_NAME or endpoint not in ENDPOINTS:
            parser.error(
                f"--profile wants VARIANT:ENDPOINT of {', '.join(VARIANTS_BY_NAME)}"
                f" and {', '.join(ENDPOINTS)}"
            )
    return args


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.profile:
        name, _, endpoint = args.profile.partition(":")
        print(profile(VARIANTS_BY_NAME[name], endpoint, args.seconds * 5, args.warmup, args.top))
        return 0

    check_row_format()
    started = dt.datetime.now(dt.timezone.utc).astimezone()
    load_before = load_average()
    clock = time.perf_counter()
    kinds = [PG] if args.no_mariadb else [PG, MARIADB]
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="sql-bench-") as tmp, servers_for(kinds) as ctx:
        for variant in VARIANTS:
            if variant.server is not None and variant.server not in ctx.servers:
                if variant.server in kinds:
                    skipped[variant.name] = ctx.missing[variant.server]
        variants = [
            v
            for v in VARIANTS
            if v.name not in skipped and (v.server is None or v.server in ctx.servers)
        ]
        runnings: list[Running] = []
        probes: list[Probe] = []
        statements: dict[str, dict[str, dict[str, Any]]] = {}
        client_results = ClientResults({}, [], {})
        try:
            if "testclient" in args.part_list or "statements" in args.part_list:
                for variant in variants:
                    runnings.append(start(variant, ctx))
            if "testclient" in args.part_list:
                probes += [no_session_probe(), ours_memory_probe()]
                for running in runnings:
                    if running.variant.name in (OURS_PG, OURS_MARIADB):
                        assert running.variant.server is not None
                        probes += build_probes(running, ctx.require(running.variant.server))
                client_results = run_client(
                    runnings, probes, args.rounds, args.seconds, args.warmup
                )
            if "statements" in args.part_list:
                for running in runnings:
                    if running.built.engine is not None:
                        statements[running.variant.name] = count_statements(running, ctx)
        finally:
            for probe in probes:
                probe.close()
            for running in runnings:
                running.built.close()

        scale: dict[str, Any] = {}
        for kind in kinds if "scale" in args.part_list else []:
            scale_server = ctx.servers.get(kind)
            if scale_server is None:
                skipped[f"scale-{kind}"] = ctx.missing[kind]
                continue
            if kind == MARIADB and args.no_mariadb_scale:
                continue
            scale[kind] = run_scale(
                scale_server,
                args.size_list,
                args.scale_rounds,
                args.scale_calls,
                args.expired,
                args.seed,
                Path(tmp),
            )
        machine = machine_info(ctx)
    duration = time.perf_counter() - clock

    summary = summarize(client_results.raw)
    client_goals = evaluate_client_goals(summary, client_results.raw) if summary else []
    scale_goals = evaluate_scale_goals(scale)
    report: dict[str, Any] = {
        "benchmark": "sql",
        "date": started.date().isoformat(),
        "started_at": started.isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", "benchmarks/sql_bench.py", *argv]),
        "machine": machine,
        "settings": {
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "quick": args.quick,
            "variants": {v.name: v.description for v in variants},
            "endpoints": list(ENDPOINTS),
            "requests_per_measurement": client_results.batch,
            "scale_sizes": args.size_list,
            "scale_rounds": args.scale_rounds,
            "scale_calls": args.scale_calls,
            "scale_touch_interval": SCALE_TOUCH_INTERVAL,
            "expired_sessions": args.expired,
            "seed": args.seed,
        },
        "skipped": skipped,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "duration_seconds": round(duration, 1),
        "testclient": {
            "order": client_results.order,
            "raw_requests_per_second": client_results.raw,
            "summary": summary,
            "comparisons": compare_to_peers(summary, client_results.raw),
            "read_breakdown": summarize_breakdown(client_results, summary),
        }
        if summary
        else None,
        "goals": client_goals + scale_goals,
        "statements": statements,
        "scale": scale,
    }
    markdown = render_markdown(report)
    print(markdown)
    if args.quick:
        print("(--quick: smoke check only, no result files written)")
        return 0
    stem = f"{report['date']}-sql"
    if (
        args.size_list != list(SCALE_SIZES)
        or args.no_mariadb
        or args.no_mariadb_scale
        or args.part_list != list(PARTS)
    ):
        stem += "-partial"  # never overwrites the day's full run
    write_results(stem, report, markdown)
    return 0


if __name__ == "__main__":
    run_main(main)
