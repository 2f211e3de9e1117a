"""MySQL's and MariaDB's statements: LONGTEXT data merged with ``JSON_MERGE_PATCH``, upserts by
``ON DUPLICATE KEY UPDATE``, and sizes counted with ``JSON_TABLE``."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Text,
    TextClause,
    bindparam,
    column,
    func,
    insert,
    literal_column,
    or_,
    text,
    type_coerce,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.sql.dml import Delete, Insert

from ..base import Patch
from .common import Dialect


class MySQL(Dialect):
    """MySQL and MariaDB: ``data`` is LONGTEXT holding a JSON object."""

    def data_text(self) -> ColumnElement[Any]:
        return type_coerce(self.table.c.data, Text)

    def json_param(self, name: str) -> ColumnElement[Any]:
        return bindparam(name, type_=Text())

    def create(self, values: dict[str, Any]) -> Insert:
        return insert(self.table).values(values)  # a taken key: IntegrityError 1062

    def tombstone(self, values: dict[str, Any]) -> Insert:
        upsert = mysql.insert(self.table).values(values)
        return upsert.on_duplicate_key_update(
            {
                **{name: upsert.inserted[name] for name in values if name != "key"},
                "version": self.table.c.version + 1,
            }
        )

    def clear(self) -> Delete | TextClause:
        # MySQL cannot DELETE with a subquery on the same table; DELETE ... LIMIT can, walking
        # the expires index.
        name = self.engine.dialect.identifier_preparer.format_table(self.table)
        return text(f"DELETE FROM {name} WHERE expires <= :p_now ORDER BY expires LIMIT :p_limit")

    def changes(self, patch: Patch, deleted: list[str]) -> tuple[dict[str, Any], bool, bool]:
        # RFC 7396 merge: a string replaces, null removes. Values are JSON text kept as JSON
        # strings, so a stored None is the string "null", never a removal.
        changes: dict[str, str | None] = dict.fromkeys(deleted)
        changes.update(patch.set)
        # p_set_bytes: the patch's share of size_bound (JSON text is ASCII: one byte a char).
        merge = json.dumps(changes) if changes else ""
        params: dict[str, Any] = {"p_set_bytes": len(merge)}
        if changes:
            params["p_set"] = merge
        return params, bool(changes), bool(changes)

    def merged(self, values: dict[str, Any], sets: bool, deletes: bool) -> ColumnElement[Any]:
        if not (sets or deletes):
            return self.table.c.data
        merged = func.json_merge_patch(self.table.c.data, bindparam("p_set", type_=Text()))
        values["data"] = merged
        return merged

    def count(self, merged: ColumnElement[Any]) -> ColumnElement[Any]:
        return func.json_length(merged)

    def size(self, merged: ColumnElement[Any], changes: bool) -> ColumnElement[Any]:
        """MySQL has no function listing an object's members, so two JSON_TABLEs list the
        names (``JSON_KEYS``) and the values (``JSON_EXTRACT(doc, '$.*')``), unescaped into
        utf8mb4 columns whatever the connection's or server's character set, and their byte
        lengths are summed apart."""
        doc = f"JSON_MERGE_PATCH({self._stored()}, :p_set)" if changes else self._stored()
        unescaped = "LONGTEXT CHARACTER SET utf8mb4 PATH '$'"
        names = (
            f"SELECT COALESCE(SUM(LENGTH(fss_names.n)), 0) FROM JSON_TABLE(JSON_KEYS({doc}),"
            f" '$[*]' COLUMNS (n {unescaped})) AS fss_names"
        )
        texts = (
            f"SELECT COALESCE(SUM(LENGTH(fss_values.v)), 0) FROM"
            f" JSON_TABLE(JSON_EXTRACT({doc}, '$.*'), '$[*]' COLUMNS (v {unescaped})) AS fss_values"
        )
        size = text(f"SELECT ({names}) + ({texts})")
        if changes:
            size = size.bindparams(bindparam("p_set", type_=Text()))
        return size.columns(column("size", BigInteger())).scalar_subquery()

    def size_bound(self, merged: ColumnElement[Any], changes: bool) -> ColumnElement[Any]:
        # Every name and value of the merged object comes from the stored JSON text or the
        # patch's, where it stands quoted and escaped, never shorter: the two texts' lengths
        # together bound its size, without the merge or the scans (or their text in every
        # statement, which MySQL parses each time).
        stored = literal_column(f"LENGTH(CONVERT({self._stored()} USING utf8mb4))", BigInteger())
        return stored + bindparam("p_set_bytes", type_=BigInteger())

    def size_fits(self, merged: ColumnElement[Any], changes: bool) -> ColumnElement[bool]:
        limit = bindparam("p_max_size", type_=BigInteger())
        return or_(self.size_bound(merged, changes) <= limit, self.size(merged, changes) <= limit)

    def _stored(self) -> str:
        """The ``data`` column, as SQL text."""
        preparer = self.engine.dialect.identifier_preparer
        table = self.table
        return f"{preparer.format_table(table)}.{preparer.quote(table.c.data.name)}"
