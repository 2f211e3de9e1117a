"""The Memcached store against real memcached processes: one server, two servers (hashing)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient
from memcached_servers import running
from pymemcache.client.base import Client, PooledClient  # type: ignore[import-untyped]
from pymemcache.client.hash import HashClient  # type: ignore[import-untyped]
from pymemcache.client.retrying import RetryingClient  # type: ignore[import-untyped]
from pymemcache.exceptions import MemcacheUnexpectedCloseError  # type: ignore[import-untyped]
from servers import ServerProcess, free_port

from flask_serversession import (
    ConfigurationError,
    SessionDataCorrupt,
    SessionDataError,
    SessionStoreUnavailable,
    store_from_url,
)
from flask_serversession.ids import new_session_id, store_key
from flask_serversession.stores import Patch, Record, Store
from flask_serversession.stores.memcached import (
    RELATIVE_TTL_LIMIT,
    MemcachedStore,
    StrictHashClient,
    _exptime,
)
from flask_serversession.testing import Clock, CountingStore, StoreConformance, make_app

HOUR = 3600.0
DAY = 24 * HOUR


# -- servers --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def memcached(memcached_server: ServerProcess) -> ServerProcess:
    return memcached_server


@pytest.fixture(scope="module")
def memcached_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServerProcess]]:
    with running(tmp_path_factory.mktemp("memcached-pair"), 2) as servers:
        yield servers


def _prefix() -> str:
    """A fresh key prefix: an empty store per test on a shared server."""
    return f"t{uuid.uuid4().hex[:12]}:"


def _url(servers: list[ServerProcess], **options: str) -> str:
    hosts = ",".join(f"127.0.0.1:{server.port}" for server in servers)
    query = "&".join(f"{name}={value}" for name, value in {"prefix": _prefix(), **options}.items())
    return f"memcached://{hosts}?{query}"


_opened: list[Store] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    """Close every store a test opened, even when it fails."""
    yield
    while _opened:
        _opened.pop().close()


def _store(servers: list[ServerProcess], **options: str) -> MemcachedStore:
    store = store_from_url(_url(servers, **options))
    assert isinstance(store, MemcachedStore)
    _opened.append(store)
    return store


def _admin(server: ServerProcess) -> Any:
    return Client(("127.0.0.1", server.port), default_noreply=False, timeout=5)


def _stats(server: ServerProcess) -> dict[str, int]:
    admin = _admin(server)
    try:
        raw = admin.stats()
    finally:
        admin.close()
    return {name.decode(): value for name, value in raw.items() if isinstance(value, int)}


def _key() -> str:
    return store_key(new_session_id())


def _record(now: float, idle: float = HOUR, absolute: float = DAY, **values: str) -> Record:
    return Record(dict(values), now, now, now + idle, now + absolute)


def _session_key(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return store_key(cookie.value.split(".")[0])


# -- the conformance suite ----------------------------------------------------------------------


class TestMemcachedStore(StoreConformance):
    @pytest.fixture
    def store(self, memcached: ServerProcess) -> Iterator[Store]:
        store = _store([memcached])
        yield store
        store.close()


class TestMemcachedTwoServers(StoreConformance):
    """Several servers through :class:`StrictHashClient`."""

    @pytest.fixture
    def store(self, memcached_pair: list[ServerProcess]) -> Iterator[Store]:
        store = _store(memcached_pair)
        assert isinstance(store.client, StrictHashClient)
        yield store
        store.close()


def test_two_servers_share_the_sessions(memcached_pair: list[ServerProcess]) -> None:
    store = _store(memcached_pair)
    keys = [_key() for _ in range(100)]
    for key in keys:
        assert store.create(key, _record(time.time(), user='"u"'))
    admins = [_admin(server) for server in memcached_pair]
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


def test_round_trips_per_request(memcached: ServerProcess) -> None:
    """Store calls per request (the library's budget) and the memcached commands behind them,
    from the server's own counters. A patch is one store call but two commands (gets + cas):
    memcached cannot merge on the server."""
    counting = CountingStore(_store([memcached]))
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
        before = _stats(memcached)
        response = client.get(path)
        delta = _commands(before, _stats(memcached))
        sent = sum(delta.get(name, 0) for name in _COUNTERS)
        report.append(
            f"{label:22} {path:14} store calls {counting.total}  memcached {sent} {delta}"
        )
        assert response.status_code == 200
        assert (counting.total, sent) == (calls, commands), (label, dict(counting.calls), delta)
    print("\n" + "\n".join(report))
    counting.close()


# -- outages --------------------------------------------------------------------------------------


def _production_app(store: Store) -> tuple[Flask, FlaskClient]:
    app = make_app(store)
    app.testing = False  # errors become responses, as in production
    return app, app.test_client()


def _warm_pool(store: MemcachedStore, connections: int) -> None:
    """Open ``connections`` pooled connections and leave them idle in the pool."""
    pool = store.client.client_pool
    held = [pool.get() for _ in range(connections)]
    for each in held:
        each.version()
    for each in held:
        pool.release(each)


@pytest.mark.slow
def test_server_stopped_mid_run(tmp_path: Path) -> None:
    """While memcached is down, requests that touch the session answer 503 and the others 200.
    After a restart it works again without restarting the app; the sessions were lost with the
    restart (memcached keeps nothing on disk), so the user gets a fresh anonymous session."""
    with running(tmp_path) as (server,):
        store = _store([server], connect_timeout="1", timeout="1")
        _, client = _production_app(store)
        assert client.get("/set/user/alice").status_code == 200
        assert client.get("/get/user").text == "'alice'"
        old_cookie = client.get_cookie("session")
        _warm_pool(store, 4)

        server.stop()
        for path in ("/get/user", "/set/user/bob", "/rw/user/carol", "/get/user"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.status_code)
            assert "Retry-After" in response.headers
            assert "alice" not in response.text
        assert client.get("/none").status_code == 200

        server.start()
        response = client.get("/get/user")
        assert (response.status_code, response.text) == (200, "None")
        assert "Set-Cookie" not in response.headers  # nothing stored, nothing sent
        response = client.get("/set/user/dave")
        assert response.status_code == 200 and "Set-Cookie" in response.headers
        new_cookie = client.get_cookie("session")
        assert old_cookie is not None and new_cookie is not None
        assert new_cookie.value != old_cookie.value  # a new session, not the old ID re-adopted
        assert client.get("/get/user").text == "'dave'"
        store.close()


@pytest.mark.slow
def test_restart_between_requests_costs_no_request(tmp_path: Path) -> None:
    """Pooled connections that outlived a restart are broken; the first one found broken
    discards the idle rest and the command is repeated on a fresh connection, so no request
    fails for it."""
    with running(tmp_path) as (server,):
        store = _store([server])
        _, client = _production_app(store)
        assert client.get("/set/user/alice").status_code == 200
        _warm_pool(store, 5)
        server.restart()  # no request while it was down
        statuses = [client.get(path).status_code for path in ("/get/user", "/set/a/1") * 3]
        assert statuses == [200] * 6
        assert client.get("/get/a").text == "'1'"
        store.close()


@pytest.mark.slow
def test_dead_server_of_two_is_an_error_not_a_miss(tmp_path: Path) -> None:
    """With two servers and one down, the sessions on the dead one answer 503 on every
    request (never "no session"), and the others keep working."""
    with running(tmp_path, 2) as servers:
        store = _store(servers, connect_timeout="1", timeout="1")
        app, _ = _production_app(store)
        clients: dict[int, FlaskClient] = {}
        admins = [_admin(server) for server in servers]
        while len(clients) < 2:
            client = app.test_client()
            assert client.get("/set/user/alice").status_code == 200
            home = next(
                n
                for n, admin in enumerate(admins)
                if admin.get(store._key(_session_key(client))) is not None
            )
            clients.setdefault(home, client)
        for admin in admins:
            admin.close()
        servers[0].stop()
        for _ in range(3):  # a stock HashClient would answer "miss" from the second try on
            assert clients[0].get("/get/user").status_code == 503
            assert clients[0].get("/set/user/bob").status_code == 503
            assert clients[1].get("/get/user").text == "'alice'"
        servers[0].start()
        assert clients[0].get("/get/user").text == "None"  # lost with the restart
        assert clients[1].get("/get/user").text == "'alice'"
        store.close()


def test_stock_hash_client_hides_an_outage_and_is_refused() -> None:
    """Why :class:`StrictHashClient` exists: pymemcache's HashClient, even with
    ignore_exc=False, raises on the first failure and then answers "miss"."""
    dead = ("127.0.0.1", free_port())
    stock = HashClient([dead], retry_attempts=2, retry_timeout=60, connect_timeout=1)
    with pytest.raises(ConnectionRefusedError):
        stock.get("k")
    assert stock.get("k") is None  # a silent miss: an empty session for its user
    with pytest.raises(ConfigurationError, match="StrictHashClient"):
        MemcachedStore(stock)
    strict = StrictHashClient([dead], use_pooling=True, connect_timeout=1)
    store = MemcachedStore(strict)
    for _ in range(3):
        with pytest.raises(SessionStoreUnavailable) as info:
            store.load(_key())
        assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_pool_exhausted_is_unavailable(memcached: ServerProcess) -> None:
    store = _store([memcached], max_pool_size="1")
    held = store.client.client_pool.get()
    with pytest.raises(SessionStoreUnavailable, match="pool exhausted"):
        store.load(_key())
    store.client.client_pool.release(held)
    assert store.load(_key()) is None
    store.close()


# -- concurrency ----------------------------------------------------------------------------------


def test_eight_threads_hammer_one_session(memcached: ServerProcess) -> None:
    """8 threads, each 25 assign-only requests on one session, each a different key: every
    write lands, thanks to gets/cas with retries."""
    store = _store([memcached])
    app = make_app(store)
    seed = app.test_client()
    seed.get("/set/user/alice")
    cookie = seed.get_cookie("session")
    assert cookie is not None
    threads, per_thread = 8, 25
    barrier = threading.Barrier(threads)
    statuses: list[int] = []
    errors: list[BaseException] = []
    before = _stats(memcached)

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
    delta = _commands(before, _stats(memcached))
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


def test_crash_between_the_two_steps_of_regeneration(memcached: ServerProcess) -> None:
    """The connection breaks after the new item is added, before the old one becomes a
    tombstone: the error is loud, the old session is unchanged and live, the copy under the
    new key is an orphan nobody holds the ID of."""
    store = _store([memcached])
    now = time.time()
    old, new = _key(), _key()
    assert store.create(old, _record(now, user='"alice"'))

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


def test_logout_during_regeneration_is_never_undone(memcached: ServerProcess) -> None:
    store = _store([memcached])
    now = time.time()
    old, new = _key(), _key()
    assert store.create(old, _record(now, user='"alice"'))
    plain = store.client

    def logout(*args: Any) -> None:
        MemcachedStore(plain, prefix=store.prefix).delete(old, tombstone_until=now + 600)

    store.client = Hooked(plain, after={"add": logout})
    assert not store.patch(old, _regenerate(now + 1, new))
    ended = store.load(old)
    assert ended is not None and ended.ended
    assert store.load(new) is None  # the copy was taken back
    store.close()


def test_write_during_regeneration_moves_with_the_session(memcached: ServerProcess) -> None:
    store = _store([memcached])
    now = time.time()
    old, new = _key(), _key()
    assert store.create(old, _record(now, user='"alice"'))
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


def test_ttl_over_thirty_days(memcached: ServerProcess) -> None:
    """Memcached reads an expiry above 30 days as a Unix timestamp: sent raw, a 60-day TTL
    would mean 1970 and the item would be gone at once. The store sends it as a timestamp."""
    admin = _admin(memcached)
    admin.set(b"raw-ttl", b"1", expire=60 * int(DAY))
    assert admin.get(b"raw-ttl") is None  # what a naive store would get
    admin.close()

    store = _store([memcached])
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
    century = _key()
    assert store.create(century, _record(now, idle=60 * DAY, absolute=100 * 365 * DAY))
    assert store.load(century) is not None
    store.close()


def test_eviction_logs_the_user_out(tmp_path: Path) -> None:
    """Memcached is a cache: when full it evicts sessions before their time. The user of an
    evicted session gets a fresh anonymous session, not an error (documented limit)."""
    with running(tmp_path, 1, "-m", "2") as (server,):  # the last -m wins: 2 MB
        store = _store([server])
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
            store.create(_key(), _record(now, payload=f'"{payload}"'))
        assert _stats(server)["evictions"] > 0
        response = first.get("/get/user")
        assert (response.status_code, response.text) == (200, "None")
        assert store.capabilities.by_user is False and store.capabilities.scan is False
        assert store.clear_expired(now + DAY) == 0


# -- data -----------------------------------------------------------------------------------------


def test_corrupt_item_is_reported_then_replaced(memcached: ServerProcess) -> None:
    store = _store([memcached])
    app = make_app(store)
    client = app.test_client()
    client.get("/set/user/alice")
    key = _session_key(client)
    admin = _admin(memcached)
    for garbage in (b"not json", b"[1]", b'{"v":{"a":1},"c":1,"s":1,"e":1,"a":1}', b"\xff"):
        admin.set(store._key(key), garbage)
        with pytest.raises(SessionDataCorrupt):
            store.load(key)
    admin.set(store._key(key), b'{"v":{},"c":"soon"}')
    assert client.get("/get/user").text == "None"  # dropped, logged, a new session follows
    assert admin.get(store._key(key)) is None
    admin.close()
    store.close()


def test_item_too_large_names_the_key(memcached: ServerProcess) -> None:
    store = _store([memcached])
    now = time.time()
    huge = '"' + "x" * 1_100_000 + '"'
    with pytest.raises(SessionDataError) as info:
        store.create(_key(), _record(now, small='"a"', huge=huge))
    assert info.value.key == "huge" and "item size" in str(info.value)
    key = _key()
    assert store.create(key, _record(now, small='"a"'))
    with pytest.raises(SessionDataError, match="item size"):
        store.patch(key, Patch({"huge": huge}, (), now, now + HOUR))
    loaded = store.load(key)
    assert loaded is not None and loaded.values == {"small": '"a"'}
    store.close()


def test_item_is_compact_json(memcached: ServerProcess) -> None:
    store = _store([memcached])
    app = make_app(store)
    client = app.test_client()
    client.get("/set/user/alice")
    admin = _admin(memcached)
    raw = admin.get(store._key(_session_key(client)))
    admin.close()
    assert raw.startswith(b'{"v":{"user":"\\"alice\\""},"c":')
    assert b" " not in raw and len(raw) < 120, raw
    store.close()


# -- construction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memcached://", "needs a host"),
        ("memcached://?prefix=x", "needs a host"),
        ("memcached://127.0.0.1:11211,", "needs a host"),
        ("memcached://127.0.0.1?colour=red", "unknown Memcached option 'colour'"),
        ("memcached://127.0.0.1:port", "bad Memcached port"),
        ("memcached://127.0.0.1:70000", "bad Memcached port"),
        ("memcached://[::1]x:11211", "bad Memcached server"),
        ("memcached://user:secret@127.0.0.1", "no authentication"),
        ("memcached://127.0.0.1/sessions", "no path"),
        ("memcached://127.0.0.1?timeout=-1", "timeout must be"),
        ("memcached://127.0.0.1?max_pool_size=1.5", "max_pool_size must be"),
        ("memcached://127.0.0.1?cas_attempts=0", "cas_attempts"),
        ("memcached://127.0.0.1?prefix=a%20b", "prefix"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as info:
        store_from_url(url)
    assert "secret" not in str(info.value)


def test_good_urls() -> None:
    one = store_from_url("memcached://cache.internal?timeout=0.5&connect_timeout=2&prefix=app:")
    assert isinstance(one, MemcachedStore) and isinstance(one.client, PooledClient)
    assert one.client.server == ("cache.internal", 11211)
    assert (one.client.timeout, one.client.connect_timeout, one.prefix) == (0.5, 2.0, "app:")
    assert one.name == "memcached://cache.internal"
    several = store_from_url("memcached://a:11212,[::1]:11213,b?max_pool_size=8&cas_attempts=5")
    assert isinstance(several, MemcachedStore) and isinstance(several.client, StrictHashClient)
    assert sorted(several.client.clients) == ["::1:11213", "a:11212", "b:11211"]
    assert several.client.use_pooling and not several.client.ignore_exc
    assert several.cas_attempts == 5


class _JsonSerde:
    def serialize(self, key: Any, value: Any) -> tuple[bytes, int]:
        return value, 0

    def deserialize(self, key: Any, value: bytes, flags: int) -> Any:
        return value


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: None, "no default host"),
        (lambda: HashClient([("127.0.0.1", 1)]), "StrictHashClient"),
        (lambda: PooledClient(("127.0.0.1", 1), ignore_exc=True), "ignore_exc"),
        (lambda: Client(("127.0.0.1", 1), serde=_JsonSerde()), "serde"),
        (lambda: Client(("127.0.0.1", 1), deserializer=lambda k, v, f: v), "serde"),
        (lambda: object(), "needs a pymemcache client"),
        (lambda: RetryingClient(PooledClient(("127.0.0.1", 1))), "inside the RetryingClient"),
    ],
)
def test_clients_that_would_hide_errors_or_unpickle_are_refused(
    make: Callable[[], Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        MemcachedStore(make())
    with pytest.raises(ConfigurationError, match="ignore_exc"):
        StrictHashClient([("127.0.0.1", 1)], ignore_exc=True)


def test_from_existing_client(memcached: ServerProcess) -> None:
    """A client built with pymemcache's defaults (noreply on by default for storage commands)
    still gets real answers: the store asks for replies on every write."""
    store = MemcachedStore(PooledClient(("127.0.0.1", memcached.port)), prefix=_prefix())
    key = _key()
    now = time.time()
    assert store.create(key, _record(now, user='"alice"'))
    assert not store.create(key, _record(now, user='"mallory"'))
    assert store.patch(key, Patch({"cart": "[1]"}, (), now, now + HOUR))
    loaded = store.load(key)
    assert loaded is not None and loaded.values == {"user": '"alice"', "cart": "[1]"}
    assert "PooledClient" in store.name
    store.close()


@contextmanager
def fake_server(reply: bytes | None) -> Iterator[int]:
    """A TCP server on 127.0.0.1 that answers every command with ``reply``, closes the
    connection at once when ``reply`` is empty, or never answers when it is None."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    port: int = listener.getsockname()[1]
    done = threading.Event()
    open_connections: list[socket.socket] = []

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(0.05)
            open_connections.append(conn)
            if reply == b"":
                conn.close()
                continue
            while reply is not None and not done.is_set():
                try:
                    if not conn.recv(65536):
                        break
                    conn.sendall(reply)
                except TimeoutError:
                    continue
                except OSError:
                    break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        done.set()
        thread.join(timeout=10)
        listener.close()
        for conn in open_connections:
            conn.close()


@pytest.mark.parametrize(
    ("reply", "cause"),
    [
        (None, "TimeoutError"),
        # a closed connection reads as EOF or, when our send crossed the close, as a reset
        (b"", "MemcacheUnexpectedCloseError ConnectionResetError BrokenPipeError"),
        (b"SERVER_ERROR out of memory storing object\r\n", "MemcacheServerError"),
        (b"garbage\r\n", "MemcacheUnknownError"),
    ],
)
def test_driver_errors_become_unavailable(reply: bytes | None, cause: str) -> None:
    with fake_server(reply) as port:
        store = _store_at(port)
        now = time.time()
        for operation in (
            lambda: store.load(_key()),
            lambda: store.create(_key(), _record(now)),
            lambda: store.delete(_key(), now + 60),
        ):
            with pytest.raises(SessionStoreUnavailable) as info:
                operation()
            name = type(info.value.__cause__).__name__
            assert name in cause.split()
            assert name in info.value.reason and "127.0.0.1" in str(info.value)


def test_connection_refused_is_unavailable() -> None:
    store = _store_at(free_port())
    with pytest.raises(SessionStoreUnavailable) as info:
        store.patch(_key(), Patch({"a": "1"}, (), time.time(), time.time() + HOUR))
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def _store_at(port: int) -> MemcachedStore:
    store = store_from_url(f"memcached://127.0.0.1:{port}?timeout=0.3&connect_timeout=0.3")
    assert isinstance(store, MemcachedStore)
    _opened.append(store)
    return store
