"""PostgreSQL and MySQL/MariaDB through SQLAlchemy Core: sessions in one table of your database.

.. versionadded:: 0.1

Three ways to build one:

* From a URL (``SESSION_STORE = "postgresql+psycopg://user:pw@db.example/app"``): the store
  makes and owns its engine, tuned for it: autocommit (one round trip per statement, no
  ``BEGIN``/``COMMIT``), ``utf8mb4`` on MySQL.
* From an :class:`~sqlalchemy.engine.Engine` you already have:
  ``SQLStore(engine, table="sessions", schema="web")``. The store borrows it and never
  disposes of it. On PostgreSQL its connections are switched to autocommit while the store
  holds them (free with psycopg); on MySQL each statement runs in a transaction of its own,
  which adds the ``COMMIT`` and the pool's reset ``ROLLBACK``. An engine made with
  ``isolation_level="AUTOCOMMIT"`` is used as is.
* From Flask-SQLAlchemy: ``SQLStore.from_flask_sqlalchemy(db, app=app)`` (or inside an app
  context), optionally with a ``bind_key``. The table joins ``db``'s metadata, so
  ``db.create_all()`` and Flask-Migrate/Alembic see it instead of proposing to drop it.

URL forms: ``postgresql://``, ``postgresql+psycopg://``, ``postgresql+psycopg2://``,
``postgresql+pg8000://``, ``mysql+pymysql://``, ``mysql+mysqldb://``, ``mariadb://``,
``mariadb+pymysql://``, ``mariadb+mariadbconnector://``: SQLAlchemy's URLs, whose driver must be
installed (``pip install 'flask-serversession[sql]'`` brings SQLAlchemy; add psycopg or PyMySQL).
Query-string options of the store itself:

``table``
    The table's name (default ``serversession``; letters, digits, ``_``, at most 48).
``schema``
    The schema (PostgreSQL) or database (MySQL) of the table; default: the connection's.
``create_table``
    ``true`` (default): create the table and its indexes on first use if missing, safely when
    several processes start at once (or call :meth:`SQLStore.create_schema` at start-up to fail
    early). ``false``: you own the schema (Alembic).
``pool_size``, ``max_overflow``, ``pool_timeout``, ``pool_recycle``, ``pool_pre_ping``
    Passed to :func:`sqlalchemy.create_engine`. ``pool_pre_ping`` is off by default: a
    statement that finds its pooled connection dropped by a restarted server is retried once
    on a fresh connection (SQLAlchemy invalidates the whole pool on a disconnect), which picks
    up the restart without a failed request and without pre-ping's extra round trip per store
    call. Turn it on for connections that middleboxes drop silently.

Every other query parameter must be a connection parameter the driver knows (``sslmode``,
``connect_timeout``, ``charset``...): it is passed to the driver as SQLAlchemy does. Anything else
is a :class:`~flask_serversession.errors.ConfigurationError`, so a typo never goes unnoticed.
The password never appears in :attr:`SQLStore.name`, logs or error messages.

The table (see :func:`session_table`)::

    key               VARCHAR(64) PRIMARY KEY   hash of the session ID (never the ID itself);
                                                ascii_bin on MySQL: compared byte for byte
    data              JSONB (PostgreSQL) / LONGTEXT (MySQL): {"name": "<serialized value>"}
    created           DOUBLE    POSIX seconds, from the caller's clock like every time here
    last_seen         DOUBLE
    expires           DOUBLE    idle expiry, never after absolute_expires; indexed for cleanup
    absolute_expires  DOUBLE
    user_id           VARCHAR(255) NULL, indexed
    ended             BOOLEAN   a tombstone: the session was ended on purpose
    version           INTEGER   bumped by every patch
    info              TEXT NULL client metadata kept at login (JSON text, opaque here)

Times are POSIX timestamps: absolute instants, the same in every time zone, compared exactly
with the floats of the store contract, and free of MySQL's ``TIMESTAMP`` 2038 limit and of
session-time-zone conversions. In SQL, ``to_timestamp(expires)`` (PostgreSQL) or
``FROM_UNIXTIME(expires)`` (MySQL) shows them as dates.

``data`` is LONGTEXT on MySQL and MariaDB rather than ``JSON``: MariaDB's ``JSON`` is LONGTEXT
with a ``JSON_VALID`` check that would parse the whole document again on every write, MySQL's
binary JSON gains nothing for a merge of top-level names, and one definition serves both. The
store checks what it reads (:class:`~flask_serversession.errors.SessionDataCorrupt`).

Alembic: call :func:`session_table` on your migration's ``target_metadata`` and build the store
with ``create_table=False``; autogenerate then writes the table's migration like any other.

Per operation, one statement: ``load`` is one ``SELECT`` (on PostgreSQL it also carries the
rate-limited touch, as an ``UPDATE`` in a ``WITH`` clause that writes nothing unless the touch is
due; on MySQL the touch, when due, is a second statement); ``patch`` is one ``UPDATE`` that merges
only the changed names into the stored object (``(data || changes) - deleted`` on PostgreSQL,
``JSON_MERGE_PATCH`` on MySQL), so concurrent patches of different names all land, and it matches
only a live record, so nothing ended or expired is ever re-created. A patch with a size limit
also matches only if the merged object fits it: a subquery in the ``WHERE`` sums the byte lengths
of its names and values (``jsonb_each_text`` on PostgreSQL; ``JSON_TABLE`` over ``JSON_KEYS`` and
over ``JSON_EXTRACT(..., '$.*')`` on MySQL). Moving a session to a new ID
is one transaction: the ``UPDATE`` and the tombstone left under the old key. ``clear_expired``
deletes in batches, each its own short transaction.

Driver errors (connection refused, a server restart, a pool timeout) become
:class:`~flask_serversession.errors.SessionStoreUnavailable`; a deadlock or a serialization
failure is retried twice first.
"""

from __future__ import annotations

import inspect
import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, TypeVar
from urllib.parse import SplitResult

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TextClause,
    bindparam,
    cast,
    create_engine,
    delete,
    false,
    func,
    insert,
    literal_column,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.engine.url import URL
from sqlalchemy.sql.dml import Delete, Insert, Update
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.selectable import Select

from ..errors import (
    ConfigurationError,
    SessionDataCorrupt,
    SessionDataError,
    SessionStoreUnavailable,
)
from .base import Capabilities, Patch, Record, Store, Touch

__all__ = ["SQLStore", "session_table"]

_T = TypeVar("_T")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}\Z")
#: Attempts of an operation that hit a deadlock or a serialization failure.
_ATTEMPTS = 3
#: SQLSTATEs (PostgreSQL) and error numbers (MySQL) worth retrying: the server rolled the
#: statement back and running it again is safe.
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_RETRY_MYSQL_ERRORS = frozenset({1213})  # deadlock found when trying to get lock
_MYSQL_DUPLICATE_KEY = 1062

_BOOLEANS = {"true": True, "1": True, "yes": True, "on": True}
_BOOLEANS.update({"false": False, "0": False, "no": False, "off": False})


#: What to install for each database, and the URL that names its driver.
_DRIVERS = {
    "postgresql": "pip install 'psycopg[binary]' and write postgresql+psycopg://..., or"
    " psycopg2-binary for postgresql+psycopg2:// (plain postgresql:// means psycopg2)",
    "mysql": "pip install PyMySQL and write mysql+pymysql://..., or mysqlclient for"
    " mysql+mysqldb:// (plain mysql:// means mysqlclient), or mariadb for"
    " mariadb+mariadbconnector://",
    "*": "pip install the driver the URL names (psycopg for PostgreSQL, PyMySQL for MySQL)",
}
_DRIVERS["mariadb"] = _DRIVERS["mysql"]


def _parse_bool(name: str, value: str) -> bool:
    try:
        return _BOOLEANS[value.lower()]
    except KeyError:
        raise ConfigurationError(
            f"SESSION_STORE: SQL option {name} must be true or false, got {value!r}"
        ) from None


def _number(kind: Callable[[str], Any]) -> Callable[[str, str], Any]:
    def parse(name: str, value: str) -> Any:
        try:
            return kind(value)
        except ValueError:
            raise ConfigurationError(
                f"SESSION_STORE: SQL option {name} must be a number, got {value!r}"
            ) from None

    return parse


#: Query-string options passed to :func:`sqlalchemy.create_engine`, with their parsers.
_ENGINE_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    "pool_size": _number(int),
    "max_overflow": _number(int),
    "pool_timeout": _number(float),
    "pool_recycle": _number(int),
    "pool_pre_ping": _parse_bool,
}
_STORE_OPTIONS = ("table", "schema", "create_table")
#: InnoDB, and utf8mb4 compared byte for byte, on MySQL; SQLAlchemy's mariadb:// dialect reads
#: only the mariadb_ options, its mysql:// one only the mysql_ ones.
_TABLE_OPTIONS: dict[str, Any] = {
    f"{prefix}_{option}": value
    for prefix in ("mysql", "mariadb")
    for option, value in (("engine", "InnoDB"), ("charset", "utf8mb4"), ("collate", "utf8mb4_bin"))
}


# -- the schema -----------------------------------------------------------------------------------


def session_table(
    metadata: MetaData, name: str = "serversession", schema: str | None = None
) -> Table:
    """The sessions table, defined in ``metadata`` (or the one already defined there).

    For Alembic: call it on your ``target_metadata`` and build the store with
    ``create_table=False``.

    .. versionadded:: 0.1
    """
    for what, value in (("table", name), ("schema", schema)):
        if value is not None and not _NAME.match(value):
            raise ConfigurationError(
                f"SESSION_STORE: invalid SQL {what} name {value!r} (letters, digits and _,"
                " at most 48)"
            )
    existing = metadata.tables.get(f"{schema}.{name}" if schema else name)
    if existing is not None:
        return existing
    key = Column(
        "key",
        String(64)
        .with_variant(postgresql.VARCHAR(64, collation="C"), "postgresql")
        .with_variant(
            mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
        ),
        primary_key=True,
    )
    user_id = Column(
        "user_id",
        String(255).with_variant(
            mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
        ),
        nullable=True,
    )
    return Table(
        name,
        metadata,
        key,
        Column(
            "data",
            Text()
            .with_variant(postgresql.JSONB(), "postgresql")
            .with_variant(
                mysql.LONGTEXT(charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb"
            ),
            nullable=False,
        ),
        Column("created", Double(), nullable=False),
        Column("last_seen", Double(), nullable=False),
        Column("expires", Double(), nullable=False),
        Column("absolute_expires", Double(), nullable=False),
        user_id,
        Column("ended", Boolean(), nullable=False, server_default=false()),
        Column("version", Integer(), nullable=False, server_default="1"),
        Column("info", Text(), nullable=True),
        Index(f"ix_{name}_expires", "expires"),
        Index(f"ix_{name}_user_id", user_id, postgresql_where=user_id.isnot(None)),
        schema=schema,
        comment="Flask-ServerSession sessions",
        **_TABLE_OPTIONS,
    )


# -- the store ------------------------------------------------------------------------------------


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
        self._pid = os.getpid()
        self._schema_lock = threading.Lock()
        self._schema_ready = not create_table
        self._password = engine.url.password
        where = f"?schema={schema}&table={table}" if schema else f"?table={table}"
        #: The URL without password nor driver options, and the table.
        self.name = engine.url.set(query={}).render_as_string(hide_password=True) + where
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
        """Build a store and its own engine from a URL (see the module's documentation).

        ``create_table`` comes from ``SESSION_SQL_CREATE_TABLE``; the URL's option wins.
        """
        raw = url.geturl() if isinstance(url, SplitResult) else url
        try:
            sa_url = make_url(raw)
        except sa_exc.ArgumentError as exc:
            raise ConfigurationError(f"SESSION_STORE: not an SQL URL: {exc}") from None
        query = dict(sa_url.query)
        store_options: dict[str, Any] = {}
        engine_options: dict[str, Any] = {"pool_pre_ping": False}
        for name in list(query):
            value = query[name]
            if not isinstance(value, str):
                raise ConfigurationError(f"SESSION_STORE: SQL option {name} is given twice")
            if name in ("table", "schema"):
                store_options[name] = value
            elif name == "create_table":
                store_options[name] = _parse_bool(name, value)
            elif name in _ENGINE_OPTIONS:
                engine_options[name] = _ENGINE_OPTIONS[name](name, value)
            else:
                continue
            del query[name]
        if create_table is not None:
            store_options.setdefault("create_table", create_table)
        sa_url = sa_url.set(query=query)
        mysql_driver = sa_url.get_driver_name() in ("pymysql", "mysqldb")
        if mysql_driver and sa_url.get_backend_name() in ("mysql", "mariadb"):
            if "charset" not in query:  # user IDs may hold any character: not latin1
                sa_url = sa_url.update_query_dict({"charset": "utf8mb4"})
        if "skip_autocommit_rollback" in inspect.signature(DefaultDialect.__init__).parameters:
            engine_options["skip_autocommit_rollback"] = True  # SQLAlchemy >= 2.0.43
        try:
            engine = create_engine(sa_url, isolation_level="AUTOCOMMIT", **engine_options)
        except sa_exc.NoSuchModuleError as exc:
            raise ConfigurationError(f"SESSION_STORE: {exc}") from None
        except ImportError as exc:
            raise ConfigurationError(
                f"SESSION_STORE: the driver of {sa_url.drivername}:// is not installed"
                f" ({exc.name or exc}): {_DRIVERS.get(sa_url.get_backend_name(), _DRIVERS['*'])}"
            ) from exc
        except (TypeError, sa_exc.ArgumentError) as exc:
            raise ConfigurationError(f"SESSION_STORE: invalid SQL store option: {exc}") from None
        try:
            _check_driver_options(engine, list(query))
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
        if self._pid != os.getpid():
            # Forked (gunicorn --preload): the parent's connections must not be shared.
            self._pid = os.getpid()
            if self._owns_engine:
                self.engine.dispose(close=False)
        if not self._schema_ready:
            self.create_schema()
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                if transaction or self._single_in_tx:
                    with self._tx.begin() as conn:
                        return operation(conn)
                with self._auto.connect() as conn:
                    return operation(conn)
            except sa_exc.DBAPIError as exc:
                if attempt < _ATTEMPTS and _retryable(exc):
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
        data: ColumnElement[Any] = cast(c.data, Text) if self._pg else type_coerce(c.data, Text)
        self._columns = (
            data,
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
                expires=func.least(bindparam("p_expires", type_=Double()), c.absolute_expires),
            )
        )
        if self._pg:
            # The touch rides on the read: a data-modifying WITH runs once, to completion, and
            # the SELECT sees the row as it was before it (one snapshot per statement). It
            # writes nothing when the touch is not due.
            self._select_touch = self._select.add_cte(self._touch.cte("touch"))
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
        self._create: Insert = (
            # Whether a row came back tells whether it was inserted.
            postgresql.insert(t)
            .values(values)
            .on_conflict_do_nothing(index_elements=[c.key])
            .returning(c.key)
            if self._pg
            else insert(t).values(values)
        )
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
        self._tombstone: Insert
        if self._pg:
            pg_insert = postgresql.insert(t).values(tomb)
            self._tombstone = pg_insert.on_conflict_do_update(
                index_elements=[c.key],
                set_={
                    **{name: pg_insert.excluded[name] for name in tomb if name != "key"},
                    "version": c.version + 1,
                },
            )
        else:
            my_insert = mysql.insert(t).values(tomb)
            self._tombstone = my_insert.on_duplicate_key_update(
                {
                    **{name: my_insert.inserted[name] for name in tomb if name != "key"},
                    "version": c.version + 1,
                }
            )
        self._delete: Delete = delete(t).where(c.key == bindparam("p_key"))
        now: BindParameter[float] = bindparam("p_now", type_=Double())
        self._clear: Delete | TextClause
        if self._pg:
            batch = (
                select(c.key)
                .where(c.expires <= now)
                .limit(bindparam("p_limit", type_=Integer()))
                .with_for_update(skip_locked=True)  # rows a request is writing: next time
            )
            self._clear = delete(t).where(c.key.in_(batch))
        else:
            # MySQL cannot DELETE with a subquery on the same table; DELETE ... LIMIT can,
            # walking the expires index.
            name = self.engine.dialect.identifier_preparer.format_table(t)
            self._clear = text(
                f"DELETE FROM {name} WHERE expires <= :p_now ORDER BY expires LIMIT :p_limit"
            )
        self._patches: dict[tuple[bool, ...], Update] = {}

    def _json_param(self, name: str) -> ColumnElement[Any]:
        """A JSON document given as text."""
        param = bindparam(name, type_=Text())
        return cast(param, postgresql.JSONB) if self._pg else param

    def _live(self) -> tuple[ColumnElement[bool], ...]:
        c = self.table.c
        now: BindParameter[float] = bindparam("p_now", type_=Double())
        return (c.expires > now, c.absolute_expires > now, c.ended.is_(False))

    def _patch_statement(
        self,
        sets: bool,
        deletes: bool,
        user: bool,
        move: bool,
        info: bool,
        limit: bool,
        key_limit: bool,
    ) -> Update:
        shape = (sets, deletes, user, move, info, limit, key_limit)
        statement = self._patches.get(shape)
        if statement is not None:
            return statement
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
        if self._pg:
            merged: ColumnElement[Any] = c.data
            if sets:
                merged = merged.op("||", return_type=postgresql.JSONB)(self._json_param("p_set"))
            if deletes:
                names = cast(
                    bindparam("p_delete", type_=postgresql.ARRAY(Text())),
                    postgresql.ARRAY(Text()),
                )
                merged = merged.op("-", return_type=postgresql.JSONB)(names)
            if sets or deletes:
                values["data"] = merged
            if limit:
                # (JSONB is stored parsed: listing its members costs less than printing it, so
                # there is no cheaper first test here, unlike MySQL's.)
                limit_param = bindparam("p_max_size", type_=BigInteger())
                conditions.append(self._pg_size(merged) <= limit_param)
            if key_limit:
                keys = func.jsonb_object_keys(merged).table_valued("k").alias()
                count = select(func.count()).select_from(keys).scalar_subquery()
                conditions.append(count <= bindparam("p_max_keys", type_=BigInteger()))
        else:
            if sets or deletes:
                # RFC 7396 merge: a string replaces, null removes. Values are JSON text kept as
                # JSON strings, so a stored None is the string "null", never a removal.
                values["data"] = func.json_merge_patch(c.data, bindparam("p_set", type_=Text()))
            if limit:
                conditions.append(self._mysql_size_fits(sets or deletes))
            if key_limit:
                doc: ColumnElement[Any] = c.data
                if sets or deletes:
                    doc = func.json_merge_patch(c.data, bindparam("p_set", type_=Text()))
                length = func.json_length(doc)
                conditions.append(length <= bindparam("p_max_keys", type_=BigInteger()))
        if user:
            values["user_id"] = bindparam("p_user_id", type_=String())
        if move:
            values["key"] = bindparam("p_new_key")
        if info:
            values["info"] = bindparam("p_info", type_=Text())
        statement = update(self.table).where(*conditions).values(values)
        self._patches[shape] = statement
        return statement

    @staticmethod
    def _pg_size(merged: ColumnElement[Any]) -> ColumnElement[Any]:
        """The size of the JSONB object ``merged``, as :func:`~.base.values_size` counts it:
        UTF-8 bytes of every name and (unescaped) value."""
        each = func.jsonb_each_text(merged).table_valued("key", "value").alias()
        total = func.sum(func.octet_length(each.c.key) + func.octet_length(each.c.value))
        return select(func.coalesce(total, literal_column("0"))).select_from(each).scalar_subquery()

    def _mysql_size_fits(self, merge: bool) -> TextClause:
        """Whether the data, merged with ``p_set`` if ``merge``, holds at most ``p_max_size``
        bytes as :func:`~.base.values_size` counts them. MySQL has no function listing an
        object's members, so two JSON_TABLEs list the names (``JSON_KEYS``) and the values
        (``JSON_EXTRACT(doc, '$.*')``), unescaped into utf8mb4 columns whatever the connection's
        or server's character set, and their byte lengths are summed apart."""
        t = self.table
        preparer = self.engine.dialect.identifier_preparer
        stored = f"{preparer.format_table(t)}.{preparer.quote(t.c.data.name)}"
        doc = f"JSON_MERGE_PATCH({stored}, :p_set)" if merge else stored
        column = "LONGTEXT CHARACTER SET utf8mb4 PATH '$'"
        names = (
            f"SELECT COALESCE(SUM(LENGTH(fss_names.n)), 0) FROM JSON_TABLE(JSON_KEYS({doc}),"
            f" '$[*]' COLUMNS (n {column})) AS fss_names"
        )
        texts = (
            f"SELECT COALESCE(SUM(LENGTH(fss_values.v)), 0) FROM"
            f" JSON_TABLE(JSON_EXTRACT({doc}, '$.*'), '$[*]' COLUMNS (v {column})) AS fss_values"
        )
        # Every name and value of the merged object comes from the stored JSON text or the
        # patch's, where it stands quoted and escaped, never shorter: when those two texts
        # together fit, so does the result, and neither the merge nor the scans are run.
        bound = f"LENGTH(CONVERT({stored} USING utf8mb4)) + :p_set_bytes"
        condition = text(f"({bound} <= :p_max_size OR ({names}) + ({texts}) <= :p_max_size)")
        params: list[BindParameter[Any]] = [
            bindparam("p_max_size", type_=BigInteger()),
            bindparam("p_set_bytes", type_=BigInteger()),
        ]
        if merge:
            params.append(bindparam("p_set", type_=Text()))
        return condition.bindparams(*params)

    # -- the contract --------------------------------------------------------------------------

    def load(self, key: str, touch: Touch | None = None) -> Record | None:
        if touch is None:
            return self._run(lambda conn: _first(conn.execute(self._select, {"p_key": key})))
        params = {
            "p_key": key,
            "p_now": touch.now,
            "p_expires": touch.expires,
            "p_before": touch.if_seen_before,
        }
        if self._pg:
            return self._run(lambda conn: _first(conn.execute(self._select_touch, params)))

        def load_then_touch(conn: Connection) -> Record | None:
            record = _first(conn.execute(self._select, params))
            if (
                record is not None
                and record.last_seen < touch.if_seen_before
                and record.is_live(touch.now)
            ):
                conn.execute(self._touch, params)
            return record

        return self._run(load_then_touch)

    def create(self, key: str, record: Record) -> bool:
        self._check_names(record.values)
        params = {
            "p_key": key,
            "p_data": json.dumps(record.values),
            "p_created": record.created,
            "p_last_seen": record.last_seen,
            "p_expires": min(record.expires, record.absolute_expires),
            "p_absolute": record.absolute_expires,
            "p_user_id": record.user_id,
            "p_info": record.info,
        }

        def create(conn: Connection) -> bool:
            try:
                result = conn.execute(self._create, params)
                return result.first() is not None if self._pg else True
            except sa_exc.IntegrityError as exc:
                if _mysql_error(exc) == _MYSQL_DUPLICATE_KEY:
                    return False
                raise

        return self._run(create)

    def patch(self, key: str, patch: Patch) -> bool:
        self._check_names(patch.set)
        deleted = [name for name in patch.delete if name not in patch.set and self._storable(name)]
        params: dict[str, Any] = {"p_key": key, "p_now": patch.now, "p_expires": patch.expires}
        if self._pg:
            sets, deletes = bool(patch.set), bool(deleted)
            if sets:
                params["p_set"] = json.dumps(dict(patch.set))
            if deletes:
                params["p_delete"] = deleted
        else:
            changes: dict[str, str | None] = dict.fromkeys(deleted)
            changes.update(patch.set)
            sets = deletes = bool(changes)
            if changes:
                params["p_set"] = json.dumps(changes)
        if patch.user_id is not None:
            params["p_user_id"] = patch.user_id or None
        move = patch.new_key is not None
        if move:
            params["p_new_key"] = patch.new_key
        if patch.info is not None:
            params["p_info"] = patch.info
        limit = patch.max_size is not None
        if limit:
            params["p_max_size"] = patch.max_size
            params["p_set_bytes"] = len(params.get("p_set", "").encode("utf-8"))
        key_limit = patch.max_keys is not None
        if key_limit:
            params["p_max_keys"] = patch.max_keys
        statement = self._patch_statement(
            sets, deletes, patch.user_id is not None, move, patch.info is not None, limit, key_limit
        )
        if not move:
            return self._run(lambda conn: conn.execute(statement, params).rowcount == 1)
        tombstone = {"p_key": key, "p_data": "{}", "p_until": patch.tombstone_until}

        def move_and_leave_tombstone(conn: Connection) -> bool:
            if conn.execute(statement, params).rowcount != 1:
                return False
            conn.execute(self._tombstone, tombstone)
            return True

        return self._run(move_and_leave_tombstone, transaction=True)

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        if tombstone_until is None:
            self._run(lambda conn: conn.execute(self._delete, {"p_key": key}))
        else:
            params = {"p_key": key, "p_data": "{}", "p_until": tombstone_until}
            self._run(lambda conn: conn.execute(self._tombstone, params))

    def sessions_of(self, user_id: str, now: float) -> list[tuple[str, Record]]:
        params = {"p_user_id": user_id, "p_now": now}
        rows = self._run(lambda conn: conn.execute(self._of_user, params).all())
        return [(row[0], _record(tuple(row[1:]))) for row in rows]

    def scan(self, now: float, page: int = 500) -> Iterator[tuple[str, Record]]:
        # Keyset pagination: each page is one short statement, never a long-held cursor.
        after = ""
        while True:
            params = {"p_after": after, "p_now": now, "p_limit": page}
            rows = self._run(partial(_all, self._page, params))
            for row in rows:
                yield row[0], _record(tuple(row[1:]))
            if len(rows) < page:
                return
            after = rows[-1][0]

    def clear_expired(self, now: float, batch_size: int = 1000, limit: int | None = None) -> int:
        """Delete records and tombstones whose ``expires`` is past, ``batch_size`` rows per
        statement, each its own short transaction. ``expires`` is never after
        ``absolute_expires`` (every write caps it), so its index finds them all."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        removed = 0
        while limit is None or removed < limit:
            size = batch_size if limit is None else min(batch_size, limit - removed)
            count = self._run(partial(self._clear_batch, now, size), transaction=True)
            removed += count
            if count < size:
                break
        return removed

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
        if not self._pg:
            return True  # MySQL gets ASCII JSON text: escapes for everything
        if "\x00" in name:
            return False
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True


def _all(statement: Any, params: dict[str, Any], conn: Connection) -> list[Any]:
    return list(conn.execute(statement, params).all())


def _first(result: Any) -> Record | None:
    row = result.first()
    return None if row is None else _record(tuple(row))


def _record(row: tuple[Any, ...]) -> Record:
    data, created, last_seen, expires, absolute_expires, user_id, ended, info = row
    try:
        values = json.loads(data)
    except (TypeError, ValueError) as exc:
        raise SessionDataCorrupt(f"stored data is not JSON: {exc}") from None
    if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
        raise SessionDataCorrupt("stored data is not an object of serialized values")
    return Record(
        values,
        float(created),
        float(last_seen),
        float(expires),
        float(absolute_expires),
        user_id,
        bool(ended),
        info,
    )


def _mysql_error(exc: sa_exc.DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _retryable(exc: sa_exc.DBAPIError) -> bool:
    """A deadlock or a serialization failure: the server rolled back; running again is safe."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate is None:
        args = getattr(orig, "args", ())
        if args and isinstance(args[0], dict):  # pg8000
            sqlstate = args[0].get("C")
    return sqlstate in _RETRY_SQLSTATES or _mysql_error(exc) in _RETRY_MYSQL_ERRORS


def _check_driver_options(engine: Engine, names: list[str]) -> None:
    """Refuse query parameters that neither the store nor the driver knows (a typo)."""
    if not names:
        return
    accepted = _driver_parameters(engine)
    if accepted is None:
        return  # the driver takes any keyword: let it judge
    unknown = [name for name in names if name not in accepted]
    if unknown:
        known = ", ".join((*_STORE_OPTIONS, *_ENGINE_OPTIONS))
        raise ConfigurationError(
            f"SESSION_STORE: unknown SQL store option {unknown[0]!r}; the store's options are"
            f" {known}, and any connection parameter of the {engine.dialect.driver} driver"
        )


def _driver_parameters(engine: Engine) -> set[str] | None:
    dbapi: Any = engine.dialect.dbapi
    try:
        signature = inspect.signature(dbapi.connect)
    except (AttributeError, TypeError, ValueError):
        return None
    names = {
        p.name
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        libpq = _libpq_keywords(dbapi)
        if libpq is None:
            return None
        names |= libpq
    return names


def _libpq_keywords(dbapi: Any) -> set[str] | None:
    """The connection keywords of libpq, for psycopg (3)."""
    pq = getattr(dbapi, "pq", None)
    conninfo = getattr(pq, "Conninfo", None)
    if conninfo is None:
        return None
    try:
        return {option.keyword.decode() for option in conninfo.get_defaults()}
    except Exception:  # an exotic libpq: let the driver judge
        return None
