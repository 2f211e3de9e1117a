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
    func,
    insert,
    text,
    type_coerce,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.sql.dml import Delete, Insert
from sqlalchemy.sql.elements import BindParameter

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
        params = {"p_set": json.dumps(changes)} if changes else {}
        return params, bool(changes), bool(changes)

    def merge(
        self,
        values: dict[str, Any],
        conditions: list[ColumnElement[bool] | TextClause],
        sets: bool,
        deletes: bool,
        limit: bool,
        key_limit: bool,
    ) -> None:
        c = self.table.c
        doc: ColumnElement[Any] = c.data
        if sets or deletes:
            doc = func.json_merge_patch(c.data, bindparam("p_set", type_=Text()))
            values["data"] = doc
        if limit:
            conditions.append(self._size_fits(sets or deletes))
        if key_limit:
            conditions.append(func.json_length(doc) <= bindparam("p_max_keys", type_=BigInteger()))

    def _size_fits(self, merge: bool) -> TextClause:
        """Whether the data, merged with ``p_set`` if ``merge``, holds at most ``p_max_size``
        bytes as :func:`~..base.values_size` counts them. MySQL has no function listing an
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
