"""The SQL store against real PostgreSQL 15 and MariaDB servers, started by the tests.

Besides the conformance suite on both: statements per request (counted with SQLAlchemy
events), 8 threads on one session, and data: text kept exactly, key names PostgreSQL cannot
store, corrupt rows, deadlocks retried. test_sql_operations.py has restarts, cleanup at scale
and schema creation; test_sql_setup.py the ways to build a store, and secrets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from sql_servers import SQLServer
from sql_stores import HOUR, fresh_key, fresh_store, is_postgresql, make_record, session_cookie

from flask_serversession import SessionDataCorrupt, SessionDataError, SessionStoreUnavailable
from flask_serversession.interface import ServerSessionInterface
from flask_serversession.serialization import dumps_value
from flask_serversession.stores import Patch, Store
from flask_serversession.stores.sql import SQLStore
from flask_serversession.testing import Clock, StoreConformance, make_app
from flask_serversession.testing.doubles import run_in_threads


class TestPostgreSQLStore(StoreConformance):
    @pytest.fixture
    def store(self, pg_server: SQLServer) -> Iterator[Store]:
        yield from fresh_store(pg_server)


class TestMariaDBStore(StoreConformance):
    """On SQLAlchemy's mariadb dialect; the other MariaDB tests use mysql+pymysql://."""

    @pytest.fixture
    def store(self, mariadb_server: SQLServer) -> Iterator[Store]:
        yield from fresh_store(mariadb_server, "mariadb+pymysql")


def _interface(app: Flask) -> ServerSessionInterface:
    interface = app.session_interface
    assert isinstance(interface, ServerSessionInterface)
    return interface


class Statements:
    """Counts the statements an engine sends (``before_cursor_execute``) and its pool
    checkouts (each one pre-ping round trip)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.statements: list[str] = []
        self.checkouts = 0
        sa.event.listen(engine, "before_cursor_execute", self._statement)
        sa.event.listen(engine, "checkout", self._checkout)

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(" ".join(statement.split())[:60])

    def _checkout(self, *args: Any) -> None:
        self.checkouts += 1

    def reset(self) -> None:
        self.statements.clear()
        self.checkouts = 0


# -- statements per request ---------------------------------------------------------------------


def test_statements_per_request(sql_store: SQLStore) -> None:
    """Untouched 0, read-only 1, assign-only 1, read+write 2; the touch, when due (once per
    touch interval), is one more statement after the read."""
    sql_store.create_schema()
    counter = Statements(sql_store.engine)
    app = make_app(sql_store)
    clock = Clock(time.time())
    _interface(app).clock = clock
    client = app.test_client()
    assert client.get("/set/user/alice").status_code == 200
    touch = 2  # a due touch: the statements of a read
    budget = [
        ("untouched", "/none", 0, 0),
        ("read-only", "/get/user", 10, 1),
        ("assign-only", "/set/x/1", 10, 1),
        ("read+write", "/rw/y/2", 10, 2),
        ("read-only, touch due", "/get/user", 120, touch),
        ("read+write, touch due", "/rw/z/3", 120, touch + 1),
        ("assign-only, touch due", "/set/x/2", 120, 1),
    ]
    report = []
    for label, path, advance, expected in budget:
        clock.advance(advance)
        counter.reset()
        response = client.get(path)
        assert response.status_code == 200
        assert len(counter.statements) == expected, (label, counter.statements)
        report.append(f"{label}: {len(counter.statements)} ({counter.checkouts} checkouts)")
    print(f"\n{sql_store.engine.dialect.name}: " + "; ".join(report))
    assert client.get("/dump").json == {"user": "'alice'", "x": "'2'", "y": "'2'", "z": "'3'"}


# -- concurrency ----------------------------------------------------------------------------------


def test_eight_threads_hammer_one_session(sql_store: SQLStore) -> None:
    """Eight clients with the same cookie assign (and read-then-assign) different keys at once:
    every write lands."""
    app = make_app(sql_store)
    client = app.test_client()
    client.get("/set/user/alice")
    cookie = session_cookie(client)
    threads, per_thread = 8, 15
    barrier = threading.Barrier(threads)
    statuses: list[int] = []

    def hammer(n: int) -> None:
        other = app.test_client()
        other.set_cookie("session", cookie)
        barrier.wait(timeout=10)
        for i in range(per_thread):
            path = f"/set/t{n}-{i}/{i}" if i % 2 else f"/rw/t{n}-{i}/{i}"
            statuses.append(other.get(path).status_code)

    assert not run_in_threads(partial(hammer, n) for n in range(threads))
    assert statuses == [200] * threads * per_thread
    values = client.get("/dump").json
    assert values is not None and len(values) == 1 + threads * per_thread
    assert values["t7-14"] == "'14'"


# -- data -----------------------------------------------------------------------------------------


def test_patch_keeps_text_exactly(sql_store: SQLStore) -> None:
    now = time.time()
    key = fresh_key()
    assert sql_store.create(key, make_record(now, {"a": "1", "gone": "2"}))
    values = {
        "quotes": dumps_value("q", 'say "hi" \\ and \n newline'),
        "null": "null",
        "unicode": dumps_value("u", "żółw 🐢 \u2028"),
        "weird name \" ' . $ {} \\ ż": "1",
        "$.path[0]": '"x"',
        "big": dumps_value("big", "y" * 100_000),
    }
    assert sql_store.patch(key, Patch(values, ["gone", "never"], now, now + HOUR))
    loaded = sql_store.load(key)
    assert loaded is not None and loaded.values == {"a": "1", **values}
    assert sql_store.patch(key, Patch({"null": '"now a string"'}, ["null"], now, now + HOUR))
    loaded = sql_store.load(key)
    assert loaded is not None and loaded.values["null"] == '"now a string"'  # set wins


def test_postgresql_names_the_key_it_cannot_store(pg_server: SQLServer) -> None:
    for store in fresh_store(pg_server):
        now = time.time()
        key = fresh_key()
        for name in ("nul\x00", "lone \ud800 surrogate"):
            with pytest.raises(SessionDataError, match="cannot store this key name"):
                store.create(key, make_record(now, {name: "1"}))
        assert store.create(key, make_record(now, {"a": "1"}))
        with pytest.raises(SessionDataError) as info:
            store.patch(key, Patch({"ok": "1", "bad\x00": "2"}, (), now, now + HOUR))
        assert info.value.key == "bad\x00"
        assert store.patch(key, Patch({"b": "2"}, ["a", "nul\x00", "\udc00"], now, now + HOUR))
        loaded = store.load(key)
        assert loaded is not None and loaded.values == {"b": "2"}


def test_corrupt_data_is_reported(sql_store: SQLStore) -> None:
    now = time.time()
    key, other = fresh_key(), fresh_key()
    sql_store.create(key, make_record(now, {"a": "1"}))
    sql_store.create(other, make_record(now, {"a": "1"}))
    bad = "'{\"a\": 1}'" + ("::jsonb" if is_postgresql(sql_store) else "")
    table = sql_store.engine.dialect.identifier_preparer.format_table(sql_store.table)
    key_column = '"key"' if is_postgresql(sql_store) else "`key`"
    with sql_store.engine.begin() as conn:
        conn.execute(
            sa.text(f"UPDATE {table} SET data = {bad} WHERE {key_column} = :k"), {"k": key}
        )
        if not is_postgresql(sql_store):
            conn.execute(
                sa.text(f"UPDATE {table} SET data = 'not json' WHERE {key_column} = :k"),
                {"k": other},
            )
    with pytest.raises(SessionDataCorrupt):
        sql_store.load(key)
    if not is_postgresql(sql_store):
        with pytest.raises(SessionDataCorrupt):
            sql_store.load(other)


def _inject_deadlocks(store: SQLStore) -> sa.TextClause:
    """A trigger that fails UPDATEs with a deadlock error while a counter is under a limit;
    returns the statement that sets the limit (``:n`` more failures)."""
    t = store.table.name
    statements: list[str]
    if is_postgresql(store):
        statements = [
            f"CREATE SEQUENCE {t}_fails",
            f"CREATE TABLE {t}_limit (n integer)",
            f"INSERT INTO {t}_limit VALUES (0)",
            f"CREATE FUNCTION {t}_fail() RETURNS trigger LANGUAGE plpgsql AS $$"
            f" BEGIN IF nextval('{t}_fails') <= (SELECT n FROM {t}_limit) THEN"
            f" RAISE EXCEPTION 'injected deadlock' USING ERRCODE = '40P01'; END IF;"
            f" RETURN NEW; END $$",
            f"CREATE TRIGGER {t}_fail BEFORE UPDATE ON {t} FOR EACH ROW"
            f" EXECUTE FUNCTION {t}_fail()",
        ]
        more = f"UPDATE {t}_limit SET n = nextval('{t}_fails') + :n"
    else:
        statements = [
            f"CREATE SEQUENCE {t}_fails",
            f"CREATE TABLE {t}_limit (n integer)",
            f"INSERT INTO {t}_limit VALUES (0)",
            f"CREATE TRIGGER {t}_fail BEFORE UPDATE ON {t} FOR EACH ROW BEGIN"
            f" IF NEXTVAL({t}_fails) <= (SELECT n FROM {t}_limit) THEN"
            f" SIGNAL SQLSTATE '40001' SET MYSQL_ERRNO = 1213,"
            f" MESSAGE_TEXT = 'injected deadlock'; END IF; END",
        ]
        more = f"UPDATE {t}_limit SET n = NEXTVAL({t}_fails) + :n"
    with store.engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    return sa.text(more)


def test_deadlocks_are_retried_then_reported(sql_store: SQLStore) -> None:
    sql_store.create_schema()
    now = time.time()
    key = fresh_key()
    sql_store.create(key, make_record(now, {"a": "1"}))
    more_failures = _inject_deadlocks(sql_store)
    t = sql_store.table.name
    try:
        with sql_store.engine.begin() as conn:
            conn.execute(more_failures, {"n": 2})
        assert sql_store.patch(key, Patch({"b": "2"}, (), now, now + HOUR))  # third attempt
        with sql_store.engine.begin() as conn:
            conn.execute(more_failures, {"n": 3})
        with pytest.raises(SessionStoreUnavailable, match="injected deadlock"):
            sql_store.patch(key, Patch({"c": "3"}, (), now, now + HOUR))
        loaded = sql_store.load(key)
        assert loaded is not None and loaded.values == {"a": "1", "b": "2"}
    finally:
        with sql_store.engine.begin() as conn:
            conn.execute(sa.text(f"DROP TABLE {t}_limit"))
            conn.execute(sa.text(f"DROP SEQUENCE {t}_fails"))
