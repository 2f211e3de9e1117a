"""PostgreSQL and MariaDB for the SQL benchmarks, and what they ran.

The servers are the tests' (tests/sql_servers.py: 127.0.0.1, free ports, temp dirs, stopped by PID)
with the benchmark's settings, and an admin connection of the benchmark's own. And the
statements a request sends, as SQLAlchemy sent them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from harness import COUNT_ENDPOINTS, HOST, Running, Servers, expected_calls, progress, request_text
from sqlalchemy import event

from flask_serversession import ServerSession
from flask_serversession.stores.sql import SQLStore

PG = "postgresql"
MARIADB = "mariadb"
OURS_PG = "ours-postgresql"
OURS_MARIADB = "ours-mariadb"

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


# -- the servers ---------------------------------------------------------------------------------


@dataclass
class SQLServer:
    """A running server, its database, and the benchmark's own (admin) way in."""

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
        conn = self.connect()
        try:
            cursor = conn.cursor()
            cursor.execute(statement, params)
            rows = cursor.fetchall() if cursor.description is not None else []
            cursor.close()
            return [tuple(row) for row in rows]
        finally:
            conn.close()

    def describe(self) -> str:
        """Its version and the settings that matter here, as the server reports them."""
        settings = ", ".join(f"{name}={value}" for name, value in self.settings.items())
        return f"{self.version} ({settings})"

    def count(self, table: str) -> int:
        quote = '"' if self.kind == PG else "`"
        return int(self.query(f"SELECT count(*) FROM {quote}{table}{quote}")[0][0])


@contextmanager
def postgresql_server() -> Iterator[SQLServer]:
    """PostgreSQL (tests/sql_servers.py) with the benchmark's settings."""
    from sql_servers import DATABASE, postgresql

    with postgresql(PG_SETTINGS) as server:
        found = SQLServer(PG, server.url, server.port, DATABASE)
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
        found = SQLServer(MARIADB, url, server.port, DATABASE)
        found.version = str(found.query("SELECT VERSION()")[0][0])
        for name in ("innodb_buffer_pool_size", "innodb_flush_log_at_trx_commit"):
            found.settings[name] = str(found.query(f"SELECT @@{name}")[0][0])
        yield found


def start_sql_servers(servers: Servers, kinds: Iterable[str]) -> None:
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


def count_statements(running: Running) -> dict[str, dict[str, Any]]:
    """For one request of each kind (after one not counted, so connections are made), the
    statements SQLAlchemy sent (``before_cursor_execute``) and the transactions it committed.
    tests/test_sql.py pins ours' counts; this shows them next to Flask-Session's."""
    engine = running.built.engine
    sent: list[str] = []

    def before_cursor_execute(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        sent.append(_kind(statement))

    def commit(conn: Any) -> None:
        sent.append("COMMIT")

    counted: dict[str, dict[str, Any]] = {}
    for endpoint in COUNT_ENDPOINTS:
        request_text(running.client, "/" + endpoint)
        event.listen(engine, "before_cursor_execute", before_cursor_execute)
        event.listen(engine, "commit", commit)
        try:
            sent.clear()
            request_text(running.client, "/" + endpoint)
        finally:
            event.remove(engine, "commit", commit)
            event.remove(engine, "before_cursor_execute", before_cursor_execute)
        counted[endpoint] = {
            "calls": sum(kind != "COMMIT" for kind in sent),
            "sent": dict(Counter(sent)),
            "in_scripts": {},
            "expected": expected_calls(running.name, endpoint),
        }
    return counted
