"""The Memcached store against real memcached processes: one server, two servers (hashing)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import session
from memcached_servers import running
from memcached_stores import (
    DAY,
    HOUR,
    admin_client,
    fresh_key,
    make_record,
    open_store,
    server_stats,
    session_key,
)
from pymemcache.exceptions import MemcacheUnexpectedCloseError  # type: ignore[import-untyped]
from servers import ServerProcess

from flask_serversession import SessionDataCorrupt, SessionDataError, SessionStoreUnavailable
from flask_serversession.stores import Patch, Store
from flask_serversession.stores.memcached import (
    RELATIVE_TTL_LIMIT,
    MemcachedStore,
    StrictHashClient,
    _exptime,
)
from flask_serversession.testing import Clock, CountingStore, StoreConformance, make_app

#: Every store a test opens with memcached_stores is closed after it, even when it fails.
pytestmark = pytest.mark.usefixtures("close_memcached_stores")


@pytest.fixture(scope="module")
def memcached_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    with running(tmp_path_factory.mktemp("memcached-pair"), 2) as servers:
        yield servers


# -- the conformance suite ----------------------------------------------------------------------


class TestMemcachedStore(StoreConformance):
    @pytest.fixture
    def store(self, memcached_server: ServerProcess) -> Iterator[Store]:
        store = open_store([memcached_server])
        yield store
        store.close()


class TestMemcachedTwoServers(StoreConformance):
    """Several servers through :class:`StrictHashClient`."""

    @pytest.fixture
    def store(self, memcached_pair: list[ServerProcess]) -> Iterator[Store]:
        store = open_store(memcached_pair)
        assert isinstance(store.client, StrictHashClient)
        yield store
        store.close()


def test_two_servers_share_the_sessions(memcached_pair: list[ServerProcess]) -> None:
    store = open_store(memcached_pair)
    keys = [fresh_key() for _ in range(100)]
    for key in keys:
        assert store.create(key, make_record(time.time(), user='"u"'))
    admins = [admin_client(server) for server in memcached_pair]
    held = [sum(admin.get(store._key(key)) is not None for key in keys) for admin in admins]
    assert sum(held) == 100 and min(held) > 20, held
    for admin in admins:
        admin.close()
    store.close()


# -- round trips, counted by memcached ------------------------------------------------------------

_COUNTERS = ("cmd_get", "cmd_set", "cmd_touch", "delete_hits", "delete_misses")


def _commands(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    names = (*_COUNTERS, "cas_hits", "cas_badval", "cas_misses", "get_hits", "get_misses")
    return {name: after[name] - before[name] for name in names if after[name] != before[name]}


def test_round_trips_per_request(memcached_server: ServerProcess) -> None:
    """Store calls per request (the library's budget) and the memcached commands behind them,
    from the server's own counters. A patch is one store call but two commands (gets + cas):
    memcached cannot merge on the server."""
    counting = CountingStore(open_store([memcached_server]))
    app = make_app(counting, idle_timeout=HOUR, absolute_timeout=DAY)
    clock = Clock(time.time())
    app.session_interface.clock = clock  # type: ignore[attr-defined]
    client = app.test_client()
    # (label, path, clock advance, store calls, memcached commands)
    plan: list[tuple[str, str, float, int, int]] = [
        ("new session (assign)", "/set/user/alice", 0, 1, 1),
        ("untouched", "/none", 0, 0, 0),
        ("read only", "/get/user", 1, 1, 1),
        ("read only, touch due", "/get/user", 120, 1, 2),
        ("assign only", "/set/x/1", 1, 1, 2),
        ("read + write", "/rw/y/2", 1, 2, 3),
        ("regenerate", "/regenerate", 1, 2, 4),
        ("destroy", "/destroy", 1, 1, 1),
    ]
    report = []
    for label, path, advance, calls, commands in plan:
        clock.advance(advance)
        counting.calls.clear()
        before = server_stats(memcached_server)
        response = client.get(path)
        delta = _commands(before, server_stats(memcached_server))
        sent = sum(delta.get(name, 0) for name in _COUNTERS)
        report.append(
            f"{label:22} {path:14} store calls {counting.total}  memcached {sent} {delta}"
        )
        assert response.status_code == 200
        assert (counting.total, sent) == (calls, commands), (label, dict(counting.calls), delta)
    print("\n" + "\n".join(report))
    counting.close()


# -- concurrency ----------------------------------------------------------------------------------


def test_eight_threads_hammer_one_session(memcached_server: ServerProcess) -> None:
    """8 threads, each 25 assign-only requests on one session, each a different key: every
    write lands, thanks to gets/cas with retries."""
    store = open_store([memcached_server])
    app = make_app(store)
    seed = app.test_client()
    seed.get("/set/user/alice")
    cookie = seed.get_cookie("session")
    assert cookie is not None
    threads, per_thread = 8, 25
    barrier = threading.Barrier(threads)
    statuses: list[int] = []
    errors: list[BaseException] = []
    before = server_stats(memcached_server)

    def worker(n: int) -> None:
        try:
            client = app.test_client()
            client.set_cookie("session", cookie.value)
            barrier.wait(timeout=10)
            for i in range(per_thread):
                path = f"/set/t{n}-{i}/{i}" if i % 5 else f"/rw/t{n}-{i}/{i}"
                statuses.append(client.get(path).status_code)
        except BaseException as exc:  # reported below
            errors.append(exc)

    started = time.perf_counter()
    workers = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for each in workers:
        each.start()
    for each in workers:
        each.join(timeout=60)
    elapsed = time.perf_counter() - started
    assert not errors
    assert statuses == [200] * threads * per_thread
    data = seed.get("/dump").json
    assert data is not None and len(data) == 1 + threads * per_thread
    delta = _commands(before, server_stats(memcached_server))
    print(
        f"\n{threads} threads x {per_thread} patches in {elapsed:.2f} s:"
        f" {store.cas_conflicts} CAS races lost and retried; memcached {delta}"
    )
    assert delta["cas_hits"] == threads * per_thread
    assert delta.get("cas_badval", 0) == store.cas_conflicts
    store.close()


# -- regeneration: the two steps and what lies between them ---------------------------------------


class Hooked:
    """A client proxy that runs ``after[method](*args)`` after a command returned, or
    ``before[method](*args)`` before sending it."""

    def __init__(
        self,
        inner: Any,
        before: dict[str, Callable[..., None]] | None = None,
        after: dict[str, Callable[..., None]] | None = None,
    ) -> None:
        self.inner = inner
        self.before = before or {}
        self.after = after or {}

    def __getattr__(self, name: str) -> Any:
        command = getattr(self.inner, name)
        before, after = self.before.get(name), self.after.get(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if before is not None:
                before(*args)
            result = command(*args, **kwargs)
            if after is not None:
                after(*args)
            return result

        return call


def _regenerate(now: float, new_key: str) -> Patch:
    return Patch({"login": '"yes"'}, (), now, now + HOUR, new_key=new_key, tombstone_until=now + 60)


def test_crash_between_the_two_steps_of_regeneration(memcached_server: ServerProcess) -> None:
    """The connection breaks after the new item is added, before the old one becomes a
    tombstone: the error is loud, the old session is unchanged and live, the copy under the
    new key is an orphan nobody holds the ID of."""
    store = open_store([memcached_server])
    now = time.time()
    old, new = fresh_key(), fresh_key()
    assert store.create(old, make_record(now, user='"alice"'))

    def crash(item: str, value: bytes, *args: Any) -> None:
        if value.startswith(b'{"x":1'):  # the tombstone swap
            raise MemcacheUnexpectedCloseError()

    store.client = Hooked(store.client, before={"cas": crash})
    with pytest.raises(SessionStoreUnavailable):
        store.patch(old, _regenerate(now + 1, new))
    kept = store.load(old)
    assert kept is not None and kept.is_live(now + 2) and kept.values == {"user": '"alice"'}
    orphan = store.load(new)
    assert orphan is not None and orphan.values == {"user": '"alice"', "login": '"yes"'}
    store.close()


def test_logout_during_regeneration_is_never_undone(memcached_server: ServerProcess) -> None:
    store = open_store([memcached_server])
    now = time.time()
    old, new = fresh_key(), fresh_key()
    assert store.create(old, make_record(now, user='"alice"'))
    plain = store.client

    def logout(*args: Any) -> None:
        MemcachedStore(plain, prefix=store.prefix).delete(old, tombstone_until=now + 600)

    store.client = Hooked(plain, after={"add": logout})
    assert not store.patch(old, _regenerate(now + 1, new))
    ended = store.load(old)
    assert ended is not None and ended.ended
    assert store.load(new) is None  # the copy was taken back
    store.close()


def test_write_during_regeneration_moves_with_the_session(memcached_server: ServerProcess) -> None:
    store = open_store([memcached_server])
    now = time.time()
    old, new = fresh_key(), fresh_key()
    assert store.create(old, make_record(now, user='"alice"'))
    plain = store.client
    late = [Patch({"late": '"write"'}, (), now + 1, now + HOUR)]

    def write(*args: Any) -> None:
        if late:
            assert MemcachedStore(plain, prefix=store.prefix).patch(old, late.pop())

    store.client = Hooked(plain, after={"add": write})
    assert store.patch(old, _regenerate(now + 2, new))
    moved = store.load(new)
    assert moved is not None
    assert moved.values == {"user": '"alice"', "late": '"write"', "login": '"yes"'}
    assert store.cas_conflicts == 1
    ended = store.load(old)
    assert ended is not None and ended.ended
    store.close()


# -- expiry -------------------------------------------------------------------------------------


def test_ttl_over_thirty_days(memcached_server: ServerProcess) -> None:
    """Memcached reads an expiry above 30 days as a Unix timestamp: sent raw, a 60-day TTL
    would mean 1970 and the item would be gone at once. The store sends it as a timestamp."""
    admin = admin_client(memcached_server)
    admin.set(b"raw-ttl", b"1", expire=60 * int(DAY))
    assert admin.get(b"raw-ttl") is None  # what a naive store would get
    admin.close()

    store = open_store([memcached_server])
    app = make_app(store, idle_timeout=60 * DAY, absolute_timeout=90 * DAY)
    client = app.test_client()
    assert client.get("/set/user/alice").status_code == 200
    assert client.get("/get/user").text == "'alice'"
    assert client.get("/rw/user/bob").text == "'alice'"
    assert client.get("/get/user").text == "'bob'"

    now = time.time()
    assert _exptime(now + RELATIVE_TTL_LIMIT - 1, now) == RELATIVE_TTL_LIMIT  # still relative
    assert _exptime(now + 0.2, now) == 2  # a whole tick more than asked
    assert abs(_exptime(now + 60 * DAY, now) - (time.time() + 60 * DAY)) < 3  # absolute
    assert _exptime(now + 100 * 365 * DAY, now) == 2**31 - 1  # memcached's 32-bit limit
    assert _exptime(now - 5, now) == 1
    century = fresh_key()
    assert store.create(century, make_record(now, idle=60 * DAY, absolute=100 * 365 * DAY))
    assert store.load(century) is not None
    store.close()


def test_eviction_logs_the_user_out(tmp_path: Path) -> None:
    """Memcached is a cache: when full it evicts sessions before their time. The user of an
    evicted session gets a fresh anonymous session, not an error (documented limit)."""
    with running(tmp_path, 1, "-m", "2") as (server,):  # the last -m wins: 2 MB
        store = open_store([server])
        app = make_app(store)
        payload = "x" * 20_000

        @app.get("/big-login")
        def big_login() -> str:
            session["user"] = "alice"
            session["payload"] = payload  # as large as the others: same slab class
            return "ok"

        first = app.test_client()
        first.get("/big-login")
        assert first.get("/get/user").text == "'alice'"
        now = time.time()
        for _ in range(400):  # 8 MB of sessions into 2 MB
            store.create(fresh_key(), make_record(now, payload=f'"{payload}"'))
        assert server_stats(server)["evictions"] > 0
        response = first.get("/get/user")
        assert (response.status_code, response.text) == (200, "None")
        assert store.capabilities.by_user is False and store.capabilities.scan is False
        assert store.clear_expired(now + DAY) == 0


# -- data -----------------------------------------------------------------------------------------


def test_corrupt_item_is_reported_then_replaced(memcached_server: ServerProcess) -> None:
    store = open_store([memcached_server])
    app = make_app(store)
    client = app.test_client()
    client.get("/set/user/alice")
    key = session_key(client)
    admin = admin_client(memcached_server)
    for garbage in (b"not json", b"[1]", b'{"v":{"a":1},"c":1,"s":1,"e":1,"a":1}', b"\xff"):
        admin.set(store._key(key), garbage)
        with pytest.raises(SessionDataCorrupt):
            store.load(key)
    admin.set(store._key(key), b'{"v":{},"c":"soon"}')
    assert client.get("/get/user").text == "None"  # dropped, logged, a new session follows
    assert admin.get(store._key(key)) is None
    admin.close()
    store.close()


def test_item_too_large_names_the_key(memcached_server: ServerProcess) -> None:
    store = open_store([memcached_server])
    now = time.time()
    huge = '"' + "x" * 1_100_000 + '"'
    with pytest.raises(SessionDataError) as info:
        store.create(fresh_key(), make_record(now, small='"a"', huge=huge))
    assert info.value.key == "huge" and "item size" in str(info.value)
    key = fresh_key()
    assert store.create(key, make_record(now, small='"a"'))
    with pytest.raises(SessionDataError, match="item size"):
        store.patch(key, Patch({"huge": huge}, (), now, now + HOUR))
    loaded = store.load(key)
    assert loaded is not None and loaded.values == {"small": '"a"'}
    store.close()


def test_item_is_compact_json(memcached_server: ServerProcess) -> None:
    store = open_store([memcached_server])
    app = make_app(store)
    client = app.test_client()
    client.get("/set/user/alice")
    admin = admin_client(memcached_server)
    raw = admin.get(store._key(session_key(client)))
    admin.close()
    assert raw.startswith(b'{"v":{"user":"\\"alice\\""},"c":')
    assert b" " not in raw and len(raw) < 120, raw
    store.close()
