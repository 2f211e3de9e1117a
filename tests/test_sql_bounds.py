"""The SQL store's kept bounds of each session's value count and size (``stores/sql/bounds.py``)
on real PostgreSQL and MariaDB: exact limits on a table made before the bounds existed, while
an older version writes, on a table the application manages without them, and when several
stores add the columns at once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sql_servers import SQLServer
from sql_stores import drop_store, role_that_may_not_alter

from flask_serversession.ids import new_session_id, store_key
from flask_serversession.stores import Patch, Record
from flask_serversession.stores.sql import SQLStore

HOUR = 3600.0
BOUNDS = ("keys_at_most", "bytes_at_most", "bounds_version")


@pytest.fixture(params=["pg_server", "mariadb_server"], ids=["postgresql", "mariadb"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a table of its own on each server, dropped afterwards."""
    server: SQLServer = request.getfixturevalue(request.param)
    url = f"{server.url}?table=t_{uuid.uuid4().hex[:16]}"
    yield url
    store = SQLStore.from_url(url, create_table=False)
    store.table.drop(store.engine, checkfirst=True)
    store.close()


def _key() -> str:
    return store_key(new_session_id())


def _record(values: dict[str, str]) -> Record:
    now = time.time()
    return Record(values, now, now, now + HOUR, now + 24 * HOUR)


def _limited(
    values: dict[str, str], max_keys: int | None = 1000, max_size: int | None = 1 << 20
) -> Patch:
    now = time.time()
    return Patch(values, (), now, now + HOUR, max_size=max_size, max_keys=max_keys)


def _columns(store: SQLStore) -> set[str]:
    columns = sa.inspect(store.engine).get_columns(store.table.name)
    return {column["name"] for column in columns}


def _bounds(store: SQLStore, key: str) -> tuple[Any, ...]:
    c = store.table.c
    query = sa.select(c.keys_at_most, c.bytes_at_most, c.bounds_version == c.version)
    with store.engine.connect() as conn:
        return tuple(conn.execute(query.where(c.key == key)).one())


def _assert_counted(store: SQLStore, key: str, keys: int, size: int) -> None:
    """The bounds are trusted and were just counted: the exact number of values, and their
    size (on MySQL a bound of it from the lengths of the texts, which costs nothing)."""
    kept_keys, kept_bytes, trusted = _bounds(store, key)
    assert trusted and kept_keys == keys
    if store.engine.dialect.name == "postgresql":
        assert kept_bytes == size
    else:
        assert size <= kept_bytes <= len(json.dumps(_values(store, key))) + 64


def _values(store: SQLStore, key: str) -> dict[str, str]:
    record = store.load(key)
    assert record is not None
    return record.values


def _made_before_the_bounds(url: str) -> None:
    """The table as versions before the bounds made it."""
    store = SQLStore.from_url(url)
    store.create_schema()
    table = store.engine.dialect.identifier_preparer.format_table(store.table)
    with store.engine.begin() as conn:
        for column in BOUNDS:
            conn.execute(sa.text(f"ALTER TABLE {table} DROP COLUMN {column}"))
    store.close()


def _older_version(url: str) -> SQLStore:
    """A store that writes as versions before the bounds did: it never touches them."""
    store = SQLStore.from_url(url, create_table=False)
    store._bounds = False
    return store


def test_bounds_grow_with_what_is_set(url: str) -> None:
    store = SQLStore.from_url(url)
    key = _key()
    assert store.create(key, _record({"a": "1", "b": "2"}))
    assert _bounds(store, key) == (2, 4, True)
    assert store.patch(key, _limited({"a": "33"}))
    assert _bounds(store, key) == (3, 7, True)  # upper bounds: "a" was there already
    assert store.patch(key, _limited({"a": "4"}, max_keys=2, max_size=4))
    _assert_counted(store, key, 2, 4)
    assert not store.patch(key, _limited({"c": "5"}, max_keys=2))
    assert not store.patch(key, _limited({"a": "55"}, max_size=4))
    assert _values(store, key) == {"a": "4", "b": "2"}
    store.close()


def test_a_table_made_before_the_bounds(url: str) -> None:
    """A store that manages its table adds the columns, with no manual step; the sessions
    already there are counted by their next limited patch."""
    _made_before_the_bounds(url)
    old = _older_version(url)
    key = _key()
    assert old.create(key, _record({"a": "1", "b": "2", "c": "3"}))
    assert old.patch(key, _limited({"c": "4"}, max_keys=3))
    old.close()
    store = SQLStore.from_url(url)
    store.create_schema()
    assert set(BOUNDS) <= _columns(store)
    assert _values(store, key) == {"a": "1", "b": "2", "c": "4"}
    assert not store.patch(key, _limited({"d": "5"}, max_keys=3))
    assert not store.patch(key, _limited({"a": "12345"}, max_size=8))
    assert store.patch(key, _limited({"a": "5"}, max_keys=3, max_size=8))
    _assert_counted(store, key, 3, 6)
    store.close()


def _written_by_an_older_version(url: str) -> tuple[SQLStore, str]:
    """A store on ``url`` and a session of {a, b, c} whose last two values a process of an
    older version added (a rolling restart), leaving the bounds behind."""
    store = SQLStore.from_url(url)
    key = _key()
    assert store.create(key, _record({"a": "1"}))
    old = _older_version(url)
    assert old.patch(key, Patch({"b": "2", "c": "3"}, (), time.time(), time.time() + HOUR))
    old.close()
    return store, key


def test_an_older_version_writing_meanwhile(url: str) -> None:
    """Values an older version adds (a rolling restart) leave the bounds behind: they are no
    longer trusted, and the next limited patch counts."""
    store, key = _written_by_an_older_version(url)
    assert not store.patch(key, _limited({"d": "4"}, max_keys=3))
    assert not store.patch(key, _limited({"d": "4"}, max_size=7))
    assert store.patch(key, _limited({"c": "4"}, max_keys=3, max_size=6))
    assert _values(store, key) == {"a": "1", "b": "2", "c": "4"}
    _assert_counted(store, key, 3, 6)
    store.close()


def test_a_table_managed_without_the_bounds(url: str) -> None:
    """With ``create_table=False`` the store never changes the table: one without the columns
    (an application's migration not run yet) still has exact limits."""
    _made_before_the_bounds(url)
    store = SQLStore.from_url(url, create_table=False)
    key = _key()
    assert store.create(key, _record({"a": "1", "b": "2"}))
    assert store.patch(key, _limited({"c": "3"}, max_keys=3))
    assert not store.patch(key, _limited({"d": "4"}, max_keys=3))
    assert not store.patch(key, _limited({"a": "1234"}, max_size=8))
    assert _values(store, key) == {"a": "1", "b": "2", "c": "3"}
    assert not set(BOUNDS) & _columns(store)
    store.close()


def test_stores_adding_the_columns_at_once(url: str) -> None:
    _made_before_the_bounds(url)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start() -> None:
        store = SQLStore.from_url(url)
        try:
            barrier.wait(timeout=60)
            store.create_schema()
            assert store.create(_key(), _record({"a": "1"}))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    store = SQLStore.from_url(url, create_table=False)
    assert set(BOUNDS) <= _columns(store)
    store.close()


def test_a_user_that_may_not_add_the_columns(pg_server: SQLServer, caplog: Any) -> None:
    """A database user without the right to alter a table made before the bounds keeps exact
    limits, checked the slower way, and the log says why."""
    table = f"t_{uuid.uuid4().hex[:16]}"
    url = f"{pg_server.url}?table={table}"
    _made_before_the_bounds(url)
    try:
        with role_that_may_not_alter(pg_server, table) as role_url:
            store = SQLStore.from_url(role_url)
            try:
                with caplog.at_level("WARNING", logger="flask_serversession"):
                    store.create_schema()
                assert "could not add the columns keys_at_most" in caplog.text
                key = _key()
                assert store.create(key, _record({"a": "1", "b": "2"}))
                assert not store.patch(key, _limited({"c": "3"}, max_keys=2))
                assert store.patch(key, _limited({"a": "3"}, max_keys=2, max_size=4))
                assert not store.patch(key, _limited({"a": "33"}, max_size=4))
                assert not set(BOUNDS) & _columns(store)
            finally:
                store.close()
    finally:
        drop_store(SQLStore.from_url(url, create_table=False))


@pytest.mark.parametrize(
    "limits",
    [{"max_keys": 3, "max_size": None}, {"max_keys": None, "max_size": 6}],
    ids=["max_keys", "max_size"],
)
def test_one_limit_makes_the_bounds_trusted_again(url: str, limits: dict[str, int | None]) -> None:
    """With only one of the limits configured, a limited patch on a row whose bounds an older
    version left behind counts both, so the next patches need not count again."""
    store, key = _written_by_an_older_version(url)
    assert not _bounds(store, key)[2]
    assert store.patch(key, _limited({"c": "4"}, **limits))
    assert _values(store, key) == {"a": "1", "b": "2", "c": "4"}
    _assert_counted(store, key, 3, 6)
    store.close()
