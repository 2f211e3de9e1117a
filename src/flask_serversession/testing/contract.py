"""The store contract, checked on a store alone: create, load, patch, touch, delete, expiry."""

from __future__ import annotations

import dataclasses
import threading
from functools import partial

import pytest

from ..errors import UnsupportedOperation
from ..ids import new_session_id, store_key
from ..serialization import dumps_value
from ..stores import Patch, Record, Store, Touch, values_size
from .doubles import HOUR, T0, run_in_threads


def _record(
    values: dict[str, str] | None = None,
    now: float = T0,
    idle: float = HOUR,
    absolute: float = 24 * HOUR,
    user_id: str | None = None,
) -> Record:
    return Record(
        values={"user": '"alice"'} if values is None else values,
        created=now,
        last_seen=now,
        expires=now + idle,
        absolute_expires=now + absolute,
        user_id=user_id,
    )


def _key() -> str:
    return store_key(new_session_id())


def _gone(store: Store, key: str, now: float) -> bool:
    """Nothing live under ``key``: no record, a tombstone, or an expired record."""
    record = store.load(key)
    return record is None or not record.is_live(now)


def _ended(store: Store, key: str) -> bool:
    """A tombstone under ``key``."""
    record = store.load(key)
    return record is not None and record.ended and not record.values


class StoreContract:
    """The ``test_store_*`` tests of :class:`StoreConformance` but the user index's."""

    def test_store_create_then_load(self, store: Store) -> None:
        key = _key()
        record = _record({"user": '"alice"', "cart": "[1,2,3]"}, user_id="u1")
        assert store.create(key, record)
        assert store.load(key) == record
        assert store.load(_key()) is None

    def test_store_create_refuses_existing_key(self, store: Store) -> None:
        key = _key()
        assert store.create(key, _record({"a": "1"}))
        assert not store.create(key, _record({"a": "2"}))
        loaded = store.load(key)
        assert loaded is not None and loaded.values == {"a": "1"}

    def test_store_keeps_text_exactly(self, store: Store) -> None:
        values = {
            "quotes": dumps_value("q", 'say "hi" \\ and \n newline'),
            "null": "null",
            "unicode": dumps_value("u", "żółw 🐢 \u2028"),
            "nested": dumps_value("n", {"a": [1, {"b": None}], "c": (1, 2)}),
            "big": dumps_value("big", "x" * 300_000),
            "weird name \" ' . $ {}": "1",
        }
        key = _key()
        assert store.create(key, _record(values))
        loaded = store.load(key)
        assert loaded is not None and loaded.values == values

    def test_store_patch_merges_and_deletes(self, store: Store) -> None:
        key = _key()
        store.create(key, _record({"a": "1", "b": "2", "c": "3"}))
        patch = Patch({"b": "20", "d": "null"}, ["c", "missing"], T0 + 10, T0 + 10 + HOUR)
        assert store.patch(key, patch)
        loaded = store.load(key)
        assert loaded is not None
        assert loaded.values == {"a": "1", "b": "20", "d": "null"}
        assert loaded.last_seen == T0 + 10
        assert loaded.expires == T0 + 10 + HOUR
        assert loaded.created == T0

    def test_store_patch_never_creates(self, store: Store) -> None:
        key = _key()
        assert not store.patch(key, Patch({"a": "1"}, (), T0, T0 + HOUR))
        assert store.load(key) is None

    def test_store_patch_refuses_expired_records(self, store: Store) -> None:
        idle, absolute = _key(), _key()
        store.create(idle, _record(idle=10))
        store.create(absolute, _record(idle=HOUR, absolute=20))
        for key, now in ((idle, T0 + 10), (absolute, T0 + 25)):
            assert not store.patch(key, Patch({"a": "1"}, (), now, now + HOUR))
            loaded = store.load(key)
            assert loaded is None or (not loaded.is_live(now) and "a" not in loaded.values)

    def test_store_patch_caps_expiry_at_absolute(self, store: Store) -> None:
        key = _key()
        store.create(key, _record(idle=HOUR, absolute=2 * HOUR))
        assert store.patch(key, Patch({}, (), T0 + HOUR / 2, T0 + 5 * HOUR))
        loaded = store.load(key)
        assert loaded is not None and loaded.expires == T0 + 2 * HOUR

    def test_store_patch_moves_to_new_key(self, store: Store) -> None:
        old, new = _key(), _key()
        store.create(old, _record({"a": "1", "b": "2"}))
        patch = Patch({"b": "3"}, ["a"], T0 + 1, T0 + HOUR, new_key=new, tombstone_until=T0 + 60)
        assert store.patch(old, patch)
        assert _ended(store, old)
        loaded = store.load(new)
        assert loaded is not None and loaded.values == {"b": "3"} and not loaded.ended
        assert not store.patch(old, Patch({"c": "1"}, (), T0 + 2, T0 + HOUR))
        assert _ended(store, old)
        assert store.clear_expired(T0 + 61) == (1 if store.capabilities.clear_expired else 0)

    def test_store_patch_sets_and_clears_user(self, store: Store) -> None:
        key = _key()
        store.create(key, _record())
        assert store.patch(key, Patch({}, (), T0, T0 + HOUR, user_id="42"))
        loaded = store.load(key)
        assert loaded is not None and loaded.user_id == "42"
        assert store.patch(key, Patch({}, (), T0, T0 + HOUR))
        loaded = store.load(key)
        assert loaded is not None and loaded.user_id == "42"
        assert store.patch(key, Patch({}, (), T0, T0 + HOUR, user_id=""))
        loaded = store.load(key)
        assert loaded is not None and loaded.user_id is None

    def test_store_patch_max_size_refuses_too_large(self, store: Store) -> None:
        """A patch that would leave more than ``max_size`` bytes of values changes nothing."""
        key = _key()
        record = _record({"a": dumps_value("a", "x" * 96), "b": "1"}, user_id="u1")
        store.create(key, record)
        assert values_size(record.values) == 1 + 98 + 1 + 1
        later = T0 + 10
        too_large = Patch({"c": "12"}, (), later, later + HOUR, info='{"x":1}', max_size=103)
        assert not store.patch(key, too_large)  # 101 + 3 bytes
        assert store.load(key) == record  # not a value, not the expiry, not the info
        moved = _key()
        move = Patch({"c": "12"}, (), later, later + HOUR, new_key=moved, max_size=103)
        assert not store.patch(key, dataclasses.replace(move, tombstone_until=later + 60))
        assert store.load(key) == record  # still live under its key
        assert store.load(moved) is None

    def test_store_patch_max_size_applies_at_the_limit(self, store: Store) -> None:
        key = _key()
        store.create(key, _record({"a": '"xyz"'}))  # 1 + 5 bytes
        # A value replaced counts once, as it is after the patch.
        assert store.patch(key, Patch({"a": '"wxyz"'}, (), T0 + 1, T0 + HOUR, max_size=7))
        assert not store.patch(key, Patch({"b": "1"}, (), T0 + 2, T0 + HOUR, max_size=8))
        assert store.patch(key, Patch({"b": "1"}, (), T0 + 3, T0 + HOUR, max_size=9))
        loaded = store.load(key)
        assert loaded is not None and loaded.values == {"a": '"wxyz"', "b": "1"}
        assert loaded.last_seen == T0 + 3
        assert store.patch(key, Patch({}, (), T0 + 4, T0 + HOUR, max_size=9))
        assert not store.patch(key, Patch({}, (), T0 + 5, T0 + HOUR, max_size=8))
        moved = _key()
        move = Patch({"c": "1"}, (), T0 + 6, T0 + HOUR, new_key=moved, tombstone_until=T0 + 60)
        assert store.patch(key, dataclasses.replace(move, max_size=11))
        assert _ended(store, key)
        loaded = store.load(moved)
        assert loaded is not None and values_size(loaded.values) == 11

    def test_store_patch_max_size_counts_deletes(self, store: Store) -> None:
        """The size is the record's after the deletes too: a patch that frees enough room
        applies even to a record that is over the limit (one lowered since it was written)."""
        key = _key()
        store.create(key, _record({"big": dumps_value("big", "x" * 50), "small": "1"}))
        shrink = Patch({"new": "12"}, ["big", "missing"], T0 + 1, T0 + HOUR, max_size=11)
        assert store.patch(key, shrink)  # 6 + 5 bytes left
        loaded = store.load(key)
        assert loaded is not None and loaded.values == {"small": "1", "new": "12"}
        assert not store.patch(key, Patch({"x": "123"}, ["small"], T0 + 2, T0 + HOUR, max_size=8))
        loaded = store.load(key)
        assert loaded is not None and loaded.values == {"small": "1", "new": "12"}
        assert store.patch(key, Patch({"x": "12"}, ["small"], T0 + 3, T0 + HOUR, max_size=8))
        loaded = store.load(key)
        assert loaded is not None and loaded.values == {"new": "12", "x": "12"}

    def test_store_patch_max_keys(self, store: Store) -> None:
        """A patch with ``max_keys`` applies only if the record it leaves holds at most that
        many values, counting what it replaces once and what it deletes as gone; refused, it
        changes nothing. A move to a new key is held to it too."""
        key = _key()
        store.create(key, _record({"a": "1", "b": "2"}))
        assert store.patch(key, Patch({"a": "3", "c": "4"}, (), T0 + 1, T0 + HOUR, max_keys=3))
        assert not store.patch(key, Patch({"d": "5"}, (), T0 + 2, T0 + HOUR, max_keys=3))
        assert not store.patch(key, Patch({}, (), T0 + 2, T0 + HOUR, max_keys=2))
        loaded = store.load(key)
        assert loaded is not None and loaded.values == {"a": "3", "b": "2", "c": "4"}
        assert loaded.last_seen == T0 + 1
        swap = Patch({"d": "5"}, ["a", "missing"], T0 + 3, T0 + HOUR, max_keys=3)
        assert store.patch(key, swap)
        loaded = store.load(key)
        assert loaded is not None and loaded.values == {"b": "2", "c": "4", "d": "5"}
        moved = _key()
        move = Patch({"e": "6"}, (), T0 + 4, T0 + HOUR, new_key=moved, tombstone_until=T0 + 60)
        assert not store.patch(key, dataclasses.replace(move, max_keys=3))
        assert store.patch(key, dataclasses.replace(move, max_keys=4))
        loaded = store.load(moved)
        assert loaded is not None and len(loaded.values) == 4

    def test_store_patch_max_size_counts_utf8_bytes(self, store: Store) -> None:
        """Names count in UTF-8 bytes, not characters, both set by the patch and stored."""
        key = _key()
        store.create(key, _record({}))
        name = "żółw🐢"  # 5 characters, 2 + 2 + 2 + 1 + 4 = 11 bytes
        value = dumps_value(name, "ł")  # ASCII JSON: '"\u0142"', 8 bytes
        assert not store.patch(key, Patch({name: value}, (), T0 + 1, T0 + HOUR, max_size=18))
        assert store.patch(key, Patch({name: value}, (), T0 + 2, T0 + HOUR, max_size=19))
        assert not store.patch(key, Patch({"ą": "1"}, (), T0 + 3, T0 + HOUR, max_size=21))
        assert store.patch(key, Patch({"ą": "1"}, (), T0 + 4, T0 + HOUR, max_size=22))
        loaded = store.load(key)
        assert loaded is not None and loaded.values == {name: value, "ą": "1"}
        assert values_size(loaded.values) == 22

    def test_store_touch_when_due(self, store: Store) -> None:
        key = _key()
        store.create(key, _record(idle=HOUR, absolute=HOUR + 100))
        now = T0 + 120
        before = store.load(key, Touch(now, now + HOUR, if_seen_before=now - 60))
        assert before is not None and before.last_seen == T0  # returned as read
        after = store.load(key)
        assert after is not None
        assert after.last_seen == now
        assert after.expires == T0 + HOUR + 100  # capped by the absolute expiry

    def test_store_touch_not_due(self, store: Store) -> None:
        key = _key()
        store.create(key, _record())
        now = T0 + 30
        store.load(key, Touch(now, now + HOUR, if_seen_before=now - 60))
        after = store.load(key)
        assert after is not None and after.last_seen == T0 and after.expires == T0 + HOUR

    def test_store_touch_gives_sessions_of_no_user_their_own_expiry(self, store: Store) -> None:
        """A touch with ``anonymous_expires`` sets it on a record bound to no user, and
        ``expires`` on a bound one (SESSION_ANONYMOUS_IDLE_TIMEOUT), both capped as ever."""
        anonymous, bound, short = _key(), _key(), _key()
        store.create(anonymous, _record(idle=HOUR))
        store.create(bound, _record(idle=HOUR, user_id="alice"))
        store.create(short, _record(idle=HOUR, absolute=200))
        now = T0 + 120
        for key in (anonymous, bound, short):
            store.load(key, Touch(now, now + HOUR, now - 60, anonymous_expires=now + 300))
        expiries = [getattr(store.load(key), "expires", None) for key in (anonymous, bound, short)]
        assert expiries == [now + 300, now + HOUR, T0 + 200]

    def test_store_touch_never_revives(self, store: Store) -> None:
        key = _key()
        store.create(key, _record(idle=10))
        now = T0 + 11
        store.load(key, Touch(now, now + HOUR, if_seen_before=now))
        after = store.load(key)
        assert after is None or not after.is_live(now)

    def test_store_delete(self, store: Store) -> None:
        key, other = _key(), _key()
        store.create(key, _record())
        store.create(other, _record())
        store.delete(key)
        store.delete(key)  # absent: no error
        assert store.load(key) is None
        assert store.load(other) is not None

    def test_store_delete_leaves_tombstone(self, store: Store) -> None:
        key, never = _key(), _key()
        store.create(key, _record({"user": '"alice"'}))
        store.delete(key, tombstone_until=T0 + 600)
        store.delete(never, tombstone_until=T0 + 600)
        for dead in (key, never):
            assert _ended(store, dead)
            assert not store.patch(dead, Patch({"a": "1"}, (), T0 + 1, T0 + HOUR))
            store.load(dead, Touch(T0 + 2, T0 + HOUR, if_seen_before=T0 + 2))
            assert _ended(store, dead)
        assert not store.create(key, _record())  # a tombstone's key is taken
        if store.capabilities.clear_expired:
            assert store.clear_expired(T0 + 599) == 0
            assert store.clear_expired(T0 + 601) == 2
            assert store.load(key) is None

    def test_store_clear_expired(self, store: Store) -> None:
        live = [_key() for _ in range(5)]
        idle = [_key() for _ in range(7)]
        absolute = [_key() for _ in range(6)]
        for key in live:
            store.create(key, _record(idle=HOUR))
        for key in idle:
            store.create(key, _record(idle=10))
        for key in absolute:
            store.create(key, _record(idle=HOUR, absolute=20))
        # Refreshed idle expiry does not outlive the absolute one.
        for key in absolute:
            store.patch(key, Patch({}, (), T0 + 5, T0 + 5 + HOUR))
        now = T0 + 30
        removed = store.clear_expired(now, batch_size=2)
        if not store.capabilities.clear_expired:
            assert removed == 0  # native expiry does the work
        else:
            assert removed == len(idle) + len(absolute)
            for key in idle + absolute:
                assert store.load(key) is None
        for key in live:
            assert store.load(key) is not None

    def test_store_clear_expired_limit(self, store: Store) -> None:
        for _ in range(10):
            store.create(_key(), _record(idle=1))
        if not store.capabilities.clear_expired:
            # Native expiry does the work; clear_expired must do nothing, and say so.
            assert store.clear_expired(T0 + 5, batch_size=3, limit=4) == 0
            return
        assert store.clear_expired(T0 + 5, batch_size=3, limit=4) == 4
        assert store.clear_expired(T0 + 5, batch_size=3) == 6

    def test_store_concurrent_patches_all_land(self, store: Store) -> None:
        key = _key()
        store.create(key, _record({}))
        threads, per_thread = 8, 25
        barrier = threading.Barrier(threads)

        def writer(n: int) -> None:
            barrier.wait(timeout=10)
            for i in range(per_thread):
                store.patch(key, Patch({f"t{n}-{i}": str(i)}, (), T0 + 1, T0 + HOUR))

        assert not run_in_threads(partial(writer, n) for n in range(threads))
        loaded = store.load(key)
        assert loaded is not None
        assert len(loaded.values) == threads * per_thread

    def test_store_keeps_info(self, store: Store) -> None:
        key = _key()
        record = _record()
        record.info = '{"ip":"203.0.113.9","ua":"Firefox"}'
        store.create(key, record)
        loaded = store.load(key)
        assert loaded is not None and loaded.info == record.info
        assert store.patch(key, Patch({"a": "1"}, (), T0 + 1, T0 + HOUR))
        loaded = store.load(key)
        assert loaded is not None and loaded.info == record.info
        assert store.patch(key, Patch({}, (), T0 + 2, T0 + HOUR, info='{"ip":"::1"}'))
        loaded = store.load(key)
        assert loaded is not None and loaded.info == '{"ip":"::1"}'

    def test_store_sessions_of_user(self, store: Store) -> None:
        if not store.capabilities.by_user:
            with pytest.raises(UnsupportedOperation):
                store.sessions_of("u1", T0)
            return
        live = [_key() for _ in range(3)]
        for key in live:
            store.create(key, _record(user_id="u1"))
        expired, ended, unbound, other, anonymous = (_key() for _ in range(5))
        store.create(expired, _record(user_id="u1", idle=10))
        store.create(ended, _record(user_id="u1"))
        store.delete(ended, tombstone_until=T0 + 600)
        store.create(unbound, _record(user_id="u1"))
        assert store.patch(unbound, Patch({}, (), T0 + 1, T0 + HOUR, user_id=""))
        store.create(other, _record(user_id="u2"))
        store.create(anonymous, _record())
        moved = _key()
        assert store.patch(
            live[0], Patch({}, (), T0 + 1, T0 + HOUR, new_key=moved, tombstone_until=T0 + 60)
        )
        found = store.sessions_of("u1", T0 + 20)
        assert sorted(key for key, _ in found) == sorted([moved, *live[1:]])
        assert all(record.user_id == "u1" and not record.ended for _, record in found)
        assert [key for key, _ in store.sessions_of("u2", T0 + 20)] == [other]
        assert store.sessions_of("nobody", T0 + 20) == []

    def test_store_scan(self, store: Store) -> None:
        if not store.capabilities.scan:
            with pytest.raises(UnsupportedOperation):
                list(store.scan(T0))
            return
        live = {_key() for _ in range(1200)} if store.capabilities.clear_expired else set()
        live |= {_key() for _ in range(30)}
        for key in live:
            store.create(key, _record({"n": "1"}))
        for _ in range(5):
            store.create(_key(), _record(idle=10))
        dead = _key()
        store.create(dead, _record())
        store.delete(dead, tombstone_until=T0 + 600)
        seen = [key for key, _ in store.scan(T0 + 20)]
        assert sorted(seen) == sorted(live)
