"""PostgreSQL: the session data column is compressed with lz4, not the default pglz, so a patch to
a large session (whose JSONB document PostgreSQL rewrites whole) costs about what a small one
does. New tables get it, older ones at start-up, and a user who may not alter the table keeps a
working store (and a warning)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sql_servers import SQLServer
from sql_stores import role_that_may_not_alter

from flask_serversession.ids import new_session_id, store_key
from flask_serversession.stores import Patch, Record
from flask_serversession.stores.sql import SQLStore

HOUR = 3600.0


@pytest.fixture
def table(pg_server: SQLServer) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    store = SQLStore.from_url(f"{pg_server.url}?table={name}", create_table=False)
    store.table.drop(store.engine, checkfirst=True)
    store.close()


def _compression(pg_server: SQLServer, table: str) -> tuple[str, str]:
    """The data column's compression (``""``: the server's default, pglz) and, of the one
    stored value, the method it was compressed with (``""`` when none was)."""
    engine = sa.create_engine(pg_server.url)
    try:
        with engine.connect() as conn:
            column = conn.execute(
                sa.text(
                    "SELECT attcompression FROM pg_attribute"
                    " WHERE attrelid = CAST(:t AS regclass) AND attname = 'data'"
                ),
                {"t": table},
            ).scalar_one()
            stored = conn.execute(
                sa.text(f"SELECT max(pg_column_compression(data)) FROM {table}")
            ).scalar()
    finally:
        engine.dispose()
    return str(column), str(stored or "")


def _big_session(store: SQLStore) -> str:
    """A session of about 10 KB (out of line and compressed), patched once."""
    now = time.time()
    key = store_key(new_session_id())
    values = {f"v{i}": json.dumps(f"{i:04d}" + "abc" * 110) for i in range(29)}
    assert store.create(key, Record(values, now, now, now + HOUR, now + 9 * HOUR))
    assert store.patch(key, Patch({"n": "1"}, (), now + 1, now + HOUR))
    return key


def _works_on_pglz(store: SQLStore, pg_server: SQLServer, table: str) -> None:
    """The store writes and reads a large session on a table left with pglz."""
    key = _big_session(store)
    record = store.load(key)
    assert record is not None and record.values["n"] == "1"
    assert _compression(pg_server, table) == ("", "pglz")


def test_a_new_table_compresses_with_lz4(pg_server: SQLServer, table: str) -> None:
    store = SQLStore.from_url(f"{pg_server.url}?table={table}")
    try:
        key = _big_session(store)
        assert _compression(pg_server, table) == ("l", "lz4")
        record = store.load(key)
        assert record is not None and len(record.values) == 30
    finally:
        store.close()


def _made_before(url: str) -> None:
    """The table as versions before lz4 left it: the server's default compression."""
    old = SQLStore.from_url(url)
    old.create_schema()
    with old.engine.begin() as conn:
        conn.execute(
            sa.text(f"ALTER TABLE {old.table.name} ALTER COLUMN data SET COMPRESSION DEFAULT")
        )
    old.close()


def test_a_table_made_before_gets_lz4_at_start_up(pg_server: SQLServer, table: str) -> None:
    url = f"{pg_server.url}?table={table}"
    _made_before(url)
    old = SQLStore.from_url(url, create_table=False)
    key = _big_session(old)
    old.close()
    assert _compression(pg_server, table) == ("", "pglz")

    store = SQLStore.from_url(url)
    try:
        store.create_schema()
        record = store.load(key)  # written before: still read as it is
        assert record is not None and len(record.values) == 30
        now = time.time()
        assert store.patch(key, Patch({"n": "2"}, (), now, now + HOUR))  # rewritten: lz4
        assert _compression(pg_server, table) == ("l", "lz4")
    finally:
        store.close()


def test_a_user_that_may_not_alter_the_table(pg_server: SQLServer, table: str, caplog: Any) -> None:
    _made_before(f"{pg_server.url}?table={table}")
    with role_that_may_not_alter(pg_server, table) as role_url:
        store = SQLStore.from_url(role_url)
        try:
            with caplog.at_level("WARNING", logger="flask_serversession"):
                store.create_schema()
            assert "could not set lz4 compression" in caplog.text
            assert "must be owner" in caplog.text
            _works_on_pglz(store, pg_server, table)
        finally:
            store.close()


def test_a_managed_table_is_left_alone(pg_server: SQLServer, table: str) -> None:
    url = f"{pg_server.url}?table={table}"
    _made_before(url)
    store = SQLStore.from_url(url, create_table=False)
    try:
        _big_session(store)
        assert _compression(pg_server, table) == ("", "pglz")
    finally:
        store.close()


def test_a_server_before_14_is_left_alone(pg_server: SQLServer, table: str, caplog: Any) -> None:
    """PostgreSQL 13 has no per-column compression: the store sends no ``ALTER`` (it would
    fail) and says nothing; the table keeps the server's default."""
    store = SQLStore.from_url(f"{pg_server.url}?table={table}")
    sent: list[str] = []
    sa.event.listen(store.engine, "before_cursor_execute", lambda *a: sent.append(a[2]))
    try:
        with store.engine.connect():  # the dialect learns the server's version on connecting
            pass
        store.engine.dialect.server_version_info = (13, 11)
        with caplog.at_level("WARNING", logger="flask_serversession"):
            store.create_schema()
            _big_session(store)
        assert not [sql for sql in sent if "COMPRESSION" in sql.upper()]
        assert caplog.text == ""
        assert _compression(pg_server, table) == ("", "pglz")
    finally:
        store.close()


def test_a_server_that_refuses_the_method(pg_server: SQLServer, table: str, caplog: Any) -> None:
    """A server built without lz4 answers the ``ALTER`` with an error (``compression method lz4
    not supported``). This one has lz4, so the statement is sent with a method no server
    knows, for the same kind of refusal from the real server: the store warns, keeps the
    default compression and works."""
    store = SQLStore.from_url(f"{pg_server.url}?table={table}")

    def unknown_method(conn: Any, cursor: Any, sql: str, *rest: Any) -> tuple[str, Any]:
        return sql.replace("SET COMPRESSION lz4", "SET COMPRESSION lz5"), rest[0]

    sa.event.listen(store.engine, "before_cursor_execute", unknown_method, retval=True)
    try:
        with caplog.at_level("WARNING", logger="flask_serversession"):
            store.create_schema()
        assert "could not set lz4 compression" in caplog.text
        assert "lz5" in caplog.text  # the server's own words
        _works_on_pglz(store, pg_server, table)
    finally:
        store.close()
