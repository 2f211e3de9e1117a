"""``sqlite:///path/to/file.db``: the embedded default store, one SQLite file.

Safe for several processes (gunicorn workers) and threads: WAL journal, so readers never wait
for writers, and a busy timeout, so concurrent writers wait their turn instead of failing.
Every operation is one SQL statement in autocommit mode (a load whose rate-limited touch is due
adds an UPDATE; a regeneration moves the row and leaves a tombstone in one transaction); a
patch merges the changed values into
the stored JSON object with ``json_patch`` inside that statement, so two requests that change
different keys at once both land. A patch with ``max_size`` or ``max_keys`` checks the merged
object in the same statement's ``WHERE``, first against bounds that cost nothing to test (the
stored text's length for the size, the kept ``keys_at_most`` for the count), and only when a
bound would pass the limit by listing the merged object's members with ``json_each``: so a
write to a large session costs about what it costs on a small one.

URL: ``sqlite:///relative.db`` (relative to the working directory) or
``sqlite:////absolute/path.db``, with optional query parameters ``table`` (default
``serversession``), ``timeout`` (seconds a writer waits for the lock, default 5) and
``synchronous`` (``normal``, the default, is durable across process crashes; ``full`` also
across power loss).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, TypeVar
from urllib.parse import SplitResult

from ..errors import ConfigurationError, SessionStoreUnavailable
from .base import Capabilities, Patch, Record, Store, Touch
from .helpers import (
    Option,
    ProcessGuard,
    capped_expires,
    clear_in_batches,
    keyset_pages,
    parse_options,
    record_from_row,
    touch_due,
)

_T = TypeVar("_T")
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
_COLUMNS = "data, created, last_seen, expires, absolute_expires, user_id, ended, info"


class SQLiteStore(Store):
    """Sessions in one SQLite file, shared by every process and thread that opens it."""

    capabilities = Capabilities(by_user=True, scan=True, clear_expired=True)
    #: The options of its URL's query string.
    url_options = (
        Option("table", str, "serversession", "The table's name."),
        Option("timeout", float, 5.0, "Seconds a writer waits for the lock.", minimum=0),
        Option("synchronous", str, "normal", "normal, full or extra (PRAGMA synchronous)."),
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = "serversession",
        timeout: float = 5.0,
        synchronous: str = "normal",
    ) -> None:
        self.path = os.fspath(path)
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            raise ConfigurationError(
                "SESSION_STORE: an SQLite store needs a file path; for sessions in memory use"
                " memory://"
            )
        if not _TABLE_NAME.match(table):
            raise ConfigurationError(f"SESSION_STORE: invalid SQLite table name {table!r}")
        if synchronous.lower() not in ("normal", "full", "extra"):
            raise ConfigurationError(
                f"SESSION_STORE: synchronous must be normal, full or extra, got {synchronous!r}"
            )
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise ConfigurationError(
                f"SESSION_STORE: the directory of the SQLite file, {directory}, does not exist:"
                " create it, or name a file in a directory that does"
            )
        self.name = f"sqlite:///{self.path}"
        self.table = table
        self.timeout = timeout
        self.synchronous = synchronous.upper()
        self._pool: deque[sqlite3.Connection] = deque()
        self._process = ProcessGuard()
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        t = table
        self._sql_load = f"SELECT {_COLUMNS} FROM {t} WHERE key = ?"
        self._sql_touch = (
            f"UPDATE {t} SET last_seen = ?,"
            f" expires = MIN(CASE WHEN user_id IS NULL THEN ? ELSE ? END, absolute_expires)"
            f" WHERE key = ? AND last_seen < ? AND expires > ? AND absolute_expires > ?"
            f" AND NOT ended"
        )
        self._sql_create = (
            f"INSERT INTO {t} (key, {_COLUMNS}, keys_at_most)"
            f" VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (key) DO NOTHING"
        )
        self._sql_delete = f"DELETE FROM {t} WHERE key = ?"
        self._sql_tombstone = (
            f"INSERT OR REPLACE INTO {t} (key, {_COLUMNS}, keys_at_most)"
            f" VALUES (?, '{{}}', ?, ?, ?, ?, NULL, 1, NULL, 0)"
        )
        self._sql_clear = (
            f"DELETE FROM {t} WHERE key IN (SELECT key FROM {t} WHERE expires <= ? LIMIT ?)"
        )
        # Fail at start-up, not on the first request, if the file cannot be opened.
        self._run(lambda conn: None)

    @classmethod
    def from_url(cls, url: SplitResult) -> SQLiteStore:
        if url.netloc:
            raise ConfigurationError(
                f"SESSION_STORE: an SQLite URL has no host: use sqlite:///relative.db or"
                f" sqlite:////absolute/path.db, got {url.geturl()!r}"
            )
        settings, _ = parse_options("SQLite", url.query, cls.url_options)
        return cls(url.path[1:], **settings)

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            if not self._schema_ready:
                self._create_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        with self._schema_lock:
            if self._schema_ready:
                return
            self._switch_to_wal(conn)
            t = self.table
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {t} ("
                " key TEXT PRIMARY KEY NOT NULL,"
                " data TEXT NOT NULL,"
                " created REAL NOT NULL,"
                " last_seen REAL NOT NULL,"
                " expires REAL NOT NULL,"
                " absolute_expires REAL NOT NULL,"
                " user_id TEXT,"
                " ended INTEGER NOT NULL DEFAULT 0,"
                " info TEXT,"
                " keys_at_most INTEGER"
                ") WITHOUT ROWID"
            )
            conn.execute(f"CREATE INDEX IF NOT EXISTS {t}_expires ON {t} (expires)")
            conn.execute(
                f"CREATE INDEX IF NOT EXISTS {t}_user_id ON {t} (user_id) WHERE user_id IS NOT NULL"
            )
            self._add_keys_bound(conn)
            if conn.execute("SELECT json_patch('{}', '{}')").fetchone()[0] != "{}":
                raise ConfigurationError("SQLite's JSON functions are missing")
            self._schema_ready = True

    def _add_keys_bound(self, conn: sqlite3.Connection) -> None:
        """Give a table made before ``keys_at_most`` existed that column (its rows hold
        ``NULL``: counted once, by their next limited patch), and the trigger that keeps the
        bound honest whoever writes ``data``.

        A process still running an older version (a rolling restart) changes ``data`` without
        the bound: the trigger forgets the bound of a row whose ``data`` changed while its
        bound did not. A patch from this version that sets values always changes the bound;
        one that only deletes, or that counted the exact number it already held, is forgotten
        too, and costs one count on the next limited patch.
        """
        t = self.table
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({t})")}
        if "keys_at_most" not in columns:
            try:
                conn.execute(f"ALTER TABLE {t} ADD COLUMN keys_at_most INTEGER")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # else another process just added it
                    raise
        conn.execute(
            f"CREATE TRIGGER IF NOT EXISTS {t}_keys_at_most AFTER UPDATE OF data ON {t}"
            " WHEN NEW.keys_at_most IS OLD.keys_at_most AND NEW.keys_at_most IS NOT NULL"
            f" BEGIN UPDATE {t} SET keys_at_most = NULL WHERE key = NEW.key; END"
        )

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        """Put the file in WAL mode, waiting for the other processes that open it at the same
        moment (gunicorn workers booting on a new file).

        Changing the journal mode takes an exclusive lock, and SQLite answers "database is
        locked" at once, without the busy timeout, while another connection holds any lock: so
        the switch is tried again until ``timeout`` has passed. Once one process has switched,
        the others find the file in WAL mode, which needs no lock.
        """
        deadline = time.monotonic() + self.timeout
        pause = 0.005
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0].lower()
                if mode == "wal" or conn.execute("PRAGMA journal_mode = WAL").fetchone()[0] == (
                    "wal"
                ):
                    return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
            if time.monotonic() >= deadline:
                raise sqlite3.OperationalError(
                    f"database is locked: could not switch to WAL in {self.timeout} s"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.1)

    def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``operation`` on a pooled connection, turning driver errors into ours."""
        if self._process.forked():
            # Forked (e.g. gunicorn --preload): connections must not cross processes.
            self._pool = deque()
        try:
            conn = self._pool.pop()
        except IndexError:
            conn = None
        try:
            if conn is None:
                conn = self._connect()
            result = operation(conn)
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise SessionStoreUnavailable(self.name, f"{type(exc).__name__}: {exc}") from exc
        self._pool.append(conn)
        return result

    def close(self) -> None:
        while self._pool:
            self._pool.pop().close()

    # -- the contract --------------------------------------------------------------------------

    def load(self, key: str, touch: Touch | None = None) -> Record | None:
        def load(conn: sqlite3.Connection) -> Record | None:
            row = conn.execute(self._sql_load, (key,)).fetchone()
            if row is None:
                return None
            record = record_from_row(row)
            if touch is not None and touch_due(record, touch):
                conn.execute(
                    self._sql_touch,
                    (
                        touch.now,
                        touch.expires_for(None),
                        touch.expires,
                        key,
                        touch.if_seen_before,
                        touch.now,
                        touch.now,
                    ),
                )
            return record

        return self._run(load)

    def create(self, key: str, record: Record) -> bool:
        params = (
            key,
            json.dumps(record.values),
            record.created,
            record.last_seen,
            capped_expires(record.expires, record.absolute_expires),
            record.absolute_expires,
            record.user_id,
            record.info,
            len(record.values),
        )
        return self._run(lambda conn: conn.execute(self._sql_create, params).rowcount == 1)

    def patch(self, key: str, patch: Patch) -> bool:
        sql, params = self._patch_statement(key, patch)
        if patch.new_key is None:
            return self._run(lambda conn: conn.execute(sql, params).rowcount == 1)
        until = patch.tombstone_until
        tombstone = (key, until, until, until, until)

        def move(conn: sqlite3.Connection) -> bool:
            # Moving the record and leaving its tombstone is one transaction.
            conn.execute("BEGIN IMMEDIATE")
            try:
                moved = conn.execute(sql, params).rowcount == 1
                if moved:
                    conn.execute(self._sql_tombstone, tombstone)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return moved

        return self._run(move)

    def _patch_statement(self, key: str, patch: Patch) -> tuple[str, dict[str, Any]]:
        """The ``UPDATE`` that applies ``patch`` to the live record under ``key``, and its
        parameters."""
        assignments = ["last_seen = :now", "expires = MIN(:expires, absolute_expires)"]
        params: dict[str, Any] = {
            "key": key,
            "now": patch.now,
            "expires": patch.expires,
            "added": len(patch.set),
            "max_keys": patch.max_keys,
        }
        t = self.table
        merged = f"{t}.data"
        if patch.set or patch.delete:
            # RFC 7396 merge: a string replaces, null removes. Values are JSON text kept as
            # strings, so a stored None is the string "null", never a removal.
            changes: dict[str, str | None] = dict.fromkeys(patch.delete)
            changes.update(patch.set)
            params["merge"] = json.dumps(changes)
            merged = f"json_patch({t}.data, :merge)"
            assignments.append(f"data = {merged}")
            assignments.append(f"keys_at_most = {_keys_bound(merged, patch.max_keys)}")
        if patch.user_id is not None:
            assignments.append("user_id = :user_id")
            params["user_id"] = patch.user_id or None  # "" unbinds
        if patch.info is not None:
            assignments.append("info = :info")
            params["info"] = patch.info
        if patch.new_key is not None:
            assignments.append("key = :new_key")
            params["new_key"] = patch.new_key
        sql = (
            f"UPDATE {t} SET {', '.join(assignments)}"
            f" WHERE key = :key AND expires > :now AND absolute_expires > :now AND NOT ended"
        )
        if patch.max_keys is not None:
            sql += f" AND (keys_at_most + :added <= :max_keys OR {_count(merged)} <= :max_keys)"
        if patch.max_size is not None:
            sql += f" AND {_size_fits(t, merged)}"
            params["max_size"] = patch.max_size
            params["patch_bytes"] = len(params.get("merge", "").encode("utf-8"))
        return sql, params

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        if tombstone_until is None:
            self._run(lambda conn: conn.execute(self._sql_delete, (key,)))
        else:
            until = tombstone_until
            params = (key, until, until, until, until)
            self._run(lambda conn: conn.execute(self._sql_tombstone, params))

    def sessions_of(self, user_id: str, now: float) -> list[tuple[str, Record]]:
        sql = (
            f"SELECT key, {_COLUMNS} FROM {self.table}"
            f" WHERE user_id = ? AND NOT ended AND expires > ? AND absolute_expires > ?"
        )
        rows = self._run(lambda conn: conn.execute(sql, (user_id, now, now)).fetchall())
        return [(row[0], record_from_row(row[1:])) for row in rows]

    def scan(self, now: float, page: int = 500) -> Iterator[tuple[str, Record]]:
        # Keyset pagination: each page is one short read, never a long-held cursor.
        sql = (
            f"SELECT key, {_COLUMNS} FROM {self.table} WHERE key > ?"
            f" AND NOT ended AND expires > ? AND absolute_expires > ? ORDER BY key LIMIT ?"
        )

        def read_page(after: str, size: int) -> list[Any]:
            return self._run(partial(_fetchall, sql=sql, params=(after, now, now, size)))

        for row in keyset_pages(read_page, page):
            yield row[0], record_from_row(row[1:])

    def clear_expired(self, now: float, batch_size: int = 1000, limit: int | None = None) -> int:
        def remove(size: int) -> int:
            return self._run(partial(_rowcount, sql=self._sql_clear, params=(now, size)))

        return clear_in_batches(remove, batch_size, limit)


def _count(merged: str) -> str:
    """The number of values of the object ``merged`` (an SQL expression), member by member."""
    return f"(SELECT count(*) FROM json_each({merged}))"


def _keys_bound(merged: str, max_keys: int | None) -> str:
    """The new ``keys_at_most`` of a patch that changes the data to ``merged``: the old bound
    plus the number of values set (some may have been there already); with ``max_keys``, the
    exact count once that sum would pass the limit, so that a bound only stops a patch that
    the exact count stops too. ``NULL`` (not known) stays ``NULL`` without ``max_keys``."""
    if max_keys is None:
        return "keys_at_most + :added"
    return (
        f"CASE WHEN keys_at_most + :added <= :max_keys THEN keys_at_most + :added"
        f" ELSE {_count(merged)} END"
    )


def _size_fits(table: str, merged: str) -> str:
    """Whether the data as the patch leaves it (``merged``) fits ``max_size``, in UTF-8 bytes
    of names and values (``json_each`` yields them unescaped)."""
    # Every name and value of the result comes from the stored JSON text or the patch's, where
    # it stands quoted and escaped, never shorter: when those two texts together fit, so does
    # the result, and the merge and the listing (which cost far more) are not run.
    return (
        f"(length(CAST({table}.data AS BLOB)) + :patch_bytes <= :max_size"
        " OR (SELECT COALESCE(SUM(length(CAST(j.key AS BLOB))"
        f" + length(CAST(j.value AS BLOB))), 0) FROM json_each({merged}) AS j) <= :max_size)"
    )


def _rowcount(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> int:
    return conn.execute(sql, params).rowcount


def _fetchall(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()
