"""How a patch checks ``max_keys`` and ``max_size`` without listing the data's members: kept
upper bounds of each session's number of values and bytes of values.

Each row keeps ``keys_at_most`` and ``bytes_at_most``, and ``bounds_version``, the ``version``
at which they were last right. A patch adds to them what it sets (names and bytes, some of
which may replace values already there), so they stay upper bounds as long as only patches
that keep them write. A writer that changes the data without them (an older version of this
library, during a rolling restart) moves ``version`` on and leaves ``bounds_version`` behind:
the bounds are no longer trusted. A patch with limits tests the trusted bounds first; only when
they are not trusted, or would pass a limit, does it list the merged data (the exact count or
size, :meth:`.Dialect.count` and :meth:`.Dialect.size`), and it keeps those exact numbers (on
MySQL, for the size, the length of the data's text and the patch's, which bounds it at no cost);
when they were not trusted it counts both, whichever limits it has, so they are trusted again.
Either way the test is part of the patch's one ``UPDATE``: overlapping patches cannot together
pass a limit.

A table whose columns an application manages itself (``create_table=False``) may not have
them yet: the store then checks the limits by listing the merged data on every patch, as
:func:`checks_without_bounds` does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Table,
    TextClause,
    and_,
    bindparam,
    case,
    inspect,
    or_,
    text,
)
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateColumn

from .common import Dialect, bound_columns

__all__ = [
    "add_bound_columns",
    "checks_with_bounds",
    "checks_without_bounds",
    "missing_bound_columns",
]

_MAX_KEYS = bindparam("p_max_keys", type_=BigInteger())
_MAX_SIZE = bindparam("p_max_size", type_=BigInteger())
#: The number of values a patch sets, and their bytes (:func:`~..base.values_size`).
_ADDED_KEYS = bindparam("p_added_keys", type_=BigInteger())
_ADDED_BYTES = bindparam("p_added_bytes", type_=BigInteger())


def checks_without_bounds(
    dialect: Dialect,
    merged: ColumnElement[Any],
    conditions: list[ColumnElement[bool] | TextClause],
    changes: bool,
    limit: bool,
    key_limit: bool,
) -> None:
    """Add to a patch's conditions the limits it has, tested on the merged data itself."""
    if limit:
        conditions.append(dialect.size_fits(merged, changes))
    if key_limit:
        conditions.append(dialect.count(merged) <= _MAX_KEYS)


def checks_with_bounds(
    dialect: Dialect,
    table: Table,
    merged: ColumnElement[Any],
    conditions: list[ColumnElement[bool] | TextClause],
    changes: bool,
    limit: bool,
    key_limit: bool,
) -> dict[str, Any]:
    """Add to a patch's conditions the limits it has, tested on the bounds first; return the
    new values of the bounds' columns.

    They must be assigned before ``data`` and ``version`` in the ``UPDATE``: MySQL evaluates
    an assignment with the values of the columns assigned before it, and these read the old
    ``data`` and ``version`` (PostgreSQL reads old values whatever the order), and
    ``bounds_version`` comes after the bounds, which read its old value too.
    """
    c = table.c
    trusted = c.bounds_version == c.version
    grown_keys, exact_keys = c.keys_at_most + _ADDED_KEYS, dialect.count(merged)
    grown_bytes = c.bytes_at_most + _ADDED_BYTES
    exact_bytes = dialect.size_bound(merged, changes)
    assignments: dict[str, Any] = {}
    if key_limit:
        assignments["keys_at_most"], check = _bounded(
            trusted, grown_keys, _MAX_KEYS, exact_keys, exact_keys <= _MAX_KEYS
        )
        conditions.append(check)
    if limit:
        assignments["bytes_at_most"], check = _bounded(
            trusted, grown_bytes, _MAX_SIZE, exact_bytes, dialect.size_fits(merged, changes)
        )
        conditions.append(check)
    if limit or key_limit:
        # A patch with one limit counts the other bound too, only when they are not trusted,
        # so that both are right afterwards: else, with only one limit configured, a row an
        # older version wrote would be counted by every patch from then on.
        assignments.setdefault("keys_at_most", case((trusted, grown_keys), else_=exact_keys))
        assignments.setdefault("bytes_at_most", case((trusted, grown_bytes), else_=exact_bytes))
        next_version: Any = c.version + 1
    else:
        if changes:
            assignments["keys_at_most"] = grown_keys
            assignments["bytes_at_most"] = grown_bytes
        # Without limits they stay as trusted as they were.
        next_version = case((trusted, c.version + 1))
    # (Last: on MySQL the bounds above read the old bounds_version, see the docstring.)
    assignments["bounds_version"] = next_version
    return assignments


def _bounded(
    trusted: ColumnElement[bool],
    grown: ColumnElement[Any],
    limit: ColumnElement[Any],
    exact: ColumnElement[Any],
    fits: ColumnElement[bool],
) -> tuple[ColumnElement[Any], ColumnElement[bool]]:
    """A bound's new value and the patch's condition: the ``grown`` bound while it is trusted
    and within the ``limit``, else ``exact`` (the exact number, or a bound of it that costs
    less, as MySQL's size), while ``fits`` tests the exact number."""
    within = and_(trusted, grown <= limit)
    return case((within, grown), else_=exact), or_(within, fits)


def missing_bound_columns(conn: Connection, table: Table) -> list[Column[Any]]:
    """The bounds' columns that ``table`` lacks in the database."""
    found = {column["name"] for column in inspect(conn).get_columns(table.name, table.schema)}
    return [column for column in bound_columns() if column.name not in found]


def add_bound_columns(conn: Connection, table: Table) -> None:
    """Give a table made before the bounds existed their columns, with no manual step: their
    ``NULL``s mean "not known": each session's next limited patch counts."""
    name = conn.dialect.identifier_preparer.format_table(table)
    for column in missing_bound_columns(conn, table):
        spec = CreateColumn(column).compile(dialect=conn.dialect)
        conn.execute(text(f"ALTER TABLE {name} ADD COLUMN {spec}"))
