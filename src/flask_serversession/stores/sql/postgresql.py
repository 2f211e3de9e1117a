"""PostgreSQL's statements: JSONB data merged with ``||`` and ``-``, upserts by ``ON CONFLICT``;
and the data column compressed with lz4."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Double,
    Integer,
    Text,
    TextClause,
    bindparam,
    cast,
    delete,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine
from sqlalchemy.sql.dml import Delete, Insert

from ..base import Patch
from .common import Dialect

logger = logging.getLogger("flask_serversession")

#: The data column's compression method, as ``pg_attribute`` names it (``l``: lz4).
_COMPRESSION = (
    "SELECT attcompression FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attname = :c"
)


class PostgreSQL(Dialect):
    """PostgreSQL: ``data`` is JSONB."""

    def data_text(self) -> ColumnElement[Any]:
        return cast(self.table.c.data, Text)

    def tune_storage(self, engine: Engine) -> None:
        """Compress ``data`` with lz4 instead of pglz, PostgreSQL's default. A session over
        about 2 KB is compressed and stored out of line, and every patch rewrites its whole
        document: at 10 KB a patch took about 70 µs more server time than on a small session
        with pglz, 20 µs with lz4. Only values written afterwards change (each session at its
        next write); the setting is a catalog change, made once per table, waiting at most 2 s
        for its lock. Servers before 14 have no such setting; a server built without lz4, or
        a user who may not alter the table, keeps pglz, with a warning."""
        if (getattr(engine.dialect, "server_version_info", None) or (14,)) < (14,):
            return
        table = engine.dialect.identifier_preparer.format_table(self.table)
        column = self.table.c.data.name
        try:
            with engine.begin() as conn:
                found = conn.execute(text(_COMPRESSION), {"t": table, "c": column}).scalar()
                if found != "l":
                    conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                    conn.execute(
                        text(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")
                    )
        except sa_exc.DBAPIError as exc:
            reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
            logger.warning(
                "could not set lz4 compression on the sessions table %s (%s): writes to large"
                " sessions stay slower",
                table,
                reason,
            )

    def json_param(self, name: str) -> ColumnElement[Any]:
        return cast(bindparam(name, type_=Text()), postgresql.JSONB)

    def create(self, values: dict[str, Any]) -> Insert:
        # Whether a row came back tells whether it was inserted.
        c = self.table.c
        insert = postgresql.insert(self.table).values(values)
        return insert.on_conflict_do_nothing(index_elements=[c.key]).returning(c.key)

    def inserted(self, result: Any) -> bool:
        return result.first() is not None

    def tombstone(self, values: dict[str, Any]) -> Insert:
        c = self.table.c
        insert = postgresql.insert(self.table).values(values)
        return insert.on_conflict_do_update(
            index_elements=[c.key],
            set_={
                **{name: insert.excluded[name] for name in values if name != "key"},
                "version": c.version + 1,
            },
        )

    def clear(self) -> Delete | TextClause:
        c = self.table.c
        batch = (
            select(c.key)
            .where(c.expires <= bindparam("p_now", type_=Double()))
            .limit(bindparam("p_limit", type_=Integer()))
            .with_for_update(skip_locked=True)  # rows a request is writing: next time
        )
        return delete(self.table).where(c.key.in_(batch))

    def changes(self, patch: Patch, deleted: list[str]) -> tuple[dict[str, Any], bool, bool]:
        params: dict[str, Any] = {}
        if patch.set:
            params["p_set"] = json.dumps(dict(patch.set))
        if deleted:
            params["p_delete"] = deleted
        return params, bool(patch.set), bool(deleted)

    def merged(self, values: dict[str, Any], sets: bool, deletes: bool) -> ColumnElement[Any]:
        merged: ColumnElement[Any] = self.table.c.data
        if sets:
            merged = merged.op("||", return_type=postgresql.JSONB)(self.json_param("p_set"))
        if deletes:
            names = cast(
                bindparam("p_delete", type_=postgresql.ARRAY(Text())), postgresql.ARRAY(Text())
            )
            merged = merged.op("-", return_type=postgresql.JSONB)(names)
        if sets or deletes:
            values["data"] = merged
        return merged

    def count(self, merged: ColumnElement[Any]) -> ColumnElement[Any]:
        keys = func.jsonb_object_keys(merged).table_valued("k").alias()
        return select(func.count()).select_from(keys).scalar_subquery()

    def size(self, merged: ColumnElement[Any], changes: bool) -> ColumnElement[Any]:
        # (JSONB is stored parsed: listing its members costs less than printing it, so there
        # is no cheaper first test here, unlike MySQL's; the kept bounds spare it.)
        each = func.jsonb_each_text(merged).table_valued("key", "value").alias()
        total = func.sum(func.octet_length(each.c.key) + func.octet_length(each.c.value))
        return select(func.coalesce(total, literal_column("0"))).select_from(each).scalar_subquery()

    def storable(self, name: str) -> bool:
        """PostgreSQL refuses NUL and lone surrogates in text."""
        if "\x00" in name:
            return False
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
