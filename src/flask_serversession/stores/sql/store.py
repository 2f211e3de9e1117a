"""The SQL store: one class over both dialects; what differs lives in :mod:`.postgresql` and
:mod:`.mysql`, what is shared in :mod:`.common`."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, TypeVar
from urllib.parse import SplitResult

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Double,
    Integer,
    MetaData,
    String,
    Text,
    TextClause,
    bindparam,
    case,
    delete,
    func,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import URL
from sqlalchemy.sql.dml import Delete, Insert, Update
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import Select

from ...errors import ConfigurationError, SessionDataError, SessionStoreUnavailable
from ..base import Capabilities, Patch, Record, Store, Touch, values_size
from ..helpers import (
    ProcessGuard,
    capped_expires,
    clear_in_batches,
    keyset_pages,
    record_from_row,
    touch_due,
)
from .bounds import (
    add_bound_columns,
    checks_with_bounds,
    checks_without_bounds,
    missing_bound_columns,
)
from .common import (
    ATTEMPTS,
    MYSQL_DUPLICATE_KEY,
    Dialect,
    bound_columns,
    engine_from_url,
    mysql_error,
    retryable,
    session_table,
)
from .direct import NOT_DIRECT, DirectReads
from .mysql import MySQL
from .postgresql import PostgreSQL

__all__ = ["SQLStore"]

_T = TypeVar("_T")
logger = logging.getLogger("flask_serversession")


class SQLStore(Store):
    """Sessions in one table of a PostgreSQL or MySQL/MariaDB database.

    ``engine`` is borrowed: the store never disposes of it. ``metadata`` is where the table is
    defined (a new :class:`~sqlalchemy.MetaData` by default; the table is reused if it is
    already defined there). With ``create_table`` the table and its indexes are created on first
    use if missing (or by :meth:`create_schema`).

    .. versionadded:: 0.1
    """

    capabilities = Capabilities(by_user=True, scan=True, clear_expired=True)

    def __init__(
        self,
        engine: Engine,
        *,
        table: str = "serversession",
        schema: str | None = None,
        create_table: bool = True,
        metadata: MetaData | None = None,
    ) -> None:
        dialect = engine.dialect.name
        if dialect not in ("postgresql", "mysql", "mariadb"):
            raise ConfigurationError(
                f"SESSION_STORE: the SQL store supports PostgreSQL and MySQL/MariaDB, not"
                f" {dialect}; for SQLite use sqlite:///path.db"
            )
        self.engine = engine
        self._pg = dialect == "postgresql"
        #: The :class:`~sqlalchemy.MetaData` holding :attr:`table`.
        self.metadata = MetaData() if metadata is None else metadata
        #: The sessions :class:`~sqlalchemy.Table`.
        self.table = session_table(self.metadata, table, schema)
        self.create_table = create_table
        self._owns_engine = False
        self._process = ProcessGuard()
        self._schema_lock = threading.Lock()
        self._schema_ready = not create_table
        #: Whether patches use the bounds of :mod:`.bounds`; ``None``: not known yet.
        self._bounds: bool | None = None
        self._password = engine.url.password
        where = f"?schema={schema}&table={table}" if schema else f"?table={table}"
        #: The URL without password nor driver options, and the table.
        self.name = engine.url.set(query={}).render_as_string(hide_password=True) + where
        self._dialect: Dialect = (PostgreSQL if self._pg else MySQL)(self.table, engine)
        self._use_engine(engine)
        self._build_statements()

    def _use_engine(self, engine: Engine) -> None:
        """Pick how single statements run: in autocommit mode, one round trip each, where
        that costs nothing to set up."""
        self._auto: Engine
        self._tx: Engine
        #: Single statements run in a transaction of their own (statement + COMMIT).
        self._single_in_tx = False
        if getattr(engine.dialect, "_on_connect_isolation_level", None) == "AUTOCOMMIT":
            # Our own engine (from_url), or one made with isolation_level="AUTOCOMMIT".
            self._auto = engine
            self._tx = engine.execution_options(isolation_level="READ COMMITTED")
        elif self._pg:
            # A borrowed engine: psycopg switches autocommit on and off without a round trip.
            self._auto = engine.execution_options(isolation_level="AUTOCOMMIT")
            self._tx = engine
        else:
            # MySQL drivers send SET AUTOCOMMIT each way, and SQLAlchemy resets the isolation
            # level on return: a plain transaction costs fewer round trips.
            self._auto = self._tx = engine
            self._single_in_tx = True

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_url(cls, url: SplitResult | str | URL, create_table: bool | None = None) -> SQLStore:
        """Build a store and its own engine from a URL (see the package's documentation).

        ``create_table`` comes from ``SESSION_SQL_CREATE_TABLE``; the URL's option wins.
        """
        engine, store_options = engine_from_url(url, create_table)
        try:
            store = cls(engine, **store_options)
        except BaseException:
            engine.dispose()
            raise
        store._owns_engine = True
        return store

    @classmethod
    def from_flask_sqlalchemy(
        cls,
        db: Any,
        bind_key: str | None = None,
        *,
        app: Any = None,
        table: str = "serversession",
        schema: str | None = None,
        create_table: bool = True,
    ) -> SQLStore:
        """A store on the engine of a Flask-SQLAlchemy ``db`` (of ``bind_key``, if given).

        Flask-SQLAlchemy makes engines per app, so pass the ``app`` (or call this inside its
        app context). The table is defined in ``db``'s metadata for that bind, so
        ``db.create_all()`` and Flask-Migrate see it (without that, autogenerate would propose
        dropping it). The engine stays ``db``'s.

        .. versionadded:: 0.1
        """
        from flask import has_app_context

        if app is not None:
            with app.app_context():
                engine = db.engines[bind_key]
        elif has_app_context():
            engine = db.engines[bind_key]
        else:
            raise ConfigurationError(
                "SQLStore.from_flask_sqlalchemy needs the app: pass app=app, or call it"
                " inside `with app.app_context():`"
            )
        metadata = getattr(db, "metadatas", {}).get(bind_key)
        return cls(engine, table=table, schema=schema, create_table=create_table, metadata=metadata)

    def create_schema(self) -> None:
        """Create the table and its indexes if they are missing.

        Safe when several processes do it at once: one wins, the others see its table. Called
        on first use when ``create_table`` is true; call it at start-up to fail early.
        """
        with self._schema_lock:
            if self._schema_ready:
                return
            for attempt in range(1, 4):
                try:
                    # One transaction: on PostgreSQL the table and its indexes appear together.
                    with self._tx.begin() as conn:
                        self.metadata.create_all(conn, tables=[self.table], checkfirst=True)
                    break
                except sa_exc.DBAPIError as exc:
                    # Another process created it between our check and our CREATE ("already
                    # exists", or a unique violation in PostgreSQL's catalog): check again.
                    if attempt == 3 or exc.connection_invalidated:
                        raise self._unavailable(exc) from exc
                    time.sleep(0.05 * attempt * random.random())
                except (sa_exc.DisconnectionError, sa_exc.TimeoutError) as exc:
                    raise self._unavailable(exc) from exc
            self._schema_ready = True
            self._bounds = self._has_bound_columns() and self._add_bound_columns()
            self._dialect.tune_storage(self._tx)

    def _add_bound_columns(self) -> bool:
        """Add the bounds' columns to a table made before them; whether it has them now. A
        user that may not alter the table keeps the checks that list the data (and a
        warning in the log)."""
        try:
            with self._tx.begin() as conn:
                add_bound_columns(conn, self.table)
            return True
        except sa_exc.DBAPIError:
            pass  # another process added them meanwhile, or this user may not: look
        missing = self._run(partial(missing_bound_columns, table=self.table))
        if missing:
            logger.warning(
                "could not add the columns %s to the sessions table %s: limits are checked"
                " the slower way until they are added",
                ", ".join(column.name for column in missing),
                self.table.fullname,
            )
        return not missing

    def _has_bound_columns(self) -> bool:
        """Whether :attr:`table` (as defined in :attr:`metadata`) has the bounds' columns."""
        return all(column.name in self.table.c for column in bound_columns())

    def _uses_bounds(self) -> bool:
        """Whether patches keep and test the bounds of :mod:`.bounds`: the table has their
        columns. A table the store does not manage (``create_table=False``) is looked at once."""
        if self._bounds is None:
            if not self._schema_ready:
                self.create_schema()
            if self._bounds is None:
                self._bounds = self._has_bound_columns() and not self._run(
                    partial(missing_bound_columns, table=self.table)
                )
        return self._bounds

    # -- running statements --------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> SessionStoreUnavailable:
        orig = getattr(exc, "orig", None) or exc
        reason = f"{type(orig).__name__}: {str(orig).strip()}"
        if self._password and len(self._password) >= 4:  # belt and braces: drivers omit it
            reason = reason.replace(self._password, "***")
        return SessionStoreUnavailable(self.name, reason)

    def _run(self, operation: Callable[[Connection], _T], transaction: bool = False) -> _T:
        """Run ``operation`` on a pooled connection (in autocommit mode, or in one transaction),
        retrying deadlocks; driver errors become :class:`SessionStoreUnavailable`."""
        if self._process.forked() and self._owns_engine:
            # Forked (gunicorn --preload): the parent's connections must not be shared.
            self.engine.dispose(close=False)
        if not self._schema_ready:
            self.create_schema()
        for attempt in range(1, ATTEMPTS + 1):
            try:
                if transaction or self._single_in_tx:
                    with self._tx.begin() as conn:
                        return operation(conn)
                with self._auto.connect() as conn:
                    return operation(conn)
            except sa_exc.DBAPIError as exc:
                if attempt < ATTEMPTS and retryable(exc):
                    time.sleep(0.01 * attempt * (1 + random.random()))
                    continue
                if attempt == 1 and exc.connection_invalidated and not transaction:
                    # A pooled connection the server dropped (a restart): SQLAlchemy has
                    # invalidated the pool; once more on a fresh connection. A single
                    # statement is safe to repeat (at worst a repeated create finds its own
                    # row and the caller picks another ID). A transaction is not retried: its
                    # COMMIT may have landed before the connection died.
                    continue
                raise self._unavailable(exc) from exc
            except (sa_exc.DisconnectionError, sa_exc.TimeoutError) as exc:
                raise self._unavailable(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Close the pooled connections of an engine the store made; a borrowed one is left
        alone. The store reconnects when used again."""
        if self._owns_engine:
            self.engine.dispose()

    # -- statements ----------------------------------------------------------------------------

    def _build_statements(self) -> None:
        t = self.table
        c = t.c
        self._columns = (
            self._dialect.data_text(),
            c.created,
            c.last_seen,
            c.expires,
            c.absolute_expires,
            c.user_id,
            c.ended,
            c.info,
        )
        self._select: Select[Any] = select(*self._columns).where(c.key == bindparam("p_key"))
        self._of_user: Select[Any] = select(c.key, *self._columns).where(
            c.user_id == bindparam("p_user_id", type_=String()), *self._live()
        )
        self._page: Select[Any] = (
            select(c.key, *self._columns)
            .where(c.key > bindparam("p_after"), *self._live())
            .order_by(c.key)
            .limit(bindparam("p_limit", type_=Integer()))
        )
        self._touch: Update = (
            update(t)
            .where(
                c.key == bindparam("p_key"),
                c.last_seen < bindparam("p_before", type_=Double()),
                *self._live(),
            )
            .values(
                last_seen=bindparam("p_now", type_=Double()),
                expires=func.least(
                    case(
                        (c.user_id.is_(None), bindparam("p_anonymous_expires", type_=Double())),
                        else_=bindparam("p_expires", type_=Double()),
                    ),
                    c.absolute_expires,
                ),
            )
        )
        self._direct = DirectReads(self.engine)
        values = {
            "key": bindparam("p_key"),
            "data": self._json_param("p_data"),
            "created": bindparam("p_created", type_=Double()),
            "last_seen": bindparam("p_last_seen", type_=Double()),
            "expires": bindparam("p_expires", type_=Double()),
            "absolute_expires": bindparam("p_absolute", type_=Double()),
            "user_id": bindparam("p_user_id", type_=String()),
            "ended": False,
            "version": 1,
            "info": bindparam("p_info", type_=Text()),
        }
        self._create: Insert = self._dialect.create(values)
        if self._has_bound_columns():
            bounds = {
                "keys_at_most": bindparam("p_keys", type_=BigInteger()),
                "bytes_at_most": bindparam("p_bytes", type_=BigInteger()),
                "bounds_version": 1,
            }
            self._create_bounded = self._dialect.create({**values, **bounds})
        until: BindParameter[float] = bindparam("p_until", type_=Double())
        tomb = {
            "key": bindparam("p_key"),
            "data": self._json_param("p_data"),
            "created": until,
            "last_seen": until,
            "expires": until,
            "absolute_expires": until,
            "user_id": None,
            "ended": True,
            "version": 1,
            "info": None,
        }
        self._tombstone: Insert = self._dialect.tombstone(tomb)
        self._delete: Delete = delete(t).where(c.key == bindparam("p_key"))
        self._clear: Delete | TextClause = self._dialect.clear()
        self._patches: dict[tuple[bool, ...], Update] = {}

    def _json_param(self, name: str) -> ColumnElement[Any]:
        """A JSON document given as text."""
        return self._dialect.json_param(name)

    def _live(self) -> tuple[ColumnElement[bool], ...]:
        c = self.table.c
        now: BindParameter[float] = bindparam("p_now", type_=Double())
        return (c.expires > now, c.absolute_expires > now, c.ended.is_(False))

    def _patch_statement(self, shape: tuple[bool, ...]) -> Update:
        """The ``UPDATE`` of a patch of ``shape``: whether it keeps the bounds of
        :mod:`.bounds`, sets values, deletes values, sets the user, moves the key, sets the
        info, has a size limit, has a key-count limit."""
        statement = self._patches.get(shape)
        if statement is not None:
            return statement
        bounded, sets, deletes, user, move, info, limit, key_limit = shape
        c = self.table.c
        values: dict[str, Any] = {
            "last_seen": bindparam("p_now", type_=Double()),
            "expires": func.least(bindparam("p_expires", type_=Double()), c.absolute_expires),
            "version": c.version + 1,
        }
        conditions: list[ColumnElement[bool] | TextClause] = [
            c.key == bindparam("p_key"),
            *self._live(),
        ]
        merged = self._dialect.merged(values, sets, deletes)
        checks = (merged, conditions, sets or deletes, limit, key_limit)
        first: dict[str, Any] = {}
        if bounded:
            first = checks_with_bounds(self._dialect, self.table, *checks)
        else:
            checks_without_bounds(self._dialect, *checks)
        if user:
            values["user_id"] = bindparam("p_user_id", type_=String())
        if move:
            values["key"] = bindparam("p_new_key")
        if info:
            values["info"] = bindparam("p_info", type_=Text())
        # (In this order: the bounds read the old data and version, see .bounds.)
        statement = update(self.table).where(*conditions)
        statement = statement.ordered_values(*first.items(), *values.items())
        self._patches[shape] = statement
        return statement

    # -- the contract --------------------------------------------------------------------------

    def load(self, key: str, touch: Touch | None = None) -> Record | None:
        # A plain read, and the touch as a second statement only when the row read shows it
        # due (once per SESSION_TOUCH_INTERVAL per session): folding the touch into every read
        # (a data-modifying WITH on PostgreSQL) made each read plan and run an UPDATE too. The
        # touch re-checks, in its own WHERE, that the row is still live and still due, so a
        # session ended or touched in between is left as it is.
        record = self._read(self._select, {"p_key": key})
        if record is not None and touch is not None and touch_due(record, touch):
            params = {
                "p_key": key,
                "p_now": touch.now,
                "p_expires": touch.expires,
                "p_anonymous_expires": touch.expires_for(None),
                "p_before": touch.if_seen_before,
            }
            self._run(lambda conn: conn.execute(self._touch, params))
        return record

    def _read(self, statement: Any, params: dict[str, Any]) -> Record | None:
        """The record ``statement`` reads: through the driver's cursor when it can (see
        :mod:`.direct`), else through SQLAlchemy."""
        sql = self._direct.sql_of(statement)
        if sql is not None:
            found = self._run(partial(self._direct.first, sql=sql, params=params))
            if found is not NOT_DIRECT:
                return found  # type: ignore[no-any-return]
        return self._run(lambda conn: _first(conn.execute(statement, params)))

    def create(self, key: str, record: Record) -> bool:
        self._check_names(record.values)
        params = {
            "p_key": key,
            "p_data": json.dumps(record.values),
            "p_created": record.created,
            "p_last_seen": record.last_seen,
            "p_expires": capped_expires(record.expires, record.absolute_expires),
            "p_absolute": record.absolute_expires,
            "p_user_id": record.user_id,
            "p_info": record.info,
            "p_keys": len(record.values),
            "p_bytes": values_size(record.values),
        }
        statement = self._create_bounded if self._uses_bounds() else self._create

        def create(conn: Connection) -> bool:
            try:
                return self._dialect.inserted(conn.execute(statement, params))
            except sa_exc.IntegrityError as exc:
                if mysql_error(exc) == MYSQL_DUPLICATE_KEY:
                    return False
                raise

        return self._run(create)

    def patch(self, key: str, patch: Patch) -> bool:
        statement, params = self._patch_of(key, patch)
        move = patch.new_key is not None
        if not move:
            return self._run(lambda conn: conn.execute(statement, params).rowcount == 1)
        tombstone = {"p_key": key, "p_data": "{}", "p_until": patch.tombstone_until}

        def move_and_leave_tombstone(conn: Connection) -> bool:
            if conn.execute(statement, params).rowcount != 1:
                return False
            conn.execute(self._tombstone, tombstone)
            return True

        return self._run(move_and_leave_tombstone, transaction=True)

    def _patch_of(self, key: str, patch: Patch) -> tuple[Update, dict[str, Any]]:
        """The statement that applies ``patch`` to the record under ``key``, and its
        parameters."""
        self._check_names(patch.set)
        bounded = self._uses_bounds()
        deleted = [name for name in patch.delete if name not in patch.set and self._storable(name)]
        changes, sets, deletes = self._dialect.changes(patch, deleted)
        params: dict[str, Any] = {"p_key": key, "p_now": patch.now, "p_expires": patch.expires}
        params.update(changes)
        optional = {
            "p_user_id": patch.user_id,
            "p_new_key": patch.new_key,
            "p_info": patch.info,
            "p_max_size": patch.max_size,
            "p_max_keys": patch.max_keys,
        }
        params.update({name: value for name, value in optional.items() if value is not None})
        if patch.user_id is not None:
            params["p_user_id"] = patch.user_id or None  # "" unbinds
        if bounded:
            params["p_added_keys"] = len(patch.set)
            params["p_added_bytes"] = values_size(patch.set)
        # The statement's shape: which of these it sets or checks.
        shape = (bounded, sets, deletes, *(value is not None for value in optional.values()))
        return self._patch_statement(shape), params

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        if tombstone_until is None:
            self._run(lambda conn: conn.execute(self._delete, {"p_key": key}))
        else:
            params = {"p_key": key, "p_data": "{}", "p_until": tombstone_until}
            self._run(lambda conn: conn.execute(self._tombstone, params))

    def sessions_of(self, user_id: str, now: float) -> list[tuple[str, Record]]:
        params = {"p_user_id": user_id, "p_now": now}
        rows = self._run(lambda conn: conn.execute(self._of_user, params).all())
        return [(row[0], record_from_row(tuple(row[1:]))) for row in rows]

    def scan(self, now: float, page: int = 500) -> Iterator[tuple[str, Record]]:
        def read_page(after: str, size: int) -> list[Any]:
            params = {"p_after": after, "p_now": now, "p_limit": size}
            return self._run(partial(_all, self._page, params))

        for row in keyset_pages(read_page, page):
            yield row[0], record_from_row(tuple(row[1:]))

    def clear_expired(self, now: float, batch_size: int = 1000, limit: int | None = None) -> int:
        """Delete records and tombstones whose ``expires`` is past, ``batch_size`` rows per
        statement, each its own short transaction. ``expires`` is never after
        ``absolute_expires`` (every write caps it), so its index finds them all."""

        def remove(size: int) -> int:
            return self._run(partial(self._clear_batch, now, size), transaction=True)

        return clear_in_batches(remove, batch_size, limit)

    def _clear_batch(self, now: float, size: int, conn: Connection) -> int:
        return conn.execute(self._clear, {"p_now": now, "p_limit": size}).rowcount

    def _check_names(self, values: Mapping[str, str]) -> None:
        """PostgreSQL refuses NUL and lone surrogates in text: name the session key at fault
        instead of reporting an outage."""
        for name in values:
            if not self._storable(name):
                raise SessionDataError(
                    name, "PostgreSQL cannot store this key name (NUL or a lone surrogate)"
                )

    def _storable(self, name: str) -> bool:
        """Whether the database can hold ``name`` as a key of the data (a name it cannot hold
        was never stored, so deleting it is a no-op)."""
        return self._dialect.storable(name)


def _all(statement: Any, params: dict[str, Any], conn: Connection) -> list[Any]:
    return list(conn.execute(statement, params).all())


def _first(result: Any) -> Record | None:
    row = result.first()
    return None if row is None else record_from_row(tuple(row))
