"""PostgreSQL's statements: JSONB data merged with ``||`` and ``-``, upserts by ``ON CONFLICT``,
and the touch carried by the read in a data-modifying ``WITH``."""

from __future__ import annotations

import json
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
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.dml import Delete, Insert

from ..base import Patch
from .common import Dialect


class PostgreSQL(Dialect):
    """PostgreSQL: ``data`` is JSONB."""

    def data_text(self) -> ColumnElement[Any]:
        return cast(self.table.c.data, Text)

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
