"""The stores of the scale part (scale_bench.py), each bulk-loaded with many sessions in the
store's own format: SQLite (one file per size, one ``executemany``), Redis (one database per
size, pipelined HSET + PEXPIRE), PostgreSQL (COPY) and MariaDB (LOAD DATA), one table per size.
Also what each one occupies, and, on the SQL servers, the log bytes and scans a call causes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from harness import HOST, BenchmarkError, create_app
from scaling import SCALE_TOUCH_INTERVAL, ScaleTarget, Stored, user_of
from sql_server import PG, SQLServer

from flask_serversession import ServerSession
from flask_serversession.serialization import dumps_value
from flask_serversession.stores import Store
from flask_serversession.stores.sql import SQLStore

REDIS_BATCH = 10_000
REDIS_PREFIX = "scale:"
#: The columns of a session row, in the order the bulk loads write them.
COLUMNS: tuple[str, ...] = ("key", "data", "created", "last_seen", "expires", "absolute_expires")
COLUMNS += ("user_id", "ended", "version")


def _app_on(url: str) -> tuple[FlaskClient, Store]:
    def configure(app: Flask) -> None:
        # No cleanup behind the measurement's back: clear_expired is measured on its own.
        ServerSession(app, store=url, touch_interval=SCALE_TOUCH_INTERVAL, cleanup_interval=0)

    app = create_app(configure)
    store = ServerSession.store_of(app)
    if isinstance(store, SQLStore):
        store.create_schema()  # the table and its indexes, as the store creates them
    return app.test_client(use_cookies=False), store


def _data(s: Stored) -> str:
    return json.dumps(s.values)


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


# -- SQLite --------------------------------------------------------------------------------------

SQLITE_INSERT = (
    "INSERT INTO serversession (key, data, created, last_seen, expires, absolute_expires,"
    " user_id, ended, info) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, NULL)"
)


def _sqlite_insert(path: Path, sessions: Iterable[Stored]) -> None:
    """The sessions (not bound to a user ID: no index) in one transaction, sorted by key (the
    table is WITHOUT ROWID: rows in key order fill its pages in one pass)."""
    rows = sorted(
        (s.key, _data(s), s.created, s.last_seen, s.expires, s.absolute_expires, s.ended)
        for s in sessions
    )
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("BEGIN")
        conn.executemany(SQLITE_INSERT, rows)
        conn.execute("COMMIT")
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _sqlite_count(path: Path) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM serversession").fetchone()[0])


def sqlite_target(size: int, tmp: Path) -> ScaleTarget:
    path = tmp / f"scale-{size}.sqlite3"
    client, store = _app_on(f"sqlite:///{path}")  # creates the file, its table and indexes
    return ScaleTarget(
        "sqlite",
        size,
        f"sqlite-{size}",
        store,
        client,
        lambda sessions: _sqlite_insert(path, sessions),
        lambda: _sqlite_count(path),
        lambda: {"file_bytes": path.stat().st_size},
    )


# -- Redis ---------------------------------------------------------------------------------------


def _redis_insert(client: Any, sessions: Iterable[Stored]) -> None:
    """The sessions as the store writes them (one hash each, TTL at the idle expiry), pipelined:
    HSET + PEXPIRE, ``REDIS_BATCH`` sessions per round trip."""
    now_ms = round(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for n, s in enumerate(sessions, 1):
        expires_ms = round(min(s.expires, s.absolute_expires) * 1000)
        times = (s.created, s.last_seen, s.expires, s.absolute_expires)
        mapping: dict[str, int | str] = {
            k: round(t * 1000) for k, t in zip("csea", times, strict=True)
        }
        mapping.update({":" + name: text for name, text in s.values.items()})
        key = f"{REDIS_PREFIX}{{{s.key}}}"
        pipe.hset(key, mapping=mapping)
        pipe.pexpire(key, max(1, expires_ms - now_ms))
        if n % REDIS_BATCH == 0:
            pipe.execute()
    pipe.execute()


def redis_target(size: int, port: int, db: int) -> ScaleTarget:
    import redis

    client, store = _app_on(f"redis://{HOST}:{port}/{db}?prefix={REDIS_PREFIX}")
    admin = redis.Redis(host=HOST, port=port, db=db)
    # The server's memory before this database is filled (the databases fill one by one).
    before = int(admin.info("memory")["used_memory"])

    def footprint() -> dict[str, Any]:
        added = int(admin.info("memory")["used_memory"]) - before
        admin.close()
        return {"used_memory_added_bytes": added, "bytes_per_session": round(added / size)}

    count = lambda: int(admin.dbsize())  # noqa: E731
    insert = lambda sessions: _redis_insert(admin, sessions)  # noqa: E731
    return ScaleTarget("redis", size, f"redis-{size}", store, client, insert, count, footprint)


# -- PostgreSQL and MariaDB ----------------------------------------------------------------------


def _row(s: Stored) -> tuple[Any, ...]:
    return (s.key, _data(s), s.created, s.last_seen, s.expires, s.absolute_expires) + (
        s.user_id,
        s.ended,
        s.version,
    )


def _copy_pg(server: SQLServer, table: str, rows: Iterable[Stored]) -> None:
    from psycopg import sql

    conn = server.connect()
    try:
        columns = sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table), columns)
        with conn.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(_row(row))
    finally:
        conn.close()


def _tsv(s: Stored) -> str:
    user_id = "NULL" if s.user_id is None else s.user_id
    return (
        f"{s.key}\t{_data(s)}\t{s.created!r}\t{s.last_seen!r}\t{s.expires!r}"
        f"\t{s.absolute_expires!r}\t{user_id}\t{int(s.ended)}\t{s.version}\n"
    )


def _load_data_mariadb(server: SQLServer, table: str, rows: Iterable[Stored], tmp: Path) -> None:
    # A tab-separated file, sorted by key: InnoDB keeps rows in primary-key order anyway, and a
    # sorted load fills its pages in one pass. No escape character: JSON has no tab nor newline.
    path = tmp / f"{table}.tsv"
    path.write_text("".join(sorted(map(_tsv, rows))), encoding="utf-8")
    columns = ", ".join(f"`{c}`" for c in COLUMNS)
    try:
        server.query(
            f"LOAD DATA LOCAL INFILE %s INTO TABLE `{table}` CHARACTER SET utf8mb4"
            f" FIELDS TERMINATED BY '\\t' ESCAPED BY '' LINES TERMINATED BY '\\n' ({columns})",
            (str(path),),
        )
    finally:
        path.unlink()


def _sql_insert(server: SQLServer, table: str, rows: Iterable[Stored], tmp: Path) -> None:
    """Rows into ``table`` (COPY on PostgreSQL, LOAD DATA LOCAL INFILE on MariaDB), analyzed."""
    if server.kind == PG:
        _copy_pg(server, table, rows)
        server.query(f'VACUUM (ANALYZE) "{table}"')
    else:
        _load_data_mariadb(server, table, rows, tmp)
        server.query(f"ANALYZE TABLE `{table}`")


def table_sizes(server: SQLServer, table: str) -> dict[str, Any]:
    if server.kind != PG:
        data, index = server.query(
            "SELECT data_length, index_length FROM information_schema.tables"
            " WHERE table_schema = %s AND table_name = %s",
            (server.database, table),
        )[0]
        return {"table_bytes": int(data), "index_bytes": int(index)}
    heap, indexes = server.query("SELECT pg_table_size(%s), pg_indexes_size(%s)", (table, table))[0]
    return {"table_bytes": int(heap), "index_bytes": int(indexes)}


def sql_target(server: SQLServer, size: int, tmp: Path) -> ScaleTarget:
    table = f"scale_{size}"
    client, store = _app_on(f"{server.url}?table={table}")
    return ScaleTarget(
        server.kind,
        size,
        f"{server.kind}-{size}",
        store,
        client,
        lambda sessions: _sql_insert(server, table, sessions, tmp),
        lambda: server.count(table),
        lambda: table_sizes(server, table),
    )


def log_position(server: SQLServer) -> int:
    """Bytes of write-ahead log (PostgreSQL's WAL, InnoDB's redo log) written so far."""
    if server.kind == PG:
        return int(server.query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')")[0][0])
    return int(server.query("SHOW GLOBAL STATUS LIKE 'Innodb_lsn_current'")[0][1])


def pg_scans(server: SQLServer, sizes: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Sequential and index scans of each size's table so far (PostgreSQL only)."""
    if server.kind != PG:
        return {}
    time.sleep(0.3)  # backends that just closed flush their statistics as they exit
    rows = server.query(
        "SELECT relname, seq_scan, coalesce(idx_scan, 0) FROM pg_stat_user_tables"
        " WHERE relname = ANY(%s)",
        ([f"scale_{size}" for size in sizes],),
    )
    return {int(name.removeprefix("scale_")): (int(seq), int(idx)) for name, seq, idx in rows}
