"""The shared store helpers (stores/helpers.py), the URL-options parser, the registry's use of
``Store.from_url``, and the compare-and-set base (stores/kv.py), without a server."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from flask_serversession.errors import (
    ConfigurationError,
    SessionDataCorrupt,
    SessionStoreUnavailable,
)
from flask_serversession.stores import Patch, Record, Store, Touch, register_store, store_from_url
from flask_serversession.stores.helpers import (
    Option,
    ProcessGuard,
    capped_expires,
    check_values,
    clear_in_batches,
    decode_values,
    keyset_pages,
    option_defaults,
    parse_options,
    record_from_row,
    redact,
    touch_due,
)
from flask_serversession.stores.kv import KeyValueStore
from flask_serversession.stores.memory import MemoryStore

NOW = 1_700_000_000.0


def _record(**changes: Any) -> Record:
    fields: dict[str, Any] = {
        "values": {"a": "1"},
        "created": NOW - 100,
        "last_seen": NOW - 100,
        "expires": NOW + 100,
        "absolute_expires": NOW + 1000,
    }
    fields.update(changes)
    return Record(**fields)


# -- the contract's rules -------------------------------------------------------------------------


def test_touch_due_only_for_a_live_record_seen_before_the_threshold() -> None:
    touch = Touch(NOW, NOW + 50, if_seen_before=NOW - 10)
    assert touch_due(_record(), touch)
    assert not touch_due(_record(), None)
    assert not touch_due(_record(last_seen=NOW - 10), touch)  # seen recently enough
    assert not touch_due(_record(expires=NOW), touch)  # idled out
    assert not touch_due(_record(absolute_expires=NOW), touch)  # at its hard end
    assert not touch_due(Record.tombstone(NOW + 100), touch)


def test_capped_expires_never_passes_the_absolute_end() -> None:
    assert capped_expires(NOW + 10, NOW + 20) == NOW + 10
    assert capped_expires(NOW + 30, NOW + 20) == NOW + 20


def test_decode_values_accepts_only_an_object_of_texts() -> None:
    assert decode_values('{"a": "1", "b": "[2]"}') == {"a": "1", "b": "[2]"}
    assert decode_values(b"{}") == {}
    for bad in ("not json", "[1]", '{"a": 1}', None):
        with pytest.raises(SessionDataCorrupt):
            decode_values(bad)
    with pytest.raises(SessionDataCorrupt, match="the item"):
        check_values({"a": None}, "the item")


def test_record_from_row_converts_types() -> None:
    row = ('{"a": "1"}', 1, 2, 3, 4, "u", 0, None)
    record = record_from_row(row)
    assert record == Record({"a": "1"}, 1.0, 2.0, 3.0, 4.0, "u", False, None)
    assert isinstance(record.created, float) and record.ended is False


# -- running a store ------------------------------------------------------------------------------


def test_process_guard_reports_a_fork_once(monkeypatch: pytest.MonkeyPatch) -> None:
    guard = ProcessGuard()
    assert not guard.forked()
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)
    assert guard.forked()
    assert not guard.forked()


@pytest.mark.parametrize(
    ("dead", "batch", "limit", "removed", "steps"),
    [
        (0, 10, None, 0, [10]),
        (25, 10, None, 25, [10, 10, 10]),
        (20, 10, None, 20, [10, 10, 10]),  # the last full step needs one more to see the end
        (25, 10, 15, 15, [10, 5]),
        (3, 10, 15, 3, [10]),
    ],
)
def test_clear_in_batches(
    dead: int, batch: int, limit: int | None, removed: int, steps: list[int]
) -> None:
    left = [dead]
    asked: list[int] = []

    def remove(size: int) -> int:
        asked.append(size)
        count = min(size, left[0])
        left[0] -= count
        return count

    assert clear_in_batches(remove, batch, limit) == removed
    assert asked == steps


def test_clear_in_batches_refuses_an_empty_batch() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        clear_in_batches(lambda size: 0, 0, None)


def test_keyset_pages_walks_every_row_once() -> None:
    rows = [(f"k{i:03}", i) for i in range(7)]
    reads: list[str] = []

    def read_page(after: str, size: int) -> list[tuple[str, int]]:
        reads.append(after)
        return [row for row in rows if row[0] > after][:size]

    assert list(keyset_pages(read_page, 3)) == rows
    assert reads == ["", "k002", "k005"]
    reads.clear()
    assert list(keyset_pages(read_page, 7)) == rows
    assert reads == ["", "k006"]  # a full page: one more read finds the end


def test_redact() -> None:
    url = urlsplit("redis://user:hunter2@host:6379/0?password=x&a=1")
    assert redact(url) == "redis://user:***@host:6379/0?password=x&a=1"
    assert redact(url, query=False) == "redis://user:***@host:6379/0"
    assert redact(urlsplit("redis://host")) == "redis://host"
    assert redact(urlsplit("redis://only-user@host")) == "redis://only-user@host"
    assert "p@ss" not in redact(urlsplit("postgresql://u:p%40ss@h/db"))


# -- URL options ----------------------------------------------------------------------------------

_OPTIONS = (
    Option("table", str, "t", "The table."),
    Option("timeout", float, 5.0, "Seconds.", minimum=0),
    Option("attempts", int, 3, "Tries.", minimum=1),
    Option("create", bool, True, "Create it."),
)


def test_parse_options_parses_declared_types() -> None:
    given, rest = parse_options("Test", "table=x&timeout=2.5&attempts=4&create=off", _OPTIONS)
    assert given == {"table": "x", "timeout": 2.5, "attempts": 4, "create": False}
    assert rest == {}
    assert parse_options("Test", "", _OPTIONS) == ({}, {})
    assert option_defaults(_OPTIONS) == {
        "table": "t",
        "timeout": 5.0,
        "attempts": 3,
        "create": True,
    }


@pytest.mark.parametrize("text", ["true", "1", "YES", "on"])
def test_booleans_true(text: str) -> None:
    assert parse_options("Test", f"create={text}", _OPTIONS)[0] == {"create": True}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("colour=red", "unknown Test option 'colour'; known: table, timeout, attempts, create"),
        ("timeout=soon", r"bad Test option timeout='soon': timeout must be a number"),
        ("timeout=-1", "timeout must be a number of at least 0"),
        ("timeout=nan", "timeout must be"),
        ("timeout=inf", "timeout must be"),
        ("attempts=1.5", r"attempts must be a number \(whole\) of at least 1"),
        ("attempts=0", "attempts must be"),
        ("create=maybe", "create must be true or false"),
        ("table=a&table=b", "Test option table is given twice"),
    ],
)
def test_parse_options_names_the_bad_option(query: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_options("Test", query, _OPTIONS)


def test_parse_options_hands_back_the_others() -> None:
    given, rest = parse_options(
        "Test", [("table", "x"), ("sslmode", "require")], _OPTIONS, others=True
    )
    assert given == {"table": "x"}
    assert rest == {"sslmode": "require"}
    with pytest.raises(ConfigurationError, match="given twice"):
        parse_options("Test", "a=1&a=2", _OPTIONS, others=True)


def test_option_documents_what_it_expects() -> None:
    assert Option("x", int, 0).expected() == "a number (whole)"
    assert Option("x", float, 0.0, minimum=0.5).expected() == "a number of at least 0.5"
    assert Option("x", str, "").expected() == "text"
    assert not math.isnan(Option("x", float, 0.0).parse("Test", "1e3"))


# -- the registry and Store.from_url --------------------------------------------------------------


class _PlainStore(MemoryStore):
    """A store whose from_url takes no configuration option."""

    @classmethod
    def from_url(cls, url: Any) -> _PlainStore:
        return cls()


class _PrefixStore(MemoryStore):
    """A store whose from_url takes key_prefix, as Redis and Memcached do."""

    @classmethod
    def from_url(cls, url: Any, key_prefix: str | None = None) -> _PrefixStore:
        store = cls()
        store.name = f"prefix {key_prefix}"
        return store


class _NoUrlStore(MemoryStore):
    from_url = Store.from_url  # type: ignore[assignment]


def test_registry_passes_only_declared_options() -> None:
    register_store("fss-test-plain", f"{__name__}:_PlainStore")
    register_store("fss-test-prefix", f"{__name__}:_PrefixStore")
    register_store("fss-test-nourl", f"{__name__}:_NoUrlStore")
    assert isinstance(store_from_url("fss-test-plain://"), _PlainStore)
    assert store_from_url("fss-test-prefix://", key_prefix="p:").name == "prefix p:"
    with pytest.raises(ConfigurationError, match="take none of SESSION_KEY_PREFIX"):
        store_from_url("fss-test-plain://", key_prefix="p:")
    with pytest.raises(ConfigurationError, match="take none of SESSION_SQL_CREATE_TABLE"):
        store_from_url("fss-test-prefix://", key_prefix="p:", create_table=False)
    with pytest.raises(ConfigurationError, match="cannot be built from a URL"):
        store_from_url("fss-test-nourl://")


def test_a_type_error_inside_from_url_is_not_taken_for_an_option() -> None:
    class Broken(MemoryStore):
        @classmethod
        def from_url(cls, url: Any) -> Broken:
            raise TypeError("unexpected keyword argument 'x' (a bug of the store)")

    globals()["_Broken"] = Broken
    register_store("fss-test-broken", f"{__name__}:_Broken")
    with pytest.raises(TypeError, match="a bug of the store"):
        store_from_url("fss-test-broken://")


# -- the compare-and-set base ---------------------------------------------------------------------


class _Racy(KeyValueStore):
    """A key-value store in a dict whose swaps fail ``lose`` times first, counting commands."""

    name = "racy"

    def __init__(self, lose: int = 0) -> None:
        self.items: dict[str, tuple[Record, int]] = {}
        self.lose = lose
        self.commands: list[str] = []
        self.times: list[float | None] = []

    def _get(self, key: str) -> Record | None:
        self.commands.append("get")
        entry = self.items.get(key)
        return None if entry is None else _copy(entry[0])

    def _gets(self, key: str) -> tuple[Record | None, Any]:
        self.commands.append("gets")
        entry = self.items.get(key)
        return (None, None) if entry is None else (_copy(entry[0]), entry[1])

    def _add(self, key: str, record: Record, now: float) -> bool:
        self.commands.append("add")
        if key in self.items:
            return False
        self.items[key] = (_copy(record), 0)
        return True

    def _cas(self, key: str, record: Record, token: Any, now: float, repeat: bool = True) -> bool:
        self.commands.append("cas")
        if self.lose:
            self.lose -= 1
            entry = self.items[key]
            self.items[key] = (entry[0], entry[1] + 1)  # another writer got in
            return False
        if key not in self.items or self.items[key][1] != token:
            return False
        self.items[key] = (_copy(record), token + 1)
        return True

    def _set(self, key: str, record: Record, now: float | None) -> None:
        self.commands.append("set")
        self.times.append(now)
        self.items[key] = (_copy(record), self.items.get(key, (record, 0))[1] + 1)

    def _remove(self, key: str) -> None:
        self.commands.append("remove")
        self.items.pop(key, None)

    def scan(self, now: float) -> Iterator[tuple[str, Record]]:
        return iter(())


def _copy(record: Record) -> Record:
    return Record(**{**record.__dict__, "values": dict(record.values)})


def _patch(**changes: Any) -> Patch:
    fields: dict[str, Any] = {"set": {"b": "2"}, "delete": (), "now": NOW, "expires": NOW + 50}
    fields.update(changes)
    return Patch(**fields)


def test_kv_round_trips() -> None:
    store = _Racy()
    assert store.create("k", _record())
    assert store.load("k") is not None
    assert store.load("k", Touch(NOW, NOW + 50, NOW - 10)) is not None  # due: gets + cas
    assert store.load("k", Touch(NOW, NOW + 50, NOW - 10)) is not None  # not due: gets
    assert store.patch("k", _patch())
    assert store.commands == ["add", "get", "gets", "cas", "gets", "gets", "cas"]
    assert store.items["k"][0].values == {"a": "1", "b": "2"}


def test_kv_patch_retries_lost_races_then_gives_up() -> None:
    store = _Racy(lose=2)
    store.create("k", _record())
    assert store.patch("k", _patch())
    assert store.commands.count("cas") == 3
    store = _Racy(lose=100)
    store.cas_attempts = 4
    store.create("k", _record())
    with pytest.raises(SessionStoreUnavailable, match="lost 4 compare-and-swap races"):
        store.patch("k", _patch())


def test_kv_rotation_is_add_then_swap() -> None:
    store = _Racy()
    store.create("old", _record())
    assert store.patch("old", _patch(new_key="new", tombstone_until=NOW + 30))
    assert store.commands[1:] == ["gets", "add", "cas"]
    assert store.items["old"][0].ended and store.items["new"][0].values["b"] == "2"


def test_kv_rotation_that_finds_the_session_ended_removes_its_copy() -> None:
    store = _Racy(lose=1)
    store.create("old", _record())

    original_cas = store._cas

    def cas_then_end(*args: Any, **kwargs: Any) -> bool:
        result = original_cas(*args, **kwargs)
        if not result:  # the other writer ended the session meanwhile
            store.items["old"] = (Record.tombstone(NOW + 30), 99)
        return result

    store._cas = cas_then_end  # type: ignore[method-assign]
    assert not store.patch("old", _patch(new_key="new", tombstone_until=NOW + 30))
    assert "new" not in store.items
    assert store.commands[1:] == ["gets", "add", "cas", "gets", "remove"]


def test_kv_rotation_never_overwrites_a_taken_key() -> None:
    store = _Racy()
    store.create("old", _record())
    store.create("new", _record(values={"other": "1"}))
    with pytest.raises(SessionStoreUnavailable, match="already exists"):
        store.patch("old", _patch(new_key="new", tombstone_until=NOW + 30))
    assert store.items["new"][0].values == {"other": "1"}


def test_kv_delete_leaves_a_tombstone_without_a_time() -> None:
    store = _Racy()
    store.delete("k", tombstone_until=NOW + 30)
    assert store.items["k"][0].ended and store.times == [None]
    store.delete("k")
    assert "k" not in store.items
