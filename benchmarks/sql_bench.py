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

The servers are the tests' (tests/sql_servers.py) with the benchmark's settings: on 127.0.0.1
only, free ports, data in temp dirs, stopped by PID however the run ends (error, Ctrl-C,
SIGTERM). See benchmarks/README.md.

    python benchmarks/sql_bench.py               # the full run (about 4 minutes)
    python benchmarks/sql_bench.py --quick       # smoke check: tiny sizes, no files
    python benchmarks/sql_bench.py --profile ours-postgresql:get   # cProfile
"""

from __future__ import annotations

import functools
import json
import random
import re
import statistics
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from harness import (
    BASELINE,
    HOST,
    SECRET_KEY,
    USER,
    BenchmarkError,
    Built,
    Goal,
    Probe,
    Running,
    Servers,
    Timed,
    Variant,
    compare_to_peers,
    create_app,
    evaluate_goals,
    goal_status,
    import_or_fail,
    profile_requests,
    progress,
    request_text,
    run_rounds,
    runnable,
    started,
    summarize,
    time_requests,
)
from report import (
    Record,
    Section,
    arguments,
    counts,
    finish,
    goal_lines,
    machine_info,
    render,
    run_main,
    skipped_section,
)
from run import peers_section, throughput_section
from scaling import (
    EXPIRED_SESSIONS,
    IDLE_TIMEOUT,
    SCALE_COLUMNS,
    SCALE_TOUCH_INTERVAL,
    Stored,
    clear_expired_note,
    expired_sessions,
    live_sessions,
    measure_clear_expired,
    prepare_calls,
    scale_rows,
    summarize_scale,
    time_interleaved,
    time_modes,
    user_of,
    verify_sample,
)
from sqlalchemy import event

from flask_serversession import ServerSession
from flask_serversession.ids import CookieSigner, store_key
from flask_serversession.serialization import dumps_value
from flask_serversession.stores import Record as StoredRecord
from flask_serversession.stores import Touch
from flask_serversession.stores.sql import SQLStore

PG = "postgresql"
MARIADB = "mariadb"
ENDPOINTS = ("none", "get", "set")
#: Request kinds whose statements are counted; ``/rw`` reads, then writes.
COUNT_ENDPOINTS = ("none", "get", "set", "rw")
OURS_PG = "ours-postgresql"
FLASK_SESSION_PG = "flask-session-sqlalchemy-postgresql"
OURS_MARIADB = "ours-mariadb"
OURS_TABLE = "serversession"
FLASK_SESSION_TABLE = "sessions"
#: The app's touch interval (SESSION_TOUCH_INTERVAL's default).
APP_TOUCH_INTERVAL = 60.0
SCALE_SIZES = (1_000, 100_000, 1_000_000)
PARTS = ("testclient", "statements", "scale")
#: Load latency with the largest table may be at most this many times that with the smallest.
SCALE_GOAL = 1.2
SCALE_MODES = ("load", "load-touch-due", "testclient-get")
SCALE_MODE_TEXT = {
    "load": "store.load(key, touch), touch not due (a read)",
    "load-touch-due": "store.load(key, touch), touch due (a read that refreshes the expiry)",
    "testclient-get": "GET /get through the test client (cookie of that session)",
}
COPY_COLUMNS: tuple[str, ...] = (
    "key",
    "data",
    "created",
    "last_seen",
    "expires",
    "absolute_expires",
)
COPY_COLUMNS += ("user_id", "ended", "version")
PACKAGES: tuple[str, ...] = (
    "flask",
    "werkzeug",
    "flask-serversession",
    "flask-session",
    "flask-sqlalchemy",
)
PACKAGES += ("sqlalchemy", "psycopg", "psycopg-binary", "pymysql")

#: PostgreSQL settings over the tests' throwaway ones, back to PostgreSQL's defaults (fsync,
#: full page writes, 128MB shared buffers) except that commits do not wait for the WAL flush:
#: this machine's disk is not what is measured, and the setting favours whichever library
#: writes more (Flask-Session writes on every request).
PG_SETTINGS = {
    "fsync": "on",
    "full_page_writes": "on",
    "shared_buffers": "128MB",
    "synchronous_commit": "off",
    # Parsed by the statement count (PgStatementLog).
    "log_line_prefix": "@@%p@@ ",
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


# -- the servers ---------------------------------------------------------------------------------


@dataclass
class SQLServer:
    """A running server, its database, and the benchmark's own (admin) way in."""

    kind: str
    #: SQLAlchemy URL of the database (psycopg 3 / PyMySQL), without store options.
    url: str
    port: int
    database: str
    log_path: Path
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


@contextmanager
def postgresql_server() -> Iterator[SQLServer]:
    """PostgreSQL (tests/sql_servers.py) with the benchmark's settings."""
    from sql_servers import DATABASE, postgresql

    with postgresql(PG_SETTINGS) as server:
        found = SQLServer(PG, server.url, server.port, DATABASE, server.process.log_path)
        found.version = str(found.query("SHOW server_version")[0][0])
        for name in ("shared_buffers", "fsync", "synchronous_commit", "full_page_writes"):
            found.settings[name] = str(found.query(f"SHOW {name}")[0][0])
        found.settings["max_wal_size"] = str(found.query("SHOW max_wal_size")[0][0])
        yield found


@contextmanager
def mariadb_server() -> Iterator[SQLServer]:
    """MariaDB (tests/sql_servers.py) with the benchmark's settings."""
    from sql_servers import DATABASE, mariadb

    with mariadb(MARIADB_SETTINGS) as server:
        url = server.url.replace("mysql+pymysql://", "mariadb+pymysql://", 1)
        found = SQLServer(MARIADB, url, server.port, DATABASE, server.process.log_path)
        found.version = str(found.query("SELECT VERSION()")[0][0])
        for name in ("innodb_buffer_pool_size", "innodb_flush_log_at_trx_commit"):
            found.settings[name] = str(found.query(f"SELECT @@{name}")[0][0])
        yield found


def start_servers(servers: Servers, kinds: Iterable[str]) -> None:
    starters = {PG: postgresql_server, MARIADB: mariadb_server}
    for kind in dict.fromkeys(kinds):
        clock = time.perf_counter()
        servers.start(kind, starters[kind])
        if kind in servers.started:
            found = servers.started[kind]
            took = time.perf_counter() - clock
            progress(f"{kind} {found.version} up on port {found.port} in {took:.1f} s")


# -- variants ------------------------------------------------------------------------------------


def _sql_store(app: Flask) -> SQLStore:
    store = ServerSession.store_of(app)
    assert isinstance(store, SQLStore)
    return store


def _build_cookie(servers: Servers) -> Built:
    return Built(create_app(lambda app: None))


def _build_ours(kind: str) -> Callable[[Servers], Built]:
    def build(servers: Servers) -> Built:
        server: SQLServer = servers.require(kind)
        url = f"{server.url}?table={OURS_TABLE}"

        def configure(app: Flask) -> None:
            ServerSession(app, store=url)

        app = create_app(configure)
        store = _sql_store(app)
        stored = functools.partial(server.count, OURS_TABLE)
        return Built(app, stored_sessions=stored, close=store.close, engine=store.engine)

    return build


def _build_flask_session_pg(servers: Servers) -> Built:
    session = import_or_fail(FLASK_SESSION_PG, "flask_session").Session
    db = import_or_fail(FLASK_SESSION_PG, "flask_sqlalchemy").SQLAlchemy()
    server: SQLServer = servers.require(PG)

    def configure(app: Flask) -> None:
        app.config.update(
            SQLALCHEMY_DATABASE_URI=server.url, SESSION_TYPE="sqlalchemy", SESSION_SQLALCHEMY=db
        )
        db.init_app(app)
        # Flask-Session 0.8 creates its "sessions" table here (checkfirst), in an app context.
        session(app)

    app = create_app(configure)
    with app.app_context():
        engine = db.engine
    stored = functools.partial(server.count, FLASK_SESSION_TABLE)
    return Built(app, stored_sessions=stored, close=engine.dispose, engine=engine)


VARIANTS: tuple[Variant, ...] = (
    Variant(BASELINE, "Flask's default signed-cookie session", _build_cookie),
    Variant(
        OURS_PG,
        f'Flask-ServerSession, store="postgresql+psycopg://...?table={OURS_TABLE}"',
        _build_ours(PG),
        (PG,),
    ),
    Variant(
        FLASK_SESSION_PG,
        'Flask-Session 0.8, SESSION_TYPE="sqlalchemy", SESSION_SQLALCHEMY=Flask-SQLAlchemy db'
        " on the same PostgreSQL server (psycopg 3)",
        _build_flask_session_pg,
        (PG,),
    ),
    Variant(
        OURS_MARIADB,
        f'Flask-ServerSession, store="mariadb+pymysql://...?table={OURS_TABLE}"',
        _build_ours(MARIADB),
        (MARIADB,),
    ),
)
VARIANTS_BY_NAME = {variant.name: variant for variant in VARIANTS}
GOALS = (Goal(OURS_PG, "get", 0.5), Goal(OURS_PG, "get", 3.0, against=FLASK_SESSION_PG))
PEERS = ((OURS_PG, FLASK_SESSION_PG),)
#: Statements per request kind that issue 4 requires of ours (the touch is not due here).
EXPECTED_STATEMENTS = {
    OURS_PG: {"none": 0, "get": 1, "set": 1, "rw": 2},
    OURS_MARIADB: {"none": 0, "get": 1, "set": 1, "rw": 2},
}


# -- where the time of a read goes ---------------------------------------------------------------

#: What each probe part is, in the order of the report.
PROBE_PARTS = {
    "select-1": "`SELECT 1` through the bare driver: the round-trip floor",
    "statement": "the store's read statement (captured from a /get) through the bare driver",
    "store-load": "`store.load(key, touch)` as the app calls it (SQLAlchemy Core + the store)",
}


def _capture_get(running: Running) -> tuple[str, Any]:
    """The one statement ours' /get sends, with its parameters."""
    captured: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *rest: Any) -> None:
        captured.append((statement, parameters))

    event.listen(running.built.engine, "before_cursor_execute", capture)
    try:
        request_text(running.client, "/get")
    finally:
        event.remove(running.built.engine, "before_cursor_execute", capture)
    if len(captured) != 1:
        raise BenchmarkError(f"{running.name}: /get ran {len(captured)} statements")
    return captured[0]


def _session_key(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    session_id, _ = CookieSigner([SECRET_KEY]).unsign(cookie.value)
    assert session_id is not None
    return store_key(session_id)


def build_probes(running: Running, server: SQLServer) -> list[Probe]:
    """The probes of ``running``'s read: its /get statement is captured and replayed."""
    statement, parameters = _capture_get(running)
    key = _session_key(running.client)
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
        return store.load(key, Touch(now, now + IDLE_TIMEOUT, now - APP_TOUCH_INTERVAL)) is not None

    def close() -> None:
        cursor.close()
        conn.close()

    return [
        Probe(f"{server.kind}:select-1", select_one, close),
        Probe(f"{server.kind}:statement", replay),
        Probe(f"{server.kind}:store-load", load),
    ]


class InstrumentedGet:
    """Ours' /get with clocks inside: the time of ``store.load`` within each request, and of
    the driver's execute within it (SQLAlchemy's before/after_cursor_execute events). Timed in
    the same rounds as the variants; the clocks add a few µs to the total."""

    def __init__(self, running: Running) -> None:
        self.running = running
        self.kind = str(running.variant.needs[0])
        self.name = f"{self.kind}:instrumented-get"
        self.batch = 0
        self.rounds: list[dict[str, float]] = []
        self.load_seconds = self.driver_seconds = self._driver_started = 0.0

    def _before(self, *args: Any) -> None:
        self._driver_started = time.perf_counter()

    def _after(self, *args: Any) -> None:
        self.driver_seconds += time.perf_counter() - self._driver_started

    def calibrate(self, seconds: float, warmup: float) -> None:
        self.batch = self.running.batch["get"]

    def measure(self) -> None:
        """µs per request: ``total``, ``store_load`` and ``driver`` (within store_load)."""
        store = _sql_store(self.running.built.app)
        original = store.load
        clock = time.perf_counter

        def timed_load(key: str, touch: Touch | None = None) -> StoredRecord | None:
            started = clock()
            try:
                return original(key, touch)
            finally:
                self.load_seconds += clock() - started

        self.load_seconds = self.driver_seconds = 0.0
        # An attribute of this store object only; the library's code is untouched.
        setattr(store, "load", timed_load)  # noqa: B010
        event.listen(store.engine, "before_cursor_execute", self._before)
        event.listen(store.engine, "after_cursor_execute", self._after)
        try:
            elapsed = time_requests(self.running.client, "/get", self.batch)
        finally:
            event.remove(store.engine, "after_cursor_execute", self._after)
            event.remove(store.engine, "before_cursor_execute", self._before)
            delattr(store, "load")
        count = self.batch
        self.rounds.append(
            {
                "total": elapsed / count * 1e6,
                "store_load": self.load_seconds / count * 1e6,
                "driver": self.driver_seconds / count * 1e6,
            }
        )


def no_session_probe() -> Probe:
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

    client = create_app(configure).test_client()
    return Probe("no-session:get", lambda: client.get("/get", buffered=True).data == b"None")


def ours_memory_probe() -> Probe:
    """Flask-ServerSession with its in-process memory store: its own work per /get when the
    store costs (almost) nothing."""

    def configure(app: Flask) -> None:
        ServerSession(app, store="memory://")

    client = create_app(configure).test_client()
    if request_text(client, "/login") != "ok" or request_text(client, "/get") != USER:
        raise BenchmarkError("ours with memory:// does not keep the session")
    return Probe("ours-memory:get", lambda: client.get("/get", buffered=True).data == b"alice")


def summarize_breakdown(
    probes: dict[str, list[float]],
    instrumented: dict[str, list[dict[str, float]]],
    summary: dict[str, dict[str, dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """Per server, where the time of ours' /get goes, in µs per request (medians over rounds).

    ``session_cost`` is ours' /get minus the same request without any session; the goal of
    0.5x the cookie session allows ``session_budget`` = 2 x cookie /get - no-session /get."""
    if not probes.get("no-session:get") or BASELINE not in summary:
        return {}
    floor = statistics.median(probes["no-session:get"])
    memory = statistics.median(probes["ours-memory:get"])
    cookie = 1e6 / summary[BASELINE]["get"]["median"]
    breakdown: dict[str, dict[str, Any]] = {}
    for kind, variant in ((PG, OURS_PG), (MARIADB, OURS_MARIADB)):
        rounds = instrumented.get(kind)
        if not rounds or variant not in summary:
            continue
        ours = 1e6 / summary[variant]["get"]["median"]
        load, driver, clocked = (
            statistics.median(r[part] for r in rounds) for part in ("store_load", "driver", "total")
        )
        isolated = {p: probes[f"{kind}:{p}"] for p in PROBE_PARTS if f"{kind}:{p}" in probes}
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
            "isolated_us": {part: statistics.median(us) for part, us in isolated.items()},
            "isolated_rounds_us": isolated,
        }
    return breakdown


def run_client(runnings: Sequence[Running], servers: Servers, args: Any) -> dict[str, Any]:
    """The test-client part: the variants, the probes and ours' instrumented /get, in rounds."""
    ours = [r for r in runnings if r.name in (OURS_PG, OURS_MARIADB)]
    with ExitStack() as stack:
        probes = [no_session_probe(), ours_memory_probe()]
        for running in ours:
            probes += build_probes(running, servers.require(running.variant.needs[0]))
        for probe in probes:
            stack.callback(probe.close)
        instrumented = [InstrumentedGet(r) for r in ours]
        timed: list[Timed] = [*runnings, *probes, *instrumented]
        for item in timed:
            item.calibrate(args.seconds, args.warmup)
        order = run_rounds(timed, args.rounds, "test client: ")
    for running in runnings:
        running.verify()  # timing must not have broken anything either
    raw = {r.name: r.rates for r in runnings}
    summary = summarize(raw)
    batch: dict[str, dict[str, int]] = {r.name: dict(r.batch) for r in runnings}
    batch.update({p.name: {"calls": p.batch} for p in probes})
    return {
        "batch": batch,
        "raw": raw,
        "testclient": {
            "order": order,
            "raw_requests_per_second": raw,
            "summary": summary,
            "comparisons": compare_to_peers(raw, PEERS),
            "read_breakdown": summarize_breakdown(
                {p.name: p.us for p in probes}, {i.kind: i.rounds for i in instrumented}, summary
            ),
        },
    }


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

    def _logged(self, last: str) -> list[str]:
        for _ in range(50):  # the log file is written by the server: wait for the last marker
            lines = self.server.log_path.read_text(errors="replace").splitlines()
            statements = [m.group(2) for m in map(self._LINE.match, lines) if m]
            if any(last in s for s in statements):
                return statements
            time.sleep(0.05)
        raise BenchmarkError("PostgreSQL's statement log never showed the end marker")

    def around(self, action: Callable[[], object]) -> list[str]:
        """The statements (their first words) the server ran during ``action``, in order."""
        first = self._mark()
        action()
        last = self._mark()
        statements = self._logged(last)
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
            # Less our own SHOW GLOBAL STATUS.
            delta = value - before.get(name, 0) - (name == "Com_show_status")
            kinds += [name.removeprefix("Com_").upper()] * delta
        return kinds


def _count_one(running: Running, view: Any, sent: list[str], endpoint: str) -> dict[str, Any]:
    path = "/" + endpoint
    request_text(running.client, path)  # connections made, statements prepared
    sent.clear()
    ran = view.around(functools.partial(request_text, running.client, path))
    ran_other = [k for k in ran if k not in _TRANSACTION_CONTROL]
    # PostgreSQL's log names each statement; MariaDB's counters only count them.
    agree = (
        sorted(ran_other) == sorted(sent)
        if isinstance(view, PgStatementLog)
        else len(ran_other) == len(sent)
    )
    if not agree:
        raise BenchmarkError(f"{running.name} {path}: SQLAlchemy sent {sent}, the server ran {ran}")
    return {
        "statements": len(sent),
        "sqlalchemy": dict(Counter(sent)),
        "server_total": len(ran),
        "server": dict(Counter(ran)),
        "expected": EXPECTED_STATEMENTS.get(running.name, {}).get(endpoint),
    }


def count_statements(running: Running, servers: Servers) -> dict[str, dict[str, Any]]:
    """One request of each kind (after one not counted): the statements SQLAlchemy sent and
    those the server ran; the two must agree on everything but transaction control."""
    engine = running.built.engine
    server: SQLServer = servers.require(running.variant.needs[0])
    sent: list[str] = []

    def before_cursor_execute(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        sent.append(_kind(statement))

    event.listen(engine, "before_cursor_execute", before_cursor_execute)
    view = PgStatementLog(server) if server.kind == PG else MariaDBCounters(server)
    try:
        with view:
            return {e: _count_one(running, view, sent, e) for e in COUNT_ENDPOINTS}
    finally:
        event.remove(engine, "before_cursor_execute", before_cursor_execute)


# -- the scale part ------------------------------------------------------------------------------


def _row(s: Stored) -> tuple[Any, ...]:
    """A session as a table row, in COPY_COLUMNS order."""
    data = json.dumps(s.values)
    return (s.key, data, s.created, s.last_seen, s.expires, s.absolute_expires) + (
        s.user_id,
        s.ended,
        s.version,
    )


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


def _copy_pg(server: SQLServer, table: str, rows: Iterable[Stored]) -> None:
    from psycopg import sql

    conn = server.connect()
    try:
        columns = sql.SQL(", ").join(map(sql.Identifier, COPY_COLUMNS))
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), columns)
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(_row(row))
    finally:
        conn.close()


def _tsv(s: Stored) -> str:
    user_id = "NULL" if s.user_id is None else s.user_id
    return (
        f"{s.key}\t{json.dumps(s.values)}\t{s.created!r}\t{s.last_seen!r}\t{s.expires!r}"
        f"\t{s.absolute_expires!r}\t{user_id}\t{int(s.ended)}\t{s.version}\n"
    )


def bulk_insert(server: SQLServer, table: str, rows: Iterable[Stored], workdir: Path) -> None:
    """Rows into ``table``: COPY on PostgreSQL, LOAD DATA LOCAL INFILE on MariaDB."""
    if server.kind == PG:
        _copy_pg(server, table, rows)
        return
    # A tab-separated file, sorted by key: InnoDB keeps rows in primary-key order anyway, and a
    # sorted load fills its pages in one pass. No escape character: JSON has no tab nor newline.
    lines = sorted(map(_tsv, rows))
    path = workdir / f"{table}.tsv"
    path.write_text("".join(lines), encoding="utf-8")
    del lines
    columns = ", ".join(f"`{c}`" for c in COPY_COLUMNS)
    try:
        server.query(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}` CHARACTER SET utf8mb4"
            f" FIELDS TERMINATED BY '\\t' ESCAPED BY '' LINES TERMINATED BY '\\n' ({columns})",
            (str(path),),
        )
    finally:
        path.unlink()


@dataclass
class ScaleTarget:
    """One table of ``size`` sessions, its store and an app serving it."""

    server: SQLServer
    size: int
    table: str
    tag: str
    store: SQLStore
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
    bulk_insert(server, table, live_sessions(tag, size, now, seed), workdir)
    insert_seconds = time.perf_counter() - started
    server.query(f'VACUUM (ANALYZE) "{table}"' if server.kind == PG else f"ANALYZE TABLE `{table}`")

    def configure(app: Flask) -> None:
        # No cleanup behind the measurement's back: clear_expired is measured on its own.
        ServerSession(app, store=store, touch_interval=SCALE_TOUCH_INTERVAL, cleanup_interval=0)

    client = create_app(configure).test_client(use_cookies=False)
    target = ScaleTarget(server, size, table, tag, store, client, insert_seconds)
    target.sizes = table_sizes(server, table)
    progress(f"{server.kind}: {size:,} sessions in {table} in {insert_seconds:.1f} s")
    return target


def table_sizes(server: SQLServer, table: str) -> dict[str, Any]:
    if server.kind == MARIADB:
        data, index = server.query(
            "SELECT data_length, index_length FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name = %s",
            (server.database, table),
        )[0]
        return {"table_bytes": int(data), "index_bytes": int(index), "pk_levels": None}
    heap, indexes = server.query("SELECT pg_table_size(%s), pg_indexes_size(%s)", (table, table))[0]
    levels = None
    try:
        server.query("CREATE EXTENSION IF NOT EXISTS pageinspect")
        # The level of the root, plus one: 0 means the root is a leaf.
        levels = int(server.query("SELECT level FROM bt_metap(%s)", (f"{table}_pkey",))[0][0]) + 1
    except Exception:  # pageinspect is not always installed
        pass
    return {"table_bytes": int(heap), "index_bytes": int(indexes), "pk_levels": levels}


def _touch(mode: str, now: float) -> Touch:
    if mode == "load-touch-due":
        return Touch(now, now + IDLE_TIMEOUT, now + 1.0)  # every live session is due
    return Touch(now, now + IDLE_TIMEOUT, now - SCALE_TOUCH_INTERVAL)


def log_position(server: SQLServer) -> int:
    """Bytes of write-ahead log (PostgreSQL's WAL, InnoDB's redo log) written so far."""
    if server.kind == PG:
        return int(server.query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")[0][0])
    return int(server.query("SHOW GLOBAL STATUS LIKE 'Innodb_lsn_current'")[0][1])


def log_bytes_per_call(target: ScaleTarget, mode: str, calls: int, rng: random.Random) -> float:
    """Write-ahead log bytes the server wrote per call, in a pass of its own (not timed)."""
    indices = [rng.randrange(target.size) for _ in range(calls)]
    prepared, check = prepare_calls(target, mode, indices, functools.partial(_touch, mode))
    before = log_position(target.server)
    answers = [call() for call in prepared]
    written = log_position(target.server) - before
    check(answers)
    return written / calls


def pg_scans(server: SQLServer, tables: Sequence[str]) -> dict[str, tuple[int, int]]:
    if server.kind != PG:
        return {}
    time.sleep(0.3)  # backends that just closed flush their statistics as they exit
    rows = server.query(
        "SELECT relname, seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables"
        " WHERE relname = ANY(%s)",
        (list(tables),),
    )
    return {str(name): (int(seq), int(idx)) for name, seq, idx in rows}


def _warm(targets: Sequence[ScaleTarget], calls: int, rng: random.Random) -> None:
    for mode in SCALE_MODES:  # pools filled, statements prepared
        time_interleaved(targets, mode, calls, rng, 0, functools.partial(_touch, mode))


def _measure_scale(targets: list[ScaleTarget], args: Any, rng: random.Random) -> dict[str, Any]:
    """The timed rounds, with the scans they caused (a sequential scan of a sessions table
    would be the scaling failure itself) and the log bytes per call."""
    server = targets[0].server
    for target in targets:
        verify_sample(target, rng)
        if server.count(target.table) != target.size:
            raise BenchmarkError(f"{target.table}: not all {target.size:,} rows arrived")
    _warm(targets, 200, rng)
    # Statistics before and after, from fresh connections.
    for target in targets:
        target.store.close()
    tables = [t.table for t in targets]
    before = pg_scans(server, tables)
    _warm(targets, 50, rng)  # connected again, statements prepared again
    per_round, order = time_modes(
        targets, SCALE_MODES, args.scale_rounds, args.scale_calls, rng, _touch, server.kind
    )
    log_bytes = {
        str(t.size): {
            m: log_bytes_per_call(t, m, min(args.scale_calls, 500), rng) for m in SCALE_MODES
        }
        for t in targets
    }
    for target in targets:
        target.store.close()
    after = pg_scans(server, tables)
    for target in targets:
        if target.table in before and target.table in after:
            target.sizes["seq_scans"] = after[target.table][0] - before[target.table][0]
            target.sizes["index_scans"] = after[target.table][1] - before[target.table][1]
    return {
        "order": order,
        "summary": summarize_scale(per_round, [t.size for t in targets]),
        "log_bytes_per_call": log_bytes,
        "raw_round_medians_us": {
            str(size): {
                mode: [statistics.median(r) for r in per_round[mode][size]] for mode in SCALE_MODES
            }
            for size in (t.size for t in targets)
        },
    }


def run_scale(server: SQLServer, args: Any, workdir: Path) -> dict[str, Any]:
    """Load latency with each table size, interleaved round by round, then clear_expired."""
    rng = random.Random(f"{args.seed}:{server.kind}:samples")
    now = time.time()
    targets: list[ScaleTarget] = []
    try:
        for size in args.size_list:
            targets.append(build_scale_target(server, size, now, args.seed, workdir))
        result: dict[str, Any] = {
            "server": server.kind,
            "sizes": list(args.size_list),
            "rounds": args.scale_rounds,
            "calls_per_measurement": args.scale_calls,
            **_measure_scale(targets, args, rng),
        }
        result["tables"] = {
            str(t.size): {
                "table": t.table,
                "insert_seconds": round(t.insert_seconds, 2),
                "rows_per_second": round(t.size / t.insert_seconds),
                **t.sizes,
            }
            for t in targets
        }
        largest = targets[-1]
        expired = expired_sessions(
            f"{largest.tag}-expired", args.expired, time.time(), args.seed, 0.1
        )
        result["clear_expired"] = measure_clear_expired(
            largest.store,
            largest.size,
            args.expired,
            functools.partial(server.count, largest.table),
            lambda: bulk_insert(server, largest.table, expired, workdir),
        )
        return result
    finally:
        for target in targets:
            target.store.close()


def evaluate_scale_goals(scale: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    goals = []
    for kind, result in scale.items():
        largest, smallest = str(max(result["sizes"])), min(result["sizes"])
        for mode in SCALE_MODES:
            entry = result["summary"][largest][mode]
            measured = entry["ratio_to_smallest"]
            goals.append(
                {
                    "goal": f"{kind} {mode}: latency with {int(largest):,} sessions <="
                    f" {SCALE_GOAL}x that with {smallest:,}",
                    "server": kind,
                    "mode": mode,
                    "primary": kind == PG and mode == "load",
                    "target_ratio": SCALE_GOAL,
                    "ratio": measured,
                    "round_ratios": entry["round_ratios"],
                    "status": goal_status(measured <= SCALE_GOAL, measured),
                }
            )
    return goals


# -- the report ----------------------------------------------------------------------------------


def _mb(size: int | None) -> str:
    return "n/a" if size is None else f"{size / 2**20:,.1f} MiB"


def breakdown_section(item: dict[str, Any]) -> Section:
    variant = item["variant"]
    text = (
        "µs per request, medians over the same rounds. *No session* is the same app with a"
        " session interface that does nothing (the test client's and Flask's own cost). The"
        " parts of ours' /get come from a run of /get with clocks around `store.load` and around"
        " the driver's execute (SQLAlchemy's `before/after_cursor_execute`); the isolated calls"
        " are timed in a loop of their own."
    )
    rows: list[tuple[str, str]] = [
        (label, f"{item[key]:.0f}")
        for label, key in (
            ("/get with no session at all", "no_session_get_us"),
            ("cookie session /get", "cookie_get_us"),
            ("ours with the memory:// store /get", "ours_memory_get_us"),
            (f"{variant} /get", "ours_get_us"),
        )
    ]
    rows.append(
        (
            f"... its session's cost ({variant} - no session)",
            f"**{item['ours_session_cost_us']:.0f}**",
        )
    )
    rows += [
        (label, f"{item[key]:.0f}")
        for label, key in (
            (
                "... the same /get with the clocks (the parts below add up to it minus no session)",
                "instrumented_total_us",
            ),
            (
                "... ... Flask-ServerSession's own work (memory:// - no session)",
                "serversession_own_work_us",
            ),
            ("... ... `store.load` inside the request", "store_load_in_request_us"),
            (
                "... ... ... the driver's execute (round trip + server)",
                "driver_execute_in_request_us",
            ),
            ("... ... ... SQLAlchemy Core + the store's Python", "sqlalchemy_and_store_us"),
            (
                "... ... the rest: the same Python running slower around a round trip"
                " (clocked - memory:// - store.load)",
                "rest_us",
            ),
            ("session cost that 0.5x cookie allows (2 x cookie - no session)", "session_budget_us"),
        )
    ]
    rounds = item["isolated_rounds_us"]
    rows += [
        (
            f"isolated: {text}",
            f"{item['isolated_us'][part]:.0f} ({min(rounds[part]):.0f}-{max(rounds[part]):.0f})",
        )
        for part, text in PROBE_PARTS.items()
        if part in rounds
    ]
    return Section(f"#Where the time of {variant} /get goes", [text], ("what", "µs"), "lr", rows)


def client_sections(client: dict[str, Any] | None, settings: dict[str, Any]) -> list[Section]:
    if not client:
        return []
    text = (
        f"{settings['rounds']} rounds of ~{settings['seconds']} s per measurement, variants"
        " interleaved (rotated each round), every response checked for 200 and the session"
        " checked before and after timing. Median req/s over the rounds, min, max; *vs"
        " cookie* is the median over the cookie session's median for the same endpoint in"
        " this run, *per round* the range of that ratio round by round, *+µs/req* the time"
        " the session adds to a request."
    )
    table = throughput_section(client["summary"], text)
    table.heading = "Requests per second through Flask's test client"
    return [
        table,
        peers_section(client["comparisons"]),
        *(breakdown_section(item) for item in client["read_breakdown"].values()),
    ]


def statements_section(statements: dict[str, dict[str, dict[str, Any]]]) -> Section:
    if not statements:
        return Section()
    text = (
        "One request of each kind after one that is not counted (the rate-limited touch is"
        " not due). *statements* are what SQLAlchemy sent (`before_cursor_execute`);"
        " *server* is what the server ran: PostgreSQL's log (`log_statement = all`), which"
        " also shows the BEGIN that psycopg sends itself and every COMMIT; MariaDB's"
        " `Com_*` counters. `WITH` is our read with its touch riding along. *expected* is"
        " what issue 4 requires of ours. `/rw` reads, then writes."
    )
    rows = []
    for name, by_endpoint in statements.items():
        for endpoint, item in by_endpoint.items():
            expected = item["expected"]
            expected_text = "-" if expected is None else str(expected)
            if expected is not None:
                expected_text += " ok" if item["statements"] == expected else " **MISSED**"
            rows.append(
                (
                    name,
                    f"/{endpoint}",
                    item["statements"],
                    expected_text,
                    counts(item["sqlalchemy"]),
                    item["server_total"],
                    counts(item["server"]),
                )
            )
    columns = (
        "variant",
        "endpoint",
        "statements",
        "expected",
        "SQLAlchemy sent",
        "server ran (total)",
        "server ran",
    )
    return Section("Statements per request", [text], columns, "llrrlrl", rows)


def scale_sections(kind: str, result: dict[str, Any]) -> list[Section]:
    smallest = min(result["sizes"])
    text = (
        f"Tables of {', '.join(f'{s:,}' for s in result['sizes'])} live sessions in the store's"
        f" own row format (bulk-loaded, then analyzed), each with its own store. {result['rounds']}"
        f" rounds; in each, for each kind of call, {result['calls_per_measurement']:,} calls per"
        " table, the tables interleaved call by call (their order rotated at every step), so that"
        " whatever disturbs the machine hits every size alike; each call on a session drawn at"
        " random from its whole table, each call timed. Median, p90 and p99 over all calls;"
        f" *round medians* the range of the per-round medians; *vs smallest* the median over that"
        f" of the {smallest:,}-session table, *per round* the same ratio round by round; *log"
        " bytes per call* the write-ahead log the server wrote per call (PostgreSQL WAL, InnoDB"
        " redo), from a pass of its own after the timed rounds (server-wide, so background work"
        " such as autovacuum or InnoDB's purge shows as a few bytes): a read writes none, a due"
        " touch writes its row and index entries, plus, on PostgreSQL, a full image of each page"
        " it is the first to modify since the last checkpoint (`full_page_writes`)."
    )
    modes = [f"- **{mode}**: {SCALE_MODE_TEXT[mode]}" for mode in SCALE_MODES]
    rows = [
        [*row[1:], f"{result['log_bytes_per_call'][row[2].replace(',', '')][row[1]]:,.0f}"]
        for row in scale_rows(kind, result, SCALE_MODES)
    ]
    tables = []
    for size in result["sizes"]:
        t = result["tables"][str(size)]
        scans = f"{t['seq_scans']} / {t['index_scans']:,}" if "seq_scans" in t else "n/a"
        levels = "n/a" if t["pk_levels"] is None else t["pk_levels"]
        tables.append(
            (
                f"{size:,}",
                f"{t['insert_seconds']:.1f}",
                f"{t['rows_per_second']:,}",
                _mb(t["table_bytes"]),
                _mb(t["index_bytes"]),
                levels,
                scans,
            )
        )
    clear = result["clear_expired"]
    notes = [clear_expired_note(clear, " (10% of them tombstones)")] if clear else []
    return [
        Section(f"Scale on {kind}", [text], notes=modes),
        Section(None, (), (*SCALE_COLUMNS[1:], "log bytes per call"), "lrrrrrrrr", rows),
        Section(
            None,
            (),
            (
                "sessions",
                "bulk insert s",
                "rows/s",
                "table",
                "indexes",
                "primary key levels",
                "seq scans / index scans while measured",
            ),
            "rrrrrrr",
            tables,
            notes,
        ),
    ]


def render_markdown(report: dict[str, Any]) -> str:
    machine = report["machine"]
    packages = machine["packages"]
    server_text = "; ".join(
        f"{kind} {info['version']} ({', '.join(f'{k}={v}' for k, v in info['settings'].items())})"
        for kind, info in machine["servers"].items()
    )
    intro = [
        f"Python {machine['python']} on {machine['platform']}, {machine['cpu_count']} CPUs;"
        f" Flask {packages['flask']}, Flask-ServerSession {packages['flask-serversession']},"
        f" Flask-Session {packages['flask-session']}, Flask-SQLAlchemy"
        f" {packages['flask-sqlalchemy']}, SQLAlchemy {packages['sqlalchemy']}, psycopg"
        f" {packages['psycopg']}, PyMySQL {packages['pymysql']}.",
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
    sections = [
        skipped_section(report["skipped"]),
        *client_sections(report["testclient"], report["settings"]),
        Section("Goals", notes=goal_lines(report["goals"])),
        statements_section(report["statements"]),
        *(s for kind, result in report["scale"].items() for s in scale_sections(kind, result)),
    ]
    return render(f"SQL store benchmark, {report['date']}", intro, sections, report["command"])


# -- command line --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str]) -> Any:
    parser = arguments(__doc__, rounds=7, seconds=0.4, warmup=0.3)
    default_sizes = ",".join(str(s) for s in SCALE_SIZES)
    parser.add_argument("--sizes", default=default_sizes, help=f"table sizes ({default_sizes})")
    parser.add_argument("--scale-rounds", type=int, default=5, help="scale rounds (default 5)")
    parser.add_argument("--scale-calls", type=int, default=1000, help="calls per scale measurement")
    parser.add_argument("--expired", type=int, default=EXPIRED_SESSIONS, help="expired sessions")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {', '.join(PARTS)}")
    parser.add_argument("--no-mariadb", action="store_true", help="PostgreSQL only")
    parser.add_argument("--no-mariadb-scale", action="store_true", help="no scale part on MariaDB")
    parser.add_argument("--seed", type=int, default=20261125, help="random seed of the rows")
    parser.add_argument("--profile", metavar="VARIANT:ENDPOINT", help="print a cProfile instead")
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
    name, _, endpoint = (args.profile or "").partition(":")
    if args.profile and (name not in VARIANTS_BY_NAME or endpoint not in ENDPOINTS):
        parser.error(f"--profile wants VARIANT:ENDPOINT of {', '.join(VARIANTS_BY_NAME)}")
    return args


def profile(args: Any) -> str:
    name, _, endpoint = args.profile.partition(":")
    variant = VARIANTS_BY_NAME[name]
    with ExitStack() as stack:
        servers = Servers(stack, Path(tempfile.gettempdir()))
        start_servers(servers, variant.needs)
        with started([variant], servers, [endpoint]) as (running,):
            running.calibrate(args.seconds * 5, args.warmup)
            sections = [("SQLAlchemy and driver functions", "sqlalchemy|psycopg|pymysql")]
            return profile_requests(running, endpoint, sections, args.top)


def run_parts(args: Any, servers: Servers, skipped: dict[str, str]) -> dict[str, Any]:
    # The variants of the servers this run tried to start (not MariaDB's with --no-mariadb).
    tried = {**servers.started, **servers.missing}
    variants, missing = runnable([v for v in VARIANTS if set(v.needs) <= set(tried)], servers)
    skipped.update(missing)
    results: dict[str, Any] = {"batch": {}, "raw": {}, "testclient": None, "statements": {}}
    results["variants"] = {v.name: v.description for v in variants}
    if {"testclient", "statements"} & set(args.part_list):
        with started(variants, servers, ENDPOINTS) as runnings:
            if "testclient" in args.part_list:
                results.update(run_client(runnings, servers, args))
            for running in runnings if "statements" in args.part_list else []:
                if running.built.engine is not None:
                    results["statements"][running.name] = count_statements(running, servers)
    results["scale"] = {}
    kinds = [k for k in servers.started if "scale" in args.part_list]
    for kind in kinds:
        if kind == MARIADB and args.no_mariadb_scale:
            continue
        results["scale"][kind] = run_scale(servers.started[kind], args, servers.tmp)
    for kind, reason in servers.missing.items():
        if "scale" in args.part_list:
            skipped[f"scale-{kind}"] = reason
    return results


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    if args.profile:
        print(profile(args))
        return 0
    check_row_format()
    record = Record("sql", argv)
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="sql-bench-") as tmp, ExitStack() as stack:
        servers = Servers(stack, Path(tmp))
        start_servers(servers, [PG] if args.no_mariadb else [PG, MARIADB])
        results = run_parts(args, servers, skipped)
        found = {
            kind: {"version": s.version, "settings": s.settings}
            for kind, s in servers.started.items()
        }
    machine = machine_info(PACKAGES, servers=found, postgresql_arguments=PG_SETTINGS)
    machine["mariadb_arguments"] = list(MARIADB_SETTINGS)
    report = record.report(
        machine=machine,
        settings={
            "rounds": args.rounds,
            "seconds": args.seconds,
            "warmup": args.warmup,
            "quick": args.quick,
            "variants": results["variants"],
            "endpoints": list(ENDPOINTS),
            "requests_per_measurement": results["batch"],
            "scale_sizes": args.size_list,
            "scale_rounds": args.scale_rounds,
            "scale_calls": args.scale_calls,
            "scale_touch_interval": SCALE_TOUCH_INTERVAL,
            "expired_sessions": args.expired,
            "seed": args.seed,
        },
        skipped=skipped,
        testclient=results["testclient"],
        goals=[
            *(evaluate_goals(GOALS, results["raw"], skipped) if results["raw"] else []),
            *evaluate_scale_goals(results["scale"]),
        ],
        statements=results["statements"],
        scale=results["scale"],
    )
    partial = (
        args.size_list != list(SCALE_SIZES)
        or args.no_mariadb
        or args.no_mariadb_scale
        or args.part_list != list(PARTS)
    )
    return finish(report, render_markdown(report), args.quick, "-partial" if partial else "")


if __name__ == "__main__":
    run_main(main)
