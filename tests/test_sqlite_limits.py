"""The SQLite store's kept bound of each session's number of values (``keys_at_most``): exact
limits however the bound was left, by this version, by a table made before it, or by a process
of an older version writing meanwhile."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from flask_serversession.ids import new_session_id, store_key
from flask_serversession.stores import Patch, Record
from flask_serversession.stores.sqlite import SQLiteStore

HOUR = 3600.0

#: The table as versions before ``keys_at_most`` made it.
_OLD_SCHEMA = (
    "CREATE TABLE serversession ("
    " key TEXT PRIMARY KEY NOT NULL, data TEXT NOT NULL, created REAL NOT NULL,"
    " last_seen REAL NOT NULL, expires REAL NOT NULL, absolute_expires REAL NOT NULL,"
    " user_id TEXT, ended INTEGER NOT NULL DEFAULT 0, info TEXT) WITHOUT ROWID",
    "CREATE INDEX serversession_expires ON serversession (expires)",
    "CREATE INDEX serversession_user_id ON serversession (user_id) WHERE user_id IS NOT NULL",
)
#: A patch as versions before ``keys_at_most`` wrote it: the data, and nothing of the bound.
_OLD_PATCH = (
    "UPDATE serversession SET last_seen = ?, expires = MIN(?, absolute_expires),"
    " data = json_patch(data, ?) WHERE key = ? AND expires > ? AND absolute_expires > ?"
    " AND NOT ended"
)


def _record(values: dict[str, str], now: float) -> Record:
    return Record(values, now, now, now + HOUR, now + 24 * HOUR)


def _limited(values: dict[str, str], max_keys: int, delete: tuple[str, ...] = ()) -> Patch:
    now = time.time()
    return Patch(values, delete, now, now + HOUR, max_size=1 << 20, max_keys=max_keys)


def _bound(path: Path, key: str) -> int | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT keys_at_most FROM serversession WHERE key = ?", (key,))
        bound: int | None = row.fetchone()[0]
        return bound


def _values(store: SQLiteStore, key: str) -> dict[str, str]:
    record = store.load(key)
    assert record is not None
    return record.values


def test_rewriting_values_at_the_limit(tmp_path: Path) -> None:
    """The bound grows with every value set, replaced or not; once it would pass the limit the
    values are counted, so a session at its limit can still change what it holds."""
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    key = store_key(new_session_id())
    assert store.create(key, _record({"a": "1", "b": "2"}, time.time()))
    assert _bound(path, key) == 2
    assert store.patch(key, _limited({"a": "3"}, max_keys=1000))
    assert _bound(path, key) == 3  # an upper bound: "a" was there already
    assert store.patch(key, _limited({"c": "4"}, max_keys=3))
    for n in range(10):
        assert store.patch(key, _limited({"a": str(n)}, max_keys=3))
    assert not store.patch(key, _limited({"d": "5"}, max_keys=3))
    assert store.patch(key, _limited({"d": "5"}, max_keys=3, delete=("b",)))
    assert _values(store, key) == {"a": "9", "c": "4", "d": "5"}
    assert not store.patch(key, _limited({"e": "6"}, max_keys=3))
    store.close()


def test_a_table_made_before_the_bound(tmp_path: Path) -> None:
    """A file whose table has no ``keys_at_most`` gets it on start-up, with no manual step;
    its sessions are counted once, by their next limited patch."""
    path = tmp_path / "old.db"
    now = time.time()
    key = store_key(new_session_id())
    with sqlite3.connect(path) as conn:
        for statement in _OLD_SCHEMA:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO serversession (key, data, created, last_seen, expires,"
            " absolute_expires, user_id, ended, info) VALUES (?, ?, ?, ?, ?, ?, NULL, 0, NULL)",
            (key, '{"a": "1", "b": "2", "c": "3"}', now, now, now + HOUR, now + 24 * HOUR),
        )
    conn.close()
    store = SQLiteStore(path)
    assert _values(store, key) == {"a": "1", "b": "2", "c": "3"}
    assert _bound(path, key) is None
    assert not store.patch(key, _limited({"d": "4"}, max_keys=3))
    assert store.patch(key, _limited({"a": "5"}, max_keys=3))
    assert _bound(path, key) == 3
    assert _values(store, key) == {"a": "5", "b": "2", "c": "3"}
    store.close()
    assert SQLiteStore(path).load(key) is not None  # a second start-up finds the column


def _written_by_an_older_version(path: Path) -> tuple[SQLiteStore, str, float]:
    """A store on ``path`` and a session of {a, b, c} whose last two values a process of an
    older version added (a rolling restart), which forgot the kept count."""
    store = SQLiteStore(path)
    key = store_key(new_session_id())
    now = time.time()
    assert store.create(key, _record({"a": "1"}, now))
    with sqlite3.connect(path) as conn:
        conn.execute(_OLD_PATCH, (now, now + HOUR, '{"b": "2", "c": "3"}', key, now, now))
    conn.close()
    assert _bound(path, key) is None
    return store, key, now


def test_an_older_version_writing_meanwhile(tmp_path: Path) -> None:
    """A process of an older version (a rolling restart) adds values without the bound: the
    bound is forgotten, and the next limited patch counts."""
    path = tmp_path / "s.db"
    store, key, now = _written_by_an_older_version(path)
    assert not store.patch(key, _limited({"d": "4"}, max_keys=3))
    assert store.patch(key, _limited({"c": "4"}, max_keys=3))
    assert _values(store, key) == {"a": "1", "b": "2", "c": "4"}
    store.close()


def test_overlapping_writers_never_pass_max_keys(tmp_path: Path) -> None:
    """Threads adding values of their own at once: exactly as many land as the limit allows."""
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    key = store_key(new_session_id())
    assert store.create(key, _record({"a": "1"}, time.time()))
    landed: list[bool] = []
    start = threading.Barrier(4)

    def write(worker: int) -> None:
        start.wait()
        for i in range(10):
            landed.append(store.patch(key, _limited({f"w{worker}-{i}": "1"}, max_keys=25)))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert landed.count(True) == 24
    assert len(_values(store, key)) == 25
    store.close()


def test_stores_adding_the_column_at_once(tmp_path: Path) -> None:
    """Several stores (gunicorn workers) starting at once on a file made before the bound."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        for statement in _OLD_SCHEMA:
            conn.execute(statement)
    conn.close()
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        try:
            start.wait()
            store = SQLiteStore(path)
            assert store.create(store_key(new_session_id()), _record({"a": "1"}, time.time()))
            store.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT keys_at_most FROM serversession").fetchall()
    conn.close()
    assert rows == [(1,)] * 4


def test_one_limit_alone(tmp_path: Path) -> None:
    """Unlike the SQL store's two kept bounds, SQLite keeps only the count's (its size bound is
    the stored text's length): ``max_keys`` alone makes a forgotten bound known again, and
    ``max_size`` alone neither needs nor forgets it."""
    path = tmp_path / "s.db"
    store, key, now = _written_by_an_older_version(path)
    assert store.patch(key, Patch({"c": "4"}, (), now, now + HOUR, max_size=6))
    assert not store.patch(key, Patch({"c": "45"}, (), now, now + HOUR, max_size=6))
    assert _bound(path, key) is None
    assert store.patch(key, Patch({"c": "5"}, (), now, now + HOUR, max_keys=3))
    assert _bound(path, key) == 3
    assert not store.patch(key, Patch({"d": "6"}, (), now, now + HOUR, max_keys=3))
    assert _values(store, key) == {"a": "1", "b": "2", "c": "5"}
    store.close()
