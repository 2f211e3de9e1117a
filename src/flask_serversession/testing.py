"""The conformance suite every store passes: the contract, and the behaviour a user sees.

Use it for your own store (it needs pytest)::

    from flask_serversession.testing import StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        def store(self) -> Iterator[Store]:
            store = MyStore(...)   # a fresh, empty store, on a real server
            yield store
            store.close()

The inherited tests check the store contract directly (``test_store_*``) and the whole
library on top of the store through Flask's test client, as a browser sees it (``test_app_*``):
cookies, round trips per request, expiry, regeneration, logout, concurrent writers.

:class:`CountingStore` wraps any store and counts its calls; the round-trip budget is tested
with it. :class:`PausingStore` pauses any store between its calls, for the user-index
interleavings (``test_store_user_index_*``); a store that takes several steps inside one call
overrides :meth:`StoreConformance.stepped` to pause between those too.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime, timezone
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient
from markupsafe import Markup

from .errors import (
    InvalidUserId,
    ServerSessionError,
    SessionDataError,
    SessionTooLarge,
    SessionTooManyKeys,
    UnsupportedOperation,
)
from .extension import ServerSession
from .ids import new_session_id, store_key
from .interface import ServerSessionInterface
from .serialization import dumps_value, loads_value
from .session import ServerSideSession
from .stores import Patch, Record, Store, Touch, values_size

__all__ = ["CountingStore", "PausingStore", "StoreConformance", "make_app"]

HOUR = 3600.0
T0 = 1_800_000_000.0  # a fixed "now" for store tests, in 2027


class CountingStore(Store):
    """Wraps a store and counts calls per method in :attr:`calls`; :attr:`log` lists every
    ``(method, key)`` in order."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()
        self.log: list[tuple[str, str]] = []
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.name = inner.name

    def _count(self, method: str, key: str) -> None:
        self.calls[method] += 1
        self.log.append((method, key))

    def load(self, key: str, touch: Touch | None = None) -> Record | None:
        self._count("load", key)
        return self.inner.load(key, touch)

    def create(self, key: str, record: Record) -> bool:
        self._count("create", key)
        return self.inner.create(key, record)

    def patch(self, key: str, patch: Patch) -> bool:
        self._count("patch", key)
        return self.inner.patch(key, patch)

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        self._count("delete", key)
        self.inner.delete(key, tombstone_until)

    def sessions_of(self, user_id: str, now: float) -> list[tuple[str, Record]]:
        self.calls["sessions_of"] += 1
        return self.inner.sessions_of(user_id, now)

    def scan(self, now: float) -> Iterator[tuple[str, Record]]:
        self.calls["scan"] += 1
        return self.inner.scan(now)

    def clear_expired(self, now: float, batch_size: int = 1000, limit: int | None = None) -> int:
        self.calls["clear_expired"] += 1
        return self.inner.clear_expired(now, batch_size, limit)

    def close(self) -> None:
        self.inner.close()

    @property
    def total(self) -> int:
        """All calls except cleanup, which runs after the response."""
        return sum(n for name, n in self.calls.items() if name != "clear_expired")


class PausingStore(Store):
    """Wraps a store and calls ``at(point)`` before and after each of its calls: the points
    where another client's calls can fall between this client's, for a store whose every
    method is one atomic step. (A store whose methods take several steps says where, see
    :meth:`StoreConformance.stepped`.)"""

    def __init__(self, inner: Store, at: Callable[[str], None]) -> None:
        self.inner = inner
        self.at = at
        self.capabilities = inner.capabilities  # type: ignore[misc]
        self.name = inner.name

    def _call(self, method: str, call: Callable[[], Any]) -> Any:
        self.at(f"before {method}")
        result = call()
        self.at(f"after {method}")
        return result

    def load(self, key: str, touch: Touch | None = None) -> Record | None:
        result: Record | None = self._call("load", lambda: self.inner.load(key, touch))
        return result

    def create(self, key: str, record: Record) -> bool:
        return bool(self._call("create", lambda: self.inner.create(key, record)))

    def patch(self, key: str, patch: Patch) -> bool:
        return bool(self._call("patch", lambda: self.inner.patch(key, patch)))

    def delete(self, key: str, tombstone_until: float | None = None) -> None:
        self._call("delete", lambda: self.inner.delete(key, tombstone_until))

    def sessions_of(self, user_id: str, now: float) -> list[tuple[str, Record]]:
        found: list[tuple[str, Record]] = self._call(
            "sessions_of", lambda: self.inner.sessions_of(user_id, now)
        )
        return found

    def scan(self, now: float) -> Iterator[tuple[str, Record]]:
        return self.inner.scan(now)

    def clear_expired(self, now: float, batch_size: int = 1000, limit: int | None = None) -> int:
        return self.inner.clear_expired(now, batch_size, limit)

    def close(self) -> None:
        self.inner.close()


class Clock:
    """A settable clock for the session interface."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_app(store: Store, **options: Any) -> Flask:
    """A Flask app on ``store`` with views that each do one kind of thing to the session.

    ``/none`` never touches it; ``/get/<k>`` reads; ``/set/<k>/<v>`` assigns without reading;
    ``/rw/<k>/<v>`` reads then assigns; ``/append/<k>/<v>`` appends to a list in place;
    ``/pop/<k>``; ``/regenerate``; ``/destroy``; ``/permanent``; ``/dump`` returns every value.
    """
    app = Flask(__name__)
    app.testing = True  # errors at save reach the test instead of becoming a 500
    app.secret_key = "conformance-secret"
    options.setdefault("cleanup_interval", 0)
    extension = ServerSession(app, store=store, **options)

    @app.get("/none")
    def none() -> str:
        return "none"

    @app.get("/get/<k>")
    def get(k: str) -> str:
        return repr(session.get(k))

    @app.get("/set/<k>/<v>")
    def set_(k: str, v: str) -> str:
        session[k] = v
        return "set"

    @app.get("/rw/<k>/<v>")
    def rw(k: str, v: str) -> str:
        old = session.get(k)
        session[k] = v
        return repr(old)

    @app.get("/append/<k>/<v>")
    def append(k: str, v: str) -> str:
        session[k].append(v)
        return "appended"

    @app.get("/pop/<k>")
    def pop(k: str) -> str:
        return repr(session.pop(k, None))

    @app.get("/regenerate")
    def regenerate() -> str:
        assert isinstance(session, ServerSideSession)
        session.regenerate()
        return "regenerated"

    @app.get("/destroy")
    def destroy() -> str:
        assert isinstance(session, ServerSideSession)
        session.destroy()
        return "destroyed"

    @app.get("/permanent")
    def permanent() -> str:
        session.permanent = True
        return "permanent"

    @app.get("/dump")
    def dump() -> dict[str, str]:
        return {key: repr(value) for key, value in session.items()}

    @app.get("/login/<user>")
    def login(user: str) -> str:
        assert isinstance(session, ServerSideSession)
        session.login(user)
        return "logged in"

    @app.get("/logout")
    def logout() -> str:
        assert isinstance(session, ServerSideSession)
        session.logout()
        return "logged out"

    @app.get("/whoami")
    def whoami() -> dict[str, Any]:
        assert isinstance(session, ServerSideSession)
        auth = session.authenticated_at
        return {
            "user": session.user_id,
            "handle": session.handle,
            "auth": None if auth is None else auth.timestamp(),
        }

    @app.get("/logout-others")
    def logout_others() -> str:
        assert isinstance(session, ServerSideSession) and session.user_id is not None
        ended = extension.revoke_user(session.user_id, keep=session.handle)
        return str(ended)

    return app


def _interface(app: Flask) -> ServerSessionInterface:
    interface = app.session_interface
    assert isinstance(interface, ServerSessionInterface)
    return interface


def _cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("session")
    return None if cookie is None else cookie.value


def _in_parallel(app: Flask, cookie: str, *paths: str) -> list[Any]:
    """GET each of ``paths`` with the session ``cookie``, each from its own client and thread,
    all at once; the status codes (or the library error a request raised) in the order the
    requests ended."""
    outcomes: list[Any] = []

    def request(path: str) -> None:
        client = app.test_client()
        client.set_cookie("session", cookie)
        try:
            outcomes.append(client.get(path).status_code)
        except ServerSessionError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=request, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


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


def _manager(store: Store, now: float) -> Any:
    """The management API (``revoke_user`` as "log out everywhere" calls it) on ``store``, its
    clock stopped at ``now``."""
    app = make_app(store)
    _interface(app).clock = lambda: now
    return ServerSession.manager(app)


def _with_pause(
    run: Callable[[], object],
    set_at: Callable[[Callable[[str], None]], None],
    target: int,
    interfere: Callable[[], object],
) -> str | None:
    """Run ``run`` in a thread that stops at its ``target``-th pause point (from 0) while
    ``interfere`` runs to its end, then finishes. ``target`` -1: ``interfere`` runs first.
    The point it paused at (``"start"`` for -1), or ``None`` if it had fewer points
    (``interfere`` then ran after it ended)."""
    if target < 0:
        interfere()
        run()
        return "start"
    reached, resume = threading.Event(), threading.Event()
    seen: list[str] = []
    errors: list[BaseException] = []

    def at(point: str) -> None:
        seen.append(point)
        if len(seen) == target + 1:
            reached.set()
            resume.wait(timeout=30)

    def work() -> None:
        try:
            run()
        except BaseException as exc:  # raised below, in the test's thread
            errors.append(exc)
        finally:
            reached.set()  # no such point: interfere runs after

    set_at(at)
    worker = threading.Thread(target=work)
    worker.start()
    try:
        assert reached.wait(timeout=30), "the operation neither paused nor ended"
        interfere()
    finally:
        resume.set()
        worker.join(timeout=30)
        set_at(lambda point: None)
    if errors:
        raise errors[0]
    return seen[target] if len(seen) > target else None


#: The roles of the sessions each interleaving schedule starts with, or creates.
_INDEX_ROLES = ("anonymous2", "theirs", "mine", "regenerated", "expiring", "returning")

#: Each operation on the user index, and the operations run while it is paused.
_INDEX_OPS: dict[str, tuple[str, ...]] = {
    "login (new session)": ("list", "revoke", "expire"),
    "login (new ID)": ("list", "revoke", "expire"),
    "bind in place": ("list", "revoke", "expire"),
    "rebind from another user": ("list", "revoke"),
    "rebind back to the user": ("list", "revoke", "expire"),
    "regenerate a bound session": ("list", "revoke", "expire"),
    "list": ("login (new session)", "login (new ID)", "rebind back to the user", "revoke"),
    "revoke": ("login (new session)", "login (new ID)", "rebind back to the user"),
}


def _index_op(
    op: str, store: Store, user: str, keys: dict[str, str], extra: list[str], now: float
) -> None:
    """One operation of the interleaving schedules, on the sessions of ``keys``; a login logs
    in a session of its own, its key added to ``extra``."""
    later = now + HOUR
    if op == "login (new session)":
        key = _key()
        extra.append(key)
        assert store.create(key, _record(now=now, user_id=user))
    elif op == "login (new ID)":
        anonymous, key = _key(), _key()
        extra.append(key)
        assert store.create(anonymous, _record(now=now))
        move = Patch({}, (), now, later, new_key=key, tombstone_until=now + 60, user_id=user)
        assert store.patch(anonymous, move)
    elif op == "bind in place":
        assert store.patch(keys["anonymous2"], Patch({}, (), now, later, user_id=user))
    elif op == "rebind from another user":
        assert store.patch(keys["theirs"], Patch({}, (), now, later, user_id=user))
    elif op == "rebind back to the user":
        # Indexed under the user long ago, with an expiry since passed, then bound to another
        # user: the old entry is stale until this bind makes it current again.
        store.patch(keys["returning"], Patch({}, (), now, later, user_id=user))
    elif op == "regenerate a bound session":
        move = Patch({}, (), now, later, new_key=keys["regenerated"], tombstone_until=now + 60)
        store.patch(keys["mine"], move)  # refused if a revocation ended it first
    elif op == "list":
        store.sessions_of(user, now)
    elif op == "revoke":
        _manager(store, now).revoke_user(user)
    else:
        assert op == "expire", op
        store.clear_expired(now)  # the session that expired at T0 + 10; Redis' own expiry
        store.sessions_of(user, now)  # and the listing that then prunes it from the index


def _bound_outside_index(
    store: Store, user: str, keys: list[str], now: float
) -> tuple[list[str], list[str]]:
    """The live sessions of ``user`` among ``keys`` that ``sessions_of`` misses, and those that
    "log out everywhere" (``revoke_user``) leaves live."""
    listed = {key for key, _ in store.sessions_of(user, now)}
    bound = []
    for key in keys:
        record = store.load(key)
        if record is not None and record.is_live(now) and record.user_id == user:
            bound.append(key)
    _manager(store, now).revoke_user(user)
    return [key for key in bound if key not in listed], [
        key for key in bound if not _gone(store, key, now)
    ]


class StoreConformance:
    """Every behaviour a store must have. Subclass it and provide a ``store`` fixture."""

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        raise NotImplementedError("subclasses provide a fresh, empty store")

    @pytest.fixture
    def clock(self) -> Clock:
        return Clock()

    def stepped(self, store: Store, at: Callable[[str], None]) -> Store:
        """``store`` (the same sessions, another client) calling ``at(point)`` at each point
        where another client's calls can fall between its own steps: by default before and
        after each call. Override it for a store whose methods take several steps (a write to
        an index, then to the session) to pause between those too."""
        return PausingStore(store, at)

    @pytest.fixture
    def counting(self, store: Store) -> CountingStore:
        return CountingStore(store)

    @pytest.fixture
    def app(self, counting: CountingStore, clock: Clock) -> Flask:
        app = make_app(counting, idle_timeout=HOUR, absolute_timeout=24 * HOUR)
        _interface(app).clock = clock
        return app

    @pytest.fixture
    def client(self, app: Flask) -> FlaskClient:
        return app.test_client()

    # -- the store contract ------------------------------------------------------------------------

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
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                barrier.wait(timeout=10)
                for i in range(per_thread):
                    store.patch(key, Patch({f"t{n}-{i}": str(i)}, (), T0 + 1, T0 + HOUR))
            except BaseException as exc:  # reported below
                errors.append(exc)

        workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=60)
        assert not errors
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

    def test_store_user_index_under_interleavings(self, store: Store) -> None:
        """No interleaving of a login, a listing, "log out everywhere" and expiry leaves a live
        session bound to a user outside that user's index. Each operation is paused at each
        of its points (:meth:`stepped`) while another runs to its end; after each schedule,
        every live session of the user is listed, and ``revoke_user`` ends it."""
        if not store.capabilities.by_user:
            return
        now = T0 + 20
        hook: list[Callable[[str], None]] = [lambda point: None]
        stepped = self.stepped(store, lambda point: hook[0](point))
        escapes: list[str] = []
        schedules = paused = 0
        for op_name in _INDEX_OPS:
            for interference in _INDEX_OPS[op_name]:
                target = -1
                while True:
                    schedules += 1
                    n = schedules
                    user, other = f"user-{n}", f"other-{n}"
                    keys = {role: _key() for role in _INDEX_ROLES}
                    store.create(keys["anonymous2"], _record(now=now))
                    store.create(keys["theirs"], _record(now=now, user_id=other))
                    store.create(keys["mine"], _record(now=now, user_id=user))
                    # Expired at ``now``: a listing may prune it while a login is under way.
                    store.create(keys["expiring"], _record(now=T0, idle=10, user_id=user))
                    # Live, bound to another user, indexed under this one with an expiry that
                    # has passed: an entry a listing prunes, unless it is bound back meanwhile.
                    returning = keys["returning"]
                    store.create(returning, _record(now=T0, idle=10, user_id=user))
                    store.patch(returning, Patch({}, (), T0 + 5, T0 + 5 + HOUR))
                    store.patch(returning, Patch({}, (), T0 + 6, T0 + HOUR, user_id=other))
                    extra: list[str] = []

                    def run(
                        op: str = op_name,
                        user: str = user,
                        keys: dict[str, str] = keys,
                        extra: list[str] = extra,
                    ) -> None:
                        _index_op(op, stepped, user, keys, extra, now)

                    def interfere(
                        op: str = interference,
                        user: str = user,
                        keys: dict[str, str] = keys,
                        extra: list[str] = extra,
                    ) -> None:
                        _index_op(op, store, user, keys, extra, now)

                    point = _with_pause(run, lambda at: hook.__setitem__(0, at), target, interfere)
                    if target < 0:
                        label = f"{op_name}, {interference} before it"
                    elif point is None:
                        label = f"{op_name}, {interference} after it"
                    else:
                        label = f"{op_name}, {interference} at {point}"
                        paused += 1
                    missed, survived = _bound_outside_index(
                        store, user, [*keys.values(), *extra], now
                    )
                    if missed or survived:
                        escapes.append(f"{label}: {len(missed)} unlisted, {len(survived)} kept")
                    if point is None:
                        break
                    target += 1
        print(
            f"{schedules} schedules ({paused} inside an operation), {len(escapes)} left a"
            " bound session outside the index"
        )
        assert paused, "the operations were never paused: see stepped()"
        assert not escapes, escapes

    def test_store_user_index_under_concurrent_logins(self, store: Store) -> None:
        """Threads log in (a new bound session, or an anonymous one given a new ID and a user)
        while others list the user's sessions and "log out everywhere": at the end, every
        live session bound to a user is listed, and revoking the user ends it."""
        if not store.capabilities.by_user:
            return
        now = T0
        users = ["stress-a", "stress-b"]
        created: list[str] = []
        errors: list[BaseException] = []
        done = threading.Event()
        deadline = time.monotonic() + 2.0

        def login(n: int) -> None:
            user = users[n % 2]
            try:
                for i in range(250):
                    if time.monotonic() > deadline:
                        return
                    key = _key()
                    if i % 2:
                        assert store.create(key, _record(now=now, user_id=user))
                    else:
                        anonymous = _key()
                        assert store.create(anonymous, _record(now=now))
                        move = Patch(
                            {}, (), now, now + HOUR, new_key=key, tombstone_until=now + 60,
                            user_id=user,
                        )  # fmt: skip
                        assert store.patch(anonymous, move)
                    created.append(key)
            except BaseException as exc:  # reported below
                errors.append(exc)

        # Built here, not in the threads: Werkzeug compiles routes with ast.parse, which is
        # not thread-safe on CPython 3.11 ("AST constructor recursion depth mismatch").
        manager = _manager(store, now)

        def list_and_revoke(n: int) -> None:
            try:
                rounds = 0
                while not done.is_set():
                    rounds += 1
                    if n == 0 and rounds % 20 == 0:
                        manager.revoke_user(users[rounds % 2])
                    else:
                        store.sessions_of(users[rounds % 2], now)
            except BaseException as exc:  # reported below
                errors.append(exc)

        logins = [threading.Thread(target=login, args=(n,)) for n in range(4)]
        listers = [threading.Thread(target=list_and_revoke, args=(n,)) for n in range(2)]
        for thread in [*listers, *logins]:
            thread.start()
        for thread in logins:
            thread.join(timeout=60)
        done.set()
        for thread in listers:
            thread.join(timeout=60)
        assert not errors, errors
        missed: list[str] = []
        survived: list[str] = []
        for user in users:
            lost, kept = _bound_outside_index(store, user, created, now)
            missed += lost
            survived += kept
        print(
            f"{len(created)} logins racing listings: {len(missed)} live bound sessions"
            f" unlisted, {len(survived)} survived revoke_user"
        )
        assert created and not missed and not survived

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

    # -- the library on this store, through HTTP as the test client sees it --------------

    def test_app_round_trips_per_request(
        self, client: FlaskClient, counting: CountingStore
    ) -> None:
        client.get("/set/user/alice")  # creates the session
        budget = {"/none": 0, "/get/user": 1, "/set/x/1": 1, "/rw/y/2": 2}
        for url, expected in budget.items():
            counting.calls.clear()
            response = client.get(url)
            assert response.status_code == 200
            assert counting.total == expected, (url, dict(counting.calls))

    def test_app_untouched_request_has_no_cookie_and_no_vary(
        self, client: FlaskClient, counting: CountingStore
    ) -> None:
        response = client.get("/none")
        assert "Set-Cookie" not in response.headers
        assert "Cookie" not in response.vary
        assert counting.total == 0

    def test_app_visitor_who_stores_nothing_gets_nothing(
        self, client: FlaskClient, counting: CountingStore
    ) -> None:
        response = client.get("/get/user")
        assert response.text == "None"
        assert "Set-Cookie" not in response.headers
        assert "Cookie" in response.vary
        assert counting.total == 0  # no cookie: nothing to load

    def test_app_session_round_trip_and_cookie(self, client: FlaskClient, store: Store) -> None:
        response = client.get("/set/user/alice")
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        assert "Expires" not in cookie  # not permanent: a browser-session cookie
        value = _cookie(client)
        assert value is not None and "alice" not in value
        session_id = value.split(".")[0]
        assert len(session_id) == 43  # 256 bits, URL-safe base64
        record = store.load(store_key(session_id))
        assert record is not None and loads_value(record.values["user"]) == "alice"
        assert store.load(session_id) is None  # the store never sees the ID itself
        assert client.get("/get/user").text == "'alice'"

    def test_app_nested_change_saved_without_modified(self, client: FlaskClient) -> None:
        with client.session_transaction() as sess:
            sess["cart"] = [1, 2]
        client.get("/append/cart/3")
        assert client.get("/get/cart").text == "[1, 2, '3']"

    def test_app_unchanged_read_writes_nothing(
        self, client: FlaskClient, counting: CountingStore
    ) -> None:
        with client.session_transaction() as sess:
            sess["cart"] = [1, 2, {"a": {1, 2}}]
            sess["user"] = "alice"
        counting.calls.clear()
        response = client.get("/dump")
        assert response.status_code == 200
        assert counting.calls == {"load": 1}
        assert "Set-Cookie" not in response.headers

    def test_app_assign_only_merges_with_stored(
        self, client: FlaskClient, counting: CountingStore
    ) -> None:
        client.get("/set/a/1")
        counting.calls.clear()
        client.get("/set/b/2")
        assert counting.calls == {"patch": 1}
        assert client.get("/dump").json == {"a": "'1'", "b": "'2'"}

    def test_app_pop_last_key_removes_session(self, client: FlaskClient, store: Store) -> None:
        client.get("/set/user/alice")
        value = _cookie(client)
        assert value is not None
        response = client.get("/pop/user")
        assert response.text == "'alice'"
        assert _cookie(client) is None  # cookie deleted
        assert _ended(store, store_key(value.split(".")[0]))

    def test_app_regenerate(self, client: FlaskClient, store: Store) -> None:
        client.get("/set/user/alice")
        old = _cookie(client)
        response = client.get("/regenerate")
        new = _cookie(client)
        assert response.status_code == 200 and new is not None and new != old
        assert client.get("/get/user").text == "'alice'"
        assert old is not None
        assert _ended(store, store_key(old.split(".")[0]))
        client.set_cookie("session", old)
        assert client.get("/get/user").text == "None"

    def test_app_destroy(self, client: FlaskClient, store: Store, clock: Clock) -> None:
        client.get("/set/user/alice")
        old = _cookie(client)
        response = client.get("/destroy")
        assert "session=;" in response.headers["Set-Cookie"]  # expired
        assert _cookie(client) is None
        assert old is not None
        assert _ended(store, store_key(old.split(".")[0]))
        client.set_cookie("session", old)
        assert client.get("/get/user").text == "None"
        response = client.get("/rw/user/bob")  # in flight during the logout, as it were
        assert "Set-Cookie" not in response.headers
        assert _ended(store, store_key(old.split(".")[0]))
        clock.advance(601)  # the tombstone's time is over: the old ID is merely unknown now
        client.get("/rw/user/bob")  # a read, then a write: a new session with a new ID
        assert _cookie(client) not in (None, old)

    def test_app_assign_only_on_ended_session_saves_nothing(
        self, client: FlaskClient, store: Store
    ) -> None:
        """A request still carrying the ID of a session ended on purpose (logout) writes
        nothing and sends no cookie, so the logout is never undone."""
        client.get("/set/user/alice")
        old = _cookie(client)
        client.get("/destroy")
        assert old is not None
        client.set_cookie("session", old)
        response = client.get("/set/user/bob")
        assert response.status_code == 200 and "Set-Cookie" not in response.headers
        assert _ended(store, store_key(old.split(".")[0]))
        assert client.get("/get/user").text == "None"

    def test_app_ended_session_coming_back_later_starts_afresh(
        self, client: FlaskClient, clock: Clock, store: Store
    ) -> None:
        """A browser whose session was ended elsewhere (revoked, logged out on another tab)
        and that comes back later is not locked out by the tombstone: it gets a new session."""
        client.get("/set/user/alice")
        old = _cookie(client)
        assert old is not None
        other = client.application.test_client()
        other.set_cookie("session", old)
        other.get("/destroy")  # ended from elsewhere; this browser still holds the cookie
        assert _ended(store, store_key(old.split(".")[0]))
        clock.advance(10)
        assert client.get("/get/user").text == "None"
        response = client.get("/rw/user/bob")
        assert "Set-Cookie" in response.headers
        assert _cookie(client) not in (None, old)
        assert client.get("/get/user").text == "'bob'"

    def test_app_assign_only_on_expired_session_starts_a_new_one(
        self, client: FlaskClient, clock: Clock, counting: CountingStore
    ) -> None:
        """A session that simply expired is not ended on purpose: an assignment made without
        reading lands in a new session, with a new ID."""
        client.get("/set/user/alice")
        old = _cookie(client)
        clock.advance(2 * HOUR)
        counting.calls.clear()
        response = client.get("/set/user/bob")
        assert counting.calls == {"patch": 1, "load": 1, "create": 1}
        new = _cookie(client)
        assert "Set-Cookie" in response.headers and new not in (None, old)
        assert client.get("/get/user").text == "'bob'"

    def test_app_unknown_id_is_never_adopted(self, client: FlaskClient, app: Flask) -> None:
        chosen = new_session_id()
        signed = _interface(app)._get_signer(app)
        assert signed is not None
        client.set_cookie("session", signed.sign(chosen))  # valid signature, unknown to the store
        assert client.get("/get/user").text == "None"
        client.get("/rw/user/mallory")
        value = _cookie(client)
        assert value is not None and not value.startswith(chosen)

    def test_app_idle_timeout(self, client: FlaskClient, clock: Clock) -> None:
        client.get("/set/user/alice")
        clock.advance(HOUR - 1)
        assert client.get("/get/user").text == "'alice'"  # refreshes the idle expiry
        clock.advance(HOUR - 1)
        assert client.get("/get/user").text == "'alice'"
        clock.advance(HOUR + 1)
        assert client.get("/get/user").text == "None"

    def test_app_absolute_timeout(self, client: FlaskClient, clock: Clock) -> None:
        client.get("/set/user/alice")
        for _ in range(23):
            clock.advance(HOUR - 60)
            assert client.get("/rw/user/alice").text == "'alice'"
        clock.advance(2 * HOUR)  # past 24 h since creation, though active all along
        assert client.get("/get/user").text == "None"

    def test_app_touch_is_rate_limited(
        self, client: FlaskClient, clock: Clock, counting: CountingStore, store: Store
    ) -> None:
        client.get("/set/user/alice")
        value = _cookie(client)
        assert value is not None
        key = store_key(value.split(".")[0])
        clock.advance(10)
        client.get("/get/user")
        record = store.load(key)
        assert record is not None and record.last_seen == T0  # within the touch interval
        clock.advance(120)
        counting.calls.clear()
        client.get("/get/user")
        assert counting.total == 1  # the touch rides on the load
        record = store.load(key)
        assert record is not None and record.last_seen == T0 + 130
        assert record.expires == T0 + 130 + HOUR

    def test_app_permanent_cookie(self, client: FlaskClient, clock: Clock) -> None:
        """A permanent session's cookie lives until the session's absolute end, so it is sent
        only with a new ID or when the session becomes permanent; idleness is the server's."""
        client.get("/set/user/alice")
        response = client.get("/permanent")  # an existing session becomes permanent
        cookie = client.get_cookie("session")
        assert cookie is not None and cookie.expires is not None
        assert cookie.expires.timestamp() == T0 + 24 * HOUR
        assert "Set-Cookie" in response.headers
        clock.advance(120)
        response = client.get("/rw/user/bob")
        assert "Set-Cookie" not in response.headers  # a request never re-sends an old ID
        clock.advance(HOUR + 1)  # idle: over on the server though the cookie lives on
        assert client.get_cookie("session") is not None
        assert client.get("/get/user").text == "None"

    def test_app_large_value(self, client: FlaskClient, app: Flask) -> None:
        big = "x" * 10_000

        @app.get("/big")
        def big_view() -> str:
            session["big"] = big
            return "ok"

        # routes must be added before the first request
        assert client.get("/big").text == "ok"
        assert client.get("/get/big").text == repr(big)

    def test_app_type_fidelity(self, store: Store) -> None:
        values: dict[str, Any] = {
            "str": "żółw",
            "int": 2**70,
            "float": 0.1,
            "bool": True,
            "none": None,
            "list": [1, [2, 3]],
            "tuple": (1, (2, "3")),
            "dict": {"a": {"b": [None]}, " t": 1},
            "tag-like dict": {" t": [1]},
            "bytes": b"\x00\xff",
            "markup": Markup("<b>hi</b>"),
            "uuid": uuid.UUID(int=7),
            "datetime": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc),
            "naive": datetime(2026, 1, 2, 3, 4, 5, 6),
            "date": date(2026, 11, 25),
            "set": {1, 2, 3},
            "frozenset": frozenset({"a"}),
            "inf": float("inf"),
        }
        app = make_app(store)

        @app.get("/store-all")
        def store_all() -> str:
            session.update(values)
            return "ok"

        @app.get("/check-all")
        def check_all() -> str:
            for name, value in values.items():
                got = session[name]
                assert got == value and type(got) is type(value), (name, got)
            assert session["tuple"][1] == (2, "3")
            return "same"

        client = app.test_client()
        client.get("/store-all")
        assert client.get("/check-all").text == "same"

    def test_app_unserializable_value_names_the_key(self, store: Store) -> None:
        app = make_app(store)

        @app.get("/bad")
        def bad() -> str:
            session["fine"] = 1
            session["broken"] = object()
            return "ok"

        with pytest.raises(SessionDataError) as info:
            app.test_client().get("/bad")
        assert info.value.key == "broken" and "broken" in str(info.value)

    def test_app_max_size_names_largest_keys(self, store: Store) -> None:
        app = make_app(store, max_size=1000)

        @app.get("/huge")
        def huge() -> str:
            session["small"] = "x"
            session["large"] = "y" * 2000
            return "ok"

        with pytest.raises(SessionTooLarge) as info:
            app.test_client().get("/huge")
        assert info.value.largest[0][0] == "large" and "'large'" in str(info.value)

    def test_app_max_keys_holds_for_every_save(self, store: Store, clock: Clock) -> None:
        """SESSION_MAX_KEYS holds however the keys come: assigned in one request, or one per
        request by views that only assign (the store counts in the step that writes); the
        error names the limit, and the session keeps what it had."""
        app = make_app(store, max_keys=3)

        @app.get("/many")
        def many() -> str:
            for i in range(4):
                session[f"k{i}"] = i
            return "ok"

        with pytest.raises(SessionTooManyKeys, match="over SESSION_MAX_KEYS of 3") as info:
            app.test_client().get("/many")
        assert info.value.count == 4 and info.value.limit == 3
        client = app.test_client()
        for name in ("a", "b", "c"):
            assert client.get(f"/set/{name}/1").status_code == 200
        with pytest.raises(SessionTooManyKeys):
            client.get("/set/d/1")  # assigned without a load: refused by the store
        assert client.get("/dump").json == {"a": "'1'", "b": "'1'", "c": "'1'"}
        assert client.get("/set/c/2").status_code == 200  # replacing a key is no new key
        assert client.get("/pop/a").status_code == 200
        assert client.get("/set/d/1").status_code == 200

    def test_app_max_size_caps_assign_only_growth(self, store: Store, clock: Clock) -> None:
        """SESSION_MAX_SIZE holds for the whole session when views only assign, each save one
        patch without a load: the store checks the session as the patch leaves it."""
        app = make_app(store, max_size=1000)
        _interface(app).clock = clock

        @app.get("/put/<k>/<int:n>")
        def put(k: str, n: int) -> str:
            session[k] = "x" * n  # assigned, never read
            return "stored"

        client = app.test_client()
        for path in ("/put/a/300", "/put/b/400"):  # 1 + 302, then 1 + 402 bytes
            assert client.get(path).status_code == 200
        cookie = _cookie(client)
        assert cookie is not None
        key = store_key(cookie.split(".")[0])
        with pytest.raises(SessionTooLarge) as info:
            client.get("/put/c/350")  # 1 + 352 more: 1,059 bytes
        assert (info.value.size, info.value.limit) == (1059, 1000)
        assert [name for name, _ in info.value.largest] == ["b", "c", "a"]
        assert "'b'" in str(info.value)
        record = store.load(key)
        assert record is not None and sorted(record.values) == ["a", "b"]
        assert values_size(record.values) == 706
        assert client.get("/put/b/690").status_code == 200  # replaced: 303 + 693 bytes fit
        with pytest.raises(SessionTooLarge):
            client.get("/put/d/2")
        record = store.load(key)
        assert record is not None and values_size(record.values) == 996
        assert client.get("/dump").json == {"a": repr("x" * 300), "b": repr("x" * 690)}

    def test_app_assign_only_save_checks_size_in_one_store_call(
        self, store: Store, clock: Clock
    ) -> None:
        """The size check of an assign-only save rides on its patch: one store call, and a
        second one (a load, to name the largest keys) only when it is refused."""
        counting = CountingStore(store)
        app = make_app(counting, max_size=1000)
        _interface(app).clock = clock
        client = app.test_client()
        client.get("/set/a/" + "x" * 900)
        counting.calls.clear()
        assert client.get("/set/b/" + "y" * 80).status_code == 200
        assert counting.calls == {"patch": 1}
        counting.calls.clear()
        with pytest.raises(SessionTooLarge) as info:
            client.get("/set/c/" + "z" * 80)
        assert counting.calls == {"patch": 1, "load": 1}
        assert info.value.largest[0][0] == "a"

    def test_app_max_size_holds_for_overlapping_writers(self, store: Store, clock: Clock) -> None:
        """Two requests read the session, then each adds a value that fits with what it read
        but not with the other's: one lands, the other raises SessionTooLarge."""
        app = make_app(store, max_size=1000)
        _interface(app).clock = clock
        gate = threading.Barrier(2)

        @app.get("/grow/<k>")
        def grow(k: str) -> str:
            session.get("a")  # load first, like a real view
            gate.wait(timeout=10)  # both requests have loaded before either saves
            session[k] = "y" * 400
            return "ok"

        client = app.test_client()
        client.get("/set/a/" + "x" * 300)
        cookie = _cookie(client)
        assert cookie is not None
        outcomes = _in_parallel(app, cookie, "/grow/b", "/grow/c")
        assert len(outcomes) == 2 and 200 in outcomes
        assert any(isinstance(outcome, SessionTooLarge) for outcome in outcomes)
        stored = client.get("/dump").json
        assert stored is not None and sorted(stored) in (["a", "b"], ["a", "c"])
        record = store.load(store_key(cookie.split(".")[0]))
        assert record is not None and values_size(record.values) == 706

    def test_app_max_size_never_refuses_a_change_that_only_deletes(self, store: Store) -> None:
        """A session over a SESSION_MAX_SIZE lowered since it was written can still shrink."""
        before, after = make_app(store), make_app(store, max_size=100)  # the same SECRET_KEY
        client = before.test_client()
        client.get("/set/a/" + "x" * 200)
        client.get("/set/b/1")
        cookie = _cookie(client)
        assert cookie is not None
        client = after.test_client()
        client.set_cookie("session", cookie)
        assert client.get("/pop/a").text == repr("x" * 200)
        assert client.get("/dump").json == {"b": "'1'"}

    def test_app_concurrent_requests_different_keys(self, app: Flask) -> None:
        """Two requests that read, then write different keys, interleaved: both land."""
        gate = threading.Barrier(2)

        @app.get("/slow/<k>/<v>")
        def slow(k: str, v: str) -> str:
            session.get("user")  # load first, like a real view
            gate.wait(timeout=10)  # both requests have loaded before either saves
            session[k] = v
            return "ok"

        client = app.test_client()
        client.get("/set/user/alice")
        cookie = _cookie(client)
        assert cookie is not None
        assert _in_parallel(app, cookie, "/slow/a/1", "/slow/b/2") == [200, 200]
        assert client.get("/dump").json == {"user": "'alice'", "a": "'1'", "b": "'2'"}

    def test_app_no_resurrection_after_destroy(self, app: Flask, store: Store) -> None:
        """A request that loaded the session before a logout saves nothing after it."""
        loaded, logged_out = threading.Event(), threading.Event()

        @app.get("/late-writer")
        def late_writer() -> str:
            session.get("user")
            loaded.set()
            logged_out.wait(timeout=10)
            session["late"] = "write"
            return "ok"

        client = app.test_client()
        client.get("/set/user/alice")
        cookie = _cookie(client)
        assert cookie is not None
        responses: list[Any] = []

        def late() -> None:
            other = app.test_client()
            other.set_cookie("session", cookie)
            responses.append(other.get("/late-writer"))

        thread = threading.Thread(target=late)
        thread.start()
        assert loaded.wait(timeout=10)
        client.get("/destroy")
        logged_out.set()
        thread.join(timeout=30)
        assert responses and "Set-Cookie" not in responses[0].headers
        assert _ended(store, store_key(cookie.split(".")[0]))

    def test_app_login_binds_user_with_new_id(
        self, client: FlaskClient, app: Flask, clock: Clock
    ) -> None:
        client.get("/set/cart/x")
        before = _cookie(client)
        client.get("/login/alice")
        after = _cookie(client)
        assert after is not None and after != before
        who = client.get("/whoami").json
        assert who is not None and who["user"] == "alice" and who["auth"] == T0
        assert client.get("/get/cart").text == "'x'"  # data kept across the new ID
        manager = ServerSession.manager(app)
        if not manager.store.capabilities.by_user:
            with pytest.raises(UnsupportedOperation):
                manager.sessions_of("alice")
            return
        devices = manager.sessions_of("alice")
        assert [device.handle for device in devices] == [who["handle"]]
        assert devices[0].authenticated_at is not None
        assert devices[0].ip is None  # SESSION_RECORD_CLIENT is off by default
        client.get("/logout")
        assert manager.sessions_of("alice") == []
        assert client.get("/whoami").json == {"user": None, "handle": None, "auth": None}

    def test_app_revoke_and_log_out_everywhere_else(self, app: Flask, clock: Clock) -> None:
        manager = ServerSession.manager(app)
        if not manager.store.capabilities.by_user:
            with pytest.raises(UnsupportedOperation):
                manager.revoke_user("bob")
            return
        devices = [app.test_client() for _ in range(3)]
        for n, device in enumerate(devices):
            clock.advance(1)
            device.get("/login/bob")
            device.get(f"/set/device/{n}")
        handles = [device.get("/whoami").json["handle"] for device in devices]  # type: ignore[index]
        listed = manager.sessions_of("bob")
        assert [info.handle for info in listed] == handles[::-1]  # most recently used first
        assert manager.revoke(handles[0])
        assert not manager.revoke(handles[0])  # already ended
        assert devices[0].get("/get/device").text == "None"  # on its very next request
        assert devices[2].get("/logout-others").text == "1"
        assert devices[1].get("/get/device").text == "None"
        assert devices[2].get("/get/device").text == "'2'"
        assert [info.handle for info in manager.sessions_of("bob")] == [handles[2]]
        with pytest.raises(ValueError):
            manager.revoke("not a handle")

    def test_app_login_after_revocation_starts_a_new_session(
        self, client: FlaskClient, app: Flask
    ) -> None:
        """Right after its session was revoked, a browser that logs in again gets a new
        session: an explicit login is never a resurrection."""
        client.get("/login/dave")
        handle = client.get("/whoami").json["handle"]  # type: ignore[index]
        assert ServerSession.manager(app).revoke(handle)
        client.get("/login/dave")  # within the in-flight grace: still a fresh session
        who = client.get("/whoami").json
        assert who is not None and who["user"] == "dave" and who["handle"] != handle

    def test_app_logged_in_session_without_values_stays(self, client: FlaskClient) -> None:
        """A session that holds only its user binding is not "empty": reading it keeps it."""
        client.get("/login/carol")
        for _ in range(2):
            response = client.get("/whoami")
            assert response.json is not None and response.json["user"] == "carol"
            assert "Set-Cookie" not in response.headers

    def test_app_store_sees_only_hashed_keys(self, client: FlaskClient, store: Store) -> None:
        client.get("/set/user/alice")
        value = _cookie(client)
        assert value is not None
        session_id = value.split(".")[0]
        assert store.load(session_id) is None
        assert store.load(store_key(session_id)) is not None

    @pytest.mark.parametrize(
        ("user_id", "rule"),
        [
            ("", "empty"),
            ("a\x00b", "control character"),
            ("line\nbreak", "control character"),
            ("x" * 256, "255 characters"),
            ("\ud800", "surrogate"),
        ],
    )
    def test_app_login_refuses_a_user_id_no_store_can_keep(
        self, app: Flask, store: Store, user_id: str, rule: str
    ) -> None:
        """A user id every store can index is 1 to 255 characters with no control character
        and no lone surrogate; any other is refused by ``login()`` itself, naming the rule,
        before anything is written (not a 503 from the store at the end of the request)."""
        counting = CountingStore(store)
        _interface(app).store = counting

        @app.get("/login-as")
        def login_as() -> tuple[str, int]:
            assert isinstance(session, ServerSideSession)
            try:
                session.login(user_id)
            except SessionDataError as exc:
                return str(exc), 400
            return "logged in", 200

        response = app.test_client().get("/login-as")
        assert response.status_code == 400, response.text
        assert rule in response.text
        assert "Set-Cookie" not in response.headers
        manager = ServerSession.manager(app)
        manager.store = counting
        for look_up in (manager.sessions_of, manager.revoke_user):
            with pytest.raises(InvalidUserId, match=rule):
                look_up(user_id)
        assert sum(counting.calls.values()) == 0

    @pytest.mark.parametrize("user_id", ["x" * 255, "ü" * 255, "🙂" * 255, "user@example.com"])
    def test_app_login_keeps_every_valid_user_id(
        self, client: FlaskClient, app: Flask, user_id: str
    ) -> None:
        """The longest and widest user ids the rule allows are bound and listed on every
        store, byte for byte."""

        @app.get("/login-as")
        def login_as() -> str:
            assert isinstance(session, ServerSideSession)
            session.login(user_id)
            return "logged in"

        assert client.get("/login-as").status_code == 200
        assert client.get("/whoami").json["user"] == user_id  # type: ignore[index]
        manager = ServerSession.manager(app)
        if manager.store.capabilities.by_user:
            assert [info.user_id for info in manager.sessions_of(user_id)] == [user_id]
