"""PostgreSQL and MariaDB for the SQL benchmarks, and what they ran.

The servers are the tests' (tests/sql_servers.py: 127.0.0.1, free ports, temp dirs, stopped by PID)
with the benchmark's settings, and an admin connection of the benchmark's own. The statements a
request sends are counted twice: as SQLAlchemy sent them and as the server ran them.
"""

from __future__ import annotations

import functools
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask
from harness import HOST, BenchmarkError, Running, Servers, progress, request_text
from report import Section, counts, expected, rows_of
from sqlalchemy import event

from flask_serversession import ServerSession
from flask_serversession.stores.sql import SQLStore

PG = "postgresql"
MARIADB = "mariadb"
OURS_PG = "ours-postgresql"
OURS_MARIADB = "ours-mariadb"
#: Request kinds whose statements are counted; ``/rw`` reads, then writes.
COUNT_ENDPOINTS = ("none", "get", "set", "rw")
#: Statements per request kind that issue 4 requires of ours (the touch is not due here).
EXPECTED_STATEMENTS = {
    OURS_PG: {"none": 0, "get": 1, "set": 1, "rw": 2},
    OURS_MARIADB: {"none": 0, "get": 1, "set": 1, "rw": 2},
}


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


def sql_store_of(app: Flask) -> SQLStore:
    store = ServerSession.store_of(app)
    assert isinstance(store, SQLStore)
    return store


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
    rows = rows_of(statements, "variant", "endpoint")
    return Section("Statements per request", [text], STATEMENT_COLUMNS, "llrrlrl", rows)


STATEMENT_COLUMNS = (
    ("variant", "{variant}"),
    ("endpoint", "/{endpoint}"),
    ("statements", "{statements}"),
    ("expected", lambda r: expected(r["statements"], r["expected"])),
    ("SQLAlchemy sent", lambda r: counts(r["sqlalchemy"])),
    ("server ran (total)", "{server_total}"),
    ("server ran", lambda r: counts(r["server"])),
)
