"""Session reads sent through the driver's own cursor: the statement is compiled once, and a read
skips SQLAlchemy's per-statement work (cache lookup, execution context, result metadata), which
was about half the time of ``load`` against a local PostgreSQL.

Only where nothing is lost by it: a driver that takes named ``%(name)s`` parameters, a statement
whose parameters need no conversion by SQLAlchemy, and a connection that nobody is watching
(cursor events, such as tracing or statement counting, and ``echo`` take the usual path, so they
see every statement). A driver error on this path takes the usual path too, on a fresh
connection: a read is safe to repeat (its touch applies only while due), and SQLAlchemy then
does what it always does (a restarted server invalidates the pool, the error is translated).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from ..base import Record
from ..helpers import record_from_row

#: What :meth:`DirectReads.first` returns when the usual path must run the read instead.
NOT_DIRECT: Any = object()


class DirectReads:
    """Reads of one row, through the driver's cursor, for the statements of one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        dbapi = engine.dialect.loaded_dbapi
        self._errors: type[BaseException] = dbapi.Error
        self._sql: dict[int, tuple[ClauseElement, str | None]] = {}
        #: Whether a connection's cursor is kept between reads: only where the pool lends a
        #: connection to one holder at a time (not StaticPool, which shares one with all).
        self._keep_cursor = isinstance(engine.pool, QueuePool)

    def sql_of(self, statement: ClauseElement) -> str | None:
        """The SQL text to send for ``statement``, or ``None`` if it must go through
        SQLAlchemy (another parameter style, parameters that need converting, or no
        connection made yet: the dialect learns the server's version on the first one)."""
        known = self._sql.get(id(statement))
        if known is not None:
            return known[1]
        if getattr(self._engine.dialect, "server_version_info", None) is None:
            return None
        sql = self._compile(statement)
        self._sql[id(statement)] = (statement, sql)  # the statement kept: its id stays its own
        return sql

    def _compile(self, statement: ClauseElement) -> str | None:
        dialect = self._engine.dialect
        if dialect.paramstyle != "pyformat":
            return None
        compiled = statement.compile(dialect=dialect)
        if not isinstance(compiled, SQLCompiler) or compiled.positional:
            return None
        for bind in compiled.binds.values():
            if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
                return None
        sql = str(compiled)
        return None if "POSTCOMPILE" in sql else sql

    def first(self, conn: Connection, sql: str, params: Mapping[str, Any]) -> Any:
        """The record of the first row ``sql`` reads (``None`` if none), or :data:`NOT_DIRECT`
        if it must be read the usual way."""
        events = conn.dispatch
        if events.before_cursor_execute or events.after_cursor_execute or self._engine.echo:
            return NOT_DIRECT
        dbapi = conn.connection.dbapi_connection
        try:
            kept = self._keep_cursor
            cursor = _cursor_of(conn) if kept else dbapi.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql, params)
                row = cursor.fetchone()
            finally:
                if not kept:
                    cursor.close()
        except self._errors:
            conn.invalidate()
            return NOT_DIRECT
        return None if row is None else _record(row)


#: Where a pooled connection keeps its cursor for these reads (its pool record's ``info``).
_CURSOR = "flask_serversession.cursor"


def _cursor_of(conn: Connection) -> Any:
    """The cursor these reads use on ``conn``'s DBAPI connection, made on first use and kept
    with it: making and closing one per read cost about as much client time as the pool
    checkout (18 µs a read with psycopg). SQLAlchemy clears ``info`` when it replaces or
    invalidates the DBAPI connection; the cursor's own connection is checked as well."""
    fairy = conn.connection
    dbapi = fairy.dbapi_connection
    cursor = fairy.info.get(_CURSOR)
    if cursor is None or getattr(cursor, "connection", None) is not dbapi:
        cursor = fairy.info[_CURSOR] = dbapi.cursor()  # type: ignore[union-attr]
    return cursor


def _record(row: Any) -> Record:
    return record_from_row(tuple(row))
