"""What both SQL dialects share: the table, the URL's options, the engine a URL makes, and how
driver errors are told apart (retry, or report)."""

from __future__ import annotations

import inspect
import re
from typing import Any
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
    create_engine,
    false,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql, postgresql
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.engine.url import URL
from sqlalchemy.sql.dml import Delete, Insert

from ...errors import ConfigurationError
from ..base import Patch
from ..helpers import Option, parse_options

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,47}\Z")
#: Attempts of an operation that hit a deadlock or a serialization failure.
ATTEMPTS = 3
#: SQLSTATEs (PostgreSQL) and error numbers (MySQL) worth retrying: the server rolled the
#: statement back and running it again is safe.
_RETRY_SQLSTATES = frozenset({"40001", "40P01"})  # serialization failure, deadlock
_RETRY_MYSQL_ERRORS = frozenset({1213})  # deadlock found when trying to get lock
MYSQL_DUPLICATE_KEY = 1062

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

#: Query-string options of the store itself.
STORE_OPTIONS = (
    Option("table", str, "serversession", "The table's name."),
    Option("schema", str, None, "The schema (PostgreSQL) or database (MySQL) of the table."),
    Option("create_table", bool, True, "Create the table and its indexes on first use."),
)
#: Query-string options passed to :func:`sqlalchemy.create_engine`.
ENGINE_OPTIONS = (
    Option("pool_size", int, 5, "Connections kept open."),
    Option("max_overflow", int, 10, "Connections opened beyond pool_size at busy times."),
    Option("pool_timeout", float, 30.0, "Seconds to wait for a free connection."),
    Option("pool_recycle", int, -1, "Seconds after which a connection is replaced."),
    Option("pool_pre_ping", bool, False, "Test each connection before use."),
)
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
        *bound_columns(),
        Index(f"ix_{name}_expires", "expires"),
        Index(f"ix_{name}_user_id", user_id, postgresql_where=user_id.isnot(None)),
        schema=schema,
        comment="Flask-ServerSession sessions",
        **_TABLE_OPTIONS,
    )


def bound_columns() -> tuple[Column[Any], ...]:
    """The columns that keep upper bounds of a session's number of values and bytes of values,
    and the ``version`` at which they were last right (see :mod:`.bounds`): added by the store
    to a table made before them."""
    return (
        Column("keys_at_most", BigInteger(), nullable=True),
        Column("bytes_at_most", BigInteger(), nullable=True),
        Column("bounds_version", Integer(), nullable=True),
    )


# -- a store's own engine -------------------------------------------------------------------------


def engine_from_url(
    url: SplitResult | str | URL, create_table: bool | None
) -> tuple[Engine, dict[str, Any]]:
    """The engine a store makes from its URL, and the store's own options the URL gives
    (``create_table`` defaulting to the argument, from ``SESSION_SQL_CREATE_TABLE``)."""
    raw = url.geturl() if isinstance(url, SplitResult) else url
    try:
        sa_url = make_url(raw)
    except sa_exc.ArgumentError as exc:
        raise ConfigurationError(f"SESSION_STORE: not an SQL URL: {exc}") from None
    pairs = []
    for name, value in sa_url.query.items():
        if not isinstance(value, str):
            raise ConfigurationError(f"SESSION_STORE: SQL option {name} is given twice")
        pairs.append((name, value))
    store_options, rest = parse_options("SQL", pairs, STORE_OPTIONS, others=True)
    engine_options, driver_options = parse_options("SQL", rest.items(), ENGINE_OPTIONS, others=True)
    engine_options.setdefault("pool_pre_ping", False)
    if create_table is not None:
        store_options.setdefault("create_table", create_table)
    engine = _create_engine(sa_url.set(query=driver_options), engine_options)
    try:
        _check_driver_options(engine, list(driver_options))
    except BaseException:
        engine.dispose()
        raise
    return engine, store_options


def _create_engine(sa_url: URL, engine_options: dict[str, Any]) -> Engine:
    """An autocommit engine for ``sa_url``; utf8mb4 on MySQL unless the URL names a charset."""
    mysql_driver = sa_url.get_driver_name() in ("pymysql", "mysqldb")
    if mysql_driver and sa_url.get_backend_name() in ("mysql", "mariadb"):
        if "charset" not in sa_url.query:  # user IDs may hold any character: not latin1
            sa_url = sa_url.update_query_dict({"charset": "utf8mb4"})
    if "skip_autocommit_rollback" in inspect.signature(DefaultDialect.__init__).parameters:
        engine_options["skip_autocommit_rollback"] = True  # SQLAlchemy >= 2.0.43
    try:
        return create_engine(sa_url, isolation_level="AUTOCOMMIT", **engine_options)
    except sa_exc.NoSuchModuleError as exc:
        raise ConfigurationError(f"SESSION_STORE: {exc}") from None
    except ImportError as exc:
        raise ConfigurationError(
            f"SESSION_STORE: the driver of {sa_url.drivername}:// is not installed"
            f" ({exc.name or exc}): {_DRIVERS.get(sa_url.get_backend_name(), _DRIVERS['*'])}"
        ) from exc
    except (TypeError, sa_exc.ArgumentError) as exc:
        raise ConfigurationError(f"SESSION_STORE: invalid SQL store option: {exc}") from None


# -- driver errors --------------------------------------------------------------------------------


def mysql_error(exc: sa_exc.DBAPIError) -> int | None:
    args = getattr(exc.orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def retryable(exc: sa_exc.DBAPIError) -> bool:
    """A deadlock or a serialization failure: the server rolled back; running again is safe."""
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if sqlstate is None:
        args = getattr(orig, "args", ())
        if args and isinstance(args[0], dict):  # pg8000
            sqlstate = args[0].get("C")
    return sqlstate in _RETRY_SQLSTATES or mysql_error(exc) in _RETRY_MYSQL_ERRORS


def _check_driver_options(engine: Engine, names: list[str]) -> None:
    """Refuse query parameters that neither the store nor the driver knows (a typo)."""
    if not names:
        return
    accepted = _driver_parameters(engine)
    if accepted is None:
        return  # the driver takes any keyword: let it judge
    unknown = [name for name in names if name not in accepted]
    if unknown:
        known = ", ".join(option.name for option in (*STORE_OPTIONS, *ENGINE_OPTIONS))
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


# -- where the dialects differ --------------------------------------------------------------------


class Dialect:
    """The statements and checks in which PostgreSQL and MySQL/MariaDB differ, for one table.

    :class:`~flask_serversession.stores.sql.SQLStore` builds everything else itself.
    """

    def __init__(self, table: Table, engine: Engine) -> None:
        self.table = table
        self.engine = engine

    def data_text(self) -> ColumnElement[Any]:
        """The ``data`` column read as JSON text."""
        raise NotImplementedError

    def tune_storage(self, engine: Engine) -> None:
        """Settings of a table the store manages, applied at start-up after it exists."""

    def json_param(self, name: str) -> ColumnElement[Any]:
        """A bound JSON document, given as text."""
        raise NotImplementedError

    def create(self, values: dict[str, Any]) -> Insert:
        """The ``INSERT`` of a new record that fails (or does nothing) on a taken key."""
        raise NotImplementedError

    def inserted(self, result: Any) -> bool:
        """Whether :meth:`create`'s statement, which raised nothing, inserted its row."""
        return True

    def tombstone(self, values: dict[str, Any]) -> Insert:
        """The upsert of a tombstone, over whatever the key held."""
        raise NotImplementedError

    def clear(self) -> Delete | TextClause:
        """The ``DELETE`` of at most ``p_limit`` rows whose ``expires`` is past ``p_now``."""
        raise NotImplementedError

    def changes(self, patch: Patch, deleted: list[str]) -> tuple[dict[str, Any], bool, bool]:
        """The parameters that carry a patch's set and ``deleted`` names, and whether the
        statement sets and deletes."""
        raise NotImplementedError

    def merged(self, values: dict[str, Any], sets: bool, deletes: bool) -> ColumnElement[Any]:
        """The data as a patch that ``sets`` and ``deletes`` values leaves it (its parameters
        as :meth:`changes` names them); put in ``values`` as the new ``data`` when it changes."""
        raise NotImplementedError

    def count(self, merged: ColumnElement[Any]) -> ColumnElement[Any]:
        """The number of values of ``merged``."""
        raise NotImplementedError

    def size(self, merged: ColumnElement[Any], changes: bool) -> ColumnElement[Any]:
        """The bytes of values of ``merged`` (``data`` merged with the patch if ``changes``),
        as :func:`~..base.values_size` counts them."""
        raise NotImplementedError

    def size_bound(self, merged: ColumnElement[Any], changes: bool) -> ColumnElement[Any]:
        """An upper bound of :meth:`size`, kept by a patch that could not add to the old one:
        the exact size, unless the dialect has something cheaper."""
        return self.size(merged, changes)

    def size_fits(self, merged: ColumnElement[Any], changes: bool) -> ColumnElement[bool]:
        """Whether ``merged`` holds at most ``p_max_size`` bytes of values; a dialect with a
        cheaper first test than :meth:`size` tries it first."""
        return self.size(merged, changes) <= bindparam("p_max_size", type_=BigInteger())

    def storable(self, name: str) -> bool:
        """Whether the database can hold ``name`` as a key of the data."""
        return True
